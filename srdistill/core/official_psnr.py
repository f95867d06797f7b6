"""PSNR as the official MZSR/ZSSR evaluation computes it: on the Y channel rounded to 8-bit levels.

BasicSR's ``calculate_psnr(test_y_channel=True)`` keeps Y as a float, which reads 0.01-0.02 dB higher on Set5; the
paper's tables (and its bicubic column, 30.24 / 28.73 / 28.15 / 30.54 dB) come from the rounded Y.
"""
from __future__ import annotations

import numpy as np

from .basicsr_files import basicsr_module


def y8(img: np.ndarray) -> np.ndarray:
    """The Y channel (ITU-R BT.601, [16, 235]) of a uint8/[0, 255] BGR HWC image, rounded to integers."""
    bgr2ycbcr = basicsr_module('utils.color_util').bgr2ycbcr
    return np.round(bgr2ycbcr(img.astype(np.float32) / 255., y_only=True) * 255.)


def psnr_y8(img: np.ndarray, img2: np.ndarray, crop_border: int) -> float:
    """PSNR (dB) between two [0, 255] BGR HWC images on 8-bit-rounded Y, ``crop_border`` pixels cut from each side."""
    if img.shape != img2.shape:
        raise ValueError(f'Image shapes are different: {img.shape}, {img2.shape}.')
    a, b = y8(img), y8(img2)
    if crop_border:
        a, b = a[crop_border:-crop_border, crop_border:-crop_border], b[crop_border:-crop_border, crop_border:-crop_border]
    mse = np.mean((a.astype(np.float64) - b) ** 2)
    return float('inf') if mse == 0 else float(10. * np.log10(255. ** 2 / mse))
