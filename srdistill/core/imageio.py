"""Reading HR images robustly: every image comes out as float32 BGR in [0, 1], HWC, 3 channels.

Documented conversions (never silent crashes deep in a library):
  * greyscale (1 channel) -> replicated to 3 channels;
  * 16-bit -> scaled by 1/65535;
  * alpha channel -> dropped (the colour planes are kept as they are).
Unreadable files and images smaller than ``min_size`` raise :class:`SRDistillError` naming the file.

8-bit greyscale, RGB and RGBA files are decoded by Pillow (the same pixels as OpenCV's, JPEG included), so a
command that reads only such images, as ``srdistill-zeroshot`` does, starts without importing OpenCV (0.1 s); every
other file (16-bit, palette, CMYK, float TIFF, one Pillow cannot read) by OpenCV, as before.
"""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

from .errors import SRDistillError

# Pillow mode -> the channel order of OpenCV's IMREAD_UNCHANGED array (None: greyscale, kept 2-D)
PILLOW_TO_OPENCV = {'L': None, 'RGB': [2, 1, 0], 'RGBA': [2, 1, 0, 3]}
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
    img = _decode(data) if data.size else None
    if img is None:
        raise SRDistillError(f'{path}: cannot decode image (corrupt or not an image)')
    h, w = img.shape[:2]
    if min(h, w) < min_size:
        raise SRDistillError(f'{path}: image is {w}x{h}, smaller than the required {min_size} px')
    return to_float_bgr(img, str(path))


def _decode(data: np.ndarray) -> np.ndarray | None:
    """The file's pixels as OpenCV's ``IMREAD_UNCHANGED`` gives them (BGR order), or None when it is not an image."""
    try:
        with Image.open(io.BytesIO(data.tobytes())) as img:
            # 8 bits a sample: each tile stored in the mode it loads as (a 16-bit PNG's 'RGB;16B' would lose bits)
            plain = img.format in ('PNG', 'JPEG') and all(_rawmode(tile) == img.mode for tile in img.tile)
            if plain and img.tile and img.mode in PILLOW_TO_OPENCV:
                order = PILLOW_TO_OPENCV[img.mode]
                pixels = np.asarray(img)
                return pixels if order is None else pixels[:, :, order]
    except (OSError, SyntaxError, ValueError):
        pass  # OpenCV decides: some files Pillow rejects it reads
    import cv2  # here, not at the top: only the files Pillow leaves need it

    return cv2.imdecode(data, cv2.IMREAD_UNCHANGED)


def _rawmode(tile: tuple) -> str:
    """How a Pillow tile stores its pixels (its decoder's raw mode)."""
    args = tile[3]
    return args[0] if isinstance(args, tuple) else args


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
