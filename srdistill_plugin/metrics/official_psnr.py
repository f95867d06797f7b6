"""PSNR as the official MZSR/ZSSR evaluation computes it: on the Y channel rounded to 8-bit levels.

BasicSR's ``calculate_psnr(test_y_channel=True)`` keeps Y as a float, which reads 0.01-0.02 dB higher on Set5; the
paper's tables (and its bicubic column, 30.24 / 28.73 / 28.15 / 30.54 dB) come from the rounded Y.
"""
from __future__ import annotations

import numpy as np
from basicsr.metrics.metric_util import reorder_image
from basicsr.utils.color_util import bgr2ycbcr
from basicsr.utils.registry import METRIC_REGISTRY


def y8(img: np.ndarray) -> np.ndarray:
    """The Y channel (ITU-R BT.601, [16, 235]) of a uint8/[0, 255] BGR HWC image, rounded to integers."""
    return np.round(bgr2ycbcr(img.astype(np.float32) / 255., y_only=True) * 255.)


@METRIC_REGISTRY.register()
def calculate_psnr_y8(img: np.ndarray, img2: np.ndarray, crop_border: int, input_order: str = 'HWC',
                      **kwargs) -> float:
    """PSNR (dB) between two [0, 255] BGR images on 8-bit-rounded Y, ``crop_border`` pixels cut from each side."""
    assert img.shape == img2.shape, f'Image shapes are different: {img.shape}, {img2.shape}.'
    a, b = y8(reorder_image(img, input_order)), y8(reorder_image(img2, input_order))
    if crop_border:
        a, b = a[crop_border:-crop_border, crop_border:-crop_border], b[crop_border:-crop_border, crop_border:-crop_border]
    mse = np.mean((a.astype(np.float64) - b) ** 2)
    return float('inf') if mse == 0 else float(10. * np.log10(255. ** 2 / mse))
