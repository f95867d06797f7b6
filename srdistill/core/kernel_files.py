"""Estimated kernels on disk: ``.npy``, ``.mat`` (the official MZSR format) and a preview picture."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .atomic_io import atomic_path


def kernel_preview(kernel: np.ndarray, cell: int = 16) -> np.ndarray:
    """A greyscale uint8 picture of a kernel: each tap a ``cell``-pixel square, black at 0, white at its maximum."""
    scaled = np.round(255 * kernel / max(float(kernel.max()), 1e-12)).astype(np.uint8)
    return np.kron(scaled, np.ones((cell, cell), np.uint8))


def save_kernel(kernel: np.ndarray, folder: Path, stem: str) -> None:
    """``<stem>.npy``, ``<stem>.mat`` (key ``kernel``, as the official MZSR files) and ``<stem>_kernel.png``, each
    written under a temporary name and renamed, so no half-written kernel ever stands under its final name (the
    preview through Pillow: the zero-shot command, which saves its estimates here, never imports OpenCV)."""
    from PIL import Image
    from scipy.io import savemat

    targets = {'.npy': lambda p: np.save(p, kernel), '.mat': lambda p: savemat(p, {'kernel': kernel}),
               '_kernel.png': lambda p: Image.fromarray(kernel_preview(kernel)).save(p, format='PNG')}
    for suffix, write in targets.items():
        with atomic_path(folder / f'{stem}{suffix}') as tmp:
            write(tmp)
