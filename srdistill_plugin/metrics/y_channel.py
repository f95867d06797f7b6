"""Every PSNR/SSIM of the project, on the Y channel with ``border`` pixels cut from each side, under one of two named
PSNR conventions:

- ``official``: Y rounded to 8-bit levels, as the MZSR/ZSSR evaluation code scores (``srdistill.core.official_psnr``);
  the MZSR tables and the zero-shot command use it (the papers' bicubic column reproduces with it);
- ``basicsr``: BasicSR's ``calculate_psnr(test_y_channel=True)`` (Y kept as a float, 0.01-0.02 dB higher on Set5);
  the distillation tables use it, as BasicSR's test scripts report.

SSIM is BasicSR's on Y under both. Images are uint8 BGR HWC; tensors 1x3xHxW RGB in [0, 1].
"""
from __future__ import annotations

import numpy as np
import torch
from basicsr.metrics import calculate_psnr, calculate_ssim
from basicsr.utils import tensor2img

from srdistill.core.official_psnr import psnr_y8

PSNR_CONVENTIONS = ('official', 'basicsr')


def y_psnr(sr: np.ndarray, hr: np.ndarray, border: int, convention: str) -> float:
    """PSNR (dB) of uint8 BGR ``sr`` against ``hr`` on Y under ``convention`` (``official`` or ``basicsr``)."""
    if convention == 'official':
        return psnr_y8(sr, hr, border)
    if convention == 'basicsr':
        return float(calculate_psnr(sr, hr, border, test_y_channel=True))
    raise ValueError(f'PSNR convention: expected one of {PSNR_CONVENTIONS}, got {convention!r}')


def y_ssim(sr: np.ndarray, hr: np.ndarray, border: int) -> float:
    """BasicSR's SSIM of uint8 BGR ``sr`` against ``hr`` on Y."""
    return float(calculate_ssim(sr, hr, border, test_y_channel=True))


def as_image(tensor: torch.Tensor) -> np.ndarray:
    """A 1x3xHxW RGB [0, 1] tensor as the uint8 BGR image BasicSR saves (clamped, rounded)."""
    return tensor2img([tensor.detach().cpu()])


def tensor_psnr(sr: torch.Tensor, hr: torch.Tensor, border: int, convention: str = 'official') -> float:
    """:func:`y_psnr` of two image tensors."""
    return y_psnr(as_image(sr), as_image(hr), border, convention)


def tensor_metrics(sr: torch.Tensor, hr: torch.Tensor, border: int,
                   convention: str = 'official') -> tuple[float, float]:
    """``(PSNR under convention, SSIM)`` of two image tensors."""
    sr_img, hr_img = as_image(sr), as_image(hr)
    return y_psnr(sr_img, hr_img, border, convention), y_ssim(sr_img, hr_img, border)
