"""Bicubic degradation as in MATLAB's ``imresize`` (BasicSR's implementation), with the usual mod-crop."""
from __future__ import annotations

import numpy as np
from .basicsr_files import basicsr_module
from .errors import SRDistillError

imresize = basicsr_module('utils.matlab_functions').imresize

SUPPORTED_SCALES = (2, 3, 4)


def check_scale(scale: int, option: str = 'scale') -> int:
    """Return ``scale`` if it is one of the supported integer factors, else raise naming ``option``."""
    if isinstance(scale, bool) or not isinstance(scale, int) or scale not in SUPPORTED_SCALES:
        raise SRDistillError(f'option {option}: expected one of {SUPPORTED_SCALES}, got {scale!r}')
    return scale


def mod_crop(img: np.ndarray, scale: int) -> np.ndarray:
    """Crop the bottom/right so that height and width are multiples of ``scale``."""
    h, w = img.shape[:2]
    return img[:h - h % scale, :w - w % scale]


def quantize(img: np.ndarray) -> np.ndarray:
    """Round a float [0, 1] image to 8-bit levels (what saving an LR PNG does), staying float32."""
    return (np.clip(img, 0, 1) * 255.).round().astype(np.float32) / 255.


def bicubic_downscale(hr: np.ndarray, scale: int, quantize_output: bool = True) -> np.ndarray:
    """MATLAB-style bicubic ``1/scale`` downscaling (antialiased) of a float HWC image in [0, 1].

    ``hr`` must already be mod-cropped; the result is ``(h/scale, w/scale, c)``.
    """
    h, w = hr.shape[:2]
    if h % scale or w % scale:
        raise SRDistillError(f'image of {w}x{h} is not a multiple of scale {scale}; mod-crop it first')
    lr = imresize(hr, 1 / scale).astype(np.float32)
    return quantize(lr) if quantize_output else np.clip(lr, 0, 1)


def bicubic_upscale(lr: np.ndarray, scale: int) -> np.ndarray:
    """MATLAB-style bicubic upscaling of a float HWC image (the classic SR baseline)."""
    return np.clip(imresize(lr, scale), 0, 1).astype(np.float32)
