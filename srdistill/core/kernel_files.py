"""Estimated kernels on disk: ``.npy``, ``.mat`` (the official MZSR format) and a preview picture."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .atomic_io import atomic_path


def kernel_preview(kernel: np.ndarray, cell: int = 16) -> np.ndarray:
    """A BGR uint8 picture of a kernel (each tap a ``cell``-pixel square, colour-mapped from 0 to its maximum)."""
    import cv2

    scaled = np.round(255 * kernel / max(float(kernel.max()), 1e-12)).astype(np.uint8)
    return cv2.applyColorMap(np.kron(scaled, np.ones((cell, cell), np.uint8)), cv2.COLORMAP_VIRIDIS)


def save_kernel(kernel: np.ndarray, folder: Path, stem: str) -> None:
    """``<stem>.npy``, ``<stem>.mat`` (key ``kernel``, as the official MZSR files) and ``<stem>_kernel.png``, each
    written under a temporary name and renamed, so no half-written kernel ever stands under its final name."""
    import cv2
    from scipy.io import savemat

    targets = {'.npy': lambda p: np.save(p, kernel), '.mat': lambda p: savemat(p, {'kernel': kernel}),
               '_kernel.png': lambda p: cv2.imwrite(str(p), kernel_preview(kernel))}
    for suffix, write in targets.items():
        with atomic_path(folder / f'{stem}{suffix}') as tmp:
            write(tmp)
