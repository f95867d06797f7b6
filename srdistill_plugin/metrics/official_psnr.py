"""The official MZSR/ZSSR PSNR (8-bit-rounded Y, ``srdistill.core.official_psnr``) in BasicSR's metric registry."""
from __future__ import annotations

import numpy as np
from basicsr.metrics.metric_util import reorder_image
from basicsr.utils.registry import METRIC_REGISTRY

from srdistill.core.official_psnr import psnr_y8


@METRIC_REGISTRY.register()
def calculate_psnr_y8(img: np.ndarray, img2: np.ndarray, crop_border: int, input_order: str = 'HWC',
                      **kwargs) -> float:
    """PSNR (dB) between two [0, 255] BGR images on 8-bit-rounded Y, ``crop_border`` pixels cut from each side."""
    assert img.shape == img2.shape, f'Image shapes are different: {img.shape}, {img2.shape}.'
    return psnr_y8(reorder_image(img, input_order), reorder_image(img2, input_order), crop_border)
