"""Reading HR images robustly: every image comes out as float32 BGR in [0, 1], HWC, 3 channels.

Documented conversions (never silent crashes deep in a library):
  * greyscale (1 channel) -> replicated to 3 channels;
  * 16-bit -> scaled by 1/65535;
  * alpha channel -> dropped (the colour planes are kept as they are).
Unreadable files and images smaller than ``min_size`` raise :class:`SRDistillError` naming the file.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from .errors import SRDistillError

IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.bmp', '.tif', '.tiff', '.webp', '.ppm')


def list_images(folder: str | Path) -> list[Path]:
    """Sorted image files directly inside ``folder``; a clear error if there are none."""
    folder = Path(folder)
    if not folder.is_dir():
        raise SRDistillError(f'{folder}: image folder does not exist')
    paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
    if not paths:
        raise SRDistillError(f'{folder}: no images ({", ".join(IMAGE_EXTENSIONS)}) in this folder')
    return paths


def to_float_bgr(img: np.ndarray, name: str = 'image') -> np.ndarray:
    """Convert a decoded OpenCV array (any depth, 1/3/4 channels) to float32 BGR [0, 1], HWC."""
    if img.dtype == np.uint8:
        img = img.astype(np.float32) / 255.
    elif img.dtype == np.uint16:
        img = img.astype(np.float32) / 65535.
    elif np.issubdtype(img.dtype, np.floating):
        img = np.clip(img.astype(np.float32), 0, 1)
    else:
        raise SRDistillError(f'{name}: unsupported pixel type {img.dtype}')
    if img.ndim == 2:
        img = img[:, :, None]
    channels = img.shape[2]
    if channels == 1:
        img = np.repeat(img, 3, axis=2)
    elif channels == 4:
        img = img[:, :, :3]
    elif channels != 3:
        raise SRDistillError(f'{name}: unsupported channel count {channels}')
    return np.ascontiguousarray(img)


def read_image(path: str | Path, min_size: int = 1) -> np.ndarray:
    """Read ``path`` as float32 BGR [0, 1]; raise :class:`SRDistillError` if unreadable or smaller than ``min_size``."""
    path = Path(path)
    data = np.fromfile(str(path), dtype=np.uint8) if path.is_file() else None
    if data is None:
        raise SRDistillError(f'{path}: file does not exist')
    img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if img is None:
        raise SRDistillError(f'{path}: cannot decode image (corrupt or not an image)')
    h, w = img.shape[:2]
    if min(h, w) < min_size:
        raise SRDistillError(f'{path}: image is {w}x{h}, smaller than the required {min_size} px')
    return to_float_bgr(img, str(path))


def image_size(path: str | Path) -> tuple[int, int]:
    """``(width, height)`` from the file header alone; :class:`SRDistillError` if it is not an image."""
    try:
        with Image.open(path) as img:
            return img.size
    except (OSError, SyntaxError, ValueError) as err:
        raise SRDistillError(f'{path}: cannot decode image (corrupt or not an image)') from err


def to_uint8(img: np.ndarray) -> np.ndarray:
    """Float [0, 1] image -> uint8 with rounding (as BasicSR's img2tensor / tensor2img round trip)."""
    return (np.clip(img, 0, 1) * 255.).round().astype(np.uint8)
