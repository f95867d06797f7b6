"""Stage 1 of the distillation: score every HR patch by how badly bicubic rebuilds it, keep the informative ones.

``bicubic_psnr``: PSNR between a patch and its bicubic down-up round trip (x``scale``); low = informative.
``gradient``: mean Sobel gradient magnitude; high = informative. Both are computed for all patches of an image at
once from per-pixel maps and box sums, so scoring costs one round trip per image.
``srdd_bicubic_psnr``: the official SRDD code's score (``src/1_select_patches.py``): each patch on its own, in PIL's
greyscale (``convert('L')``), down and up by OpenCV's ``INTER_CUBIC`` (x``scale``), PSNR with a peak of 255; the
paper's selection keeps the patches below ``threshold: 23`` (512-px patches at stride 256).
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from PIL import Image

from .degradations import bicubic_downscale, bicubic_upscale, mod_crop
from .errors import SRDistillError
from .imageio import to_uint8

SCORES = ('bicubic_psnr', 'gradient', 'srdd_bicubic_psnr')
LOW_IS_INFORMATIVE = ('bicubic_psnr', 'srdd_bicubic_psnr')


@dataclass
class SelectionOptions:
    """patch_size/stride in HR pixels; per_image: at most this many kept per image (0: no limit);
    total: at most this many overall (0: no limit); threshold: keep only patches scoring below it (the PSNR scores,
    dB) or above it (gradient); keep_fraction: keep this most-informative fraction of all patches (1: all; the
    official SRDD selection is ``threshold`` alone, ``keep_fraction: 1``)."""
    patch_size: int = 64
    stride: int = 32
    score: str = 'bicubic_psnr'
    scale: int = 4
    per_image: int = 0
    total: int = 0
    threshold: float | None = None
    keep_fraction: float = 0.25

    def validate(self) -> None:
        if self.score not in SCORES:
            raise SRDistillError(f'option select.score: expected one of {SCORES}, got {self.score!r}')
        if self.patch_size <= 0 or self.stride <= 0 or self.patch_size % self.scale:
            raise SRDistillError(f'option select.patch_size: must be a positive multiple of scale {self.scale} '
                                 f'(got {self.patch_size}, stride {self.stride})')
        if not 0 < self.keep_fraction <= 1:
            raise SRDistillError(f'option select.keep_fraction: must be in (0, 1], got {self.keep_fraction}')


def box_means(values: np.ndarray, size: int, stride: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Means of ``values`` over every ``size``-square window at ``stride``: (means, ys, xs)."""
    integral = cv2.integral(values.astype(np.float64))
    h, w = values.shape
    ys, xs = np.arange(0, h - size + 1, stride), np.arange(0, w - size + 1, stride)
    y0, x0 = np.meshgrid(ys, xs, indexing='ij')
    sums = integral[y0 + size, x0 + size] - integral[y0, x0 + size] - integral[y0 + size, x0] + integral[y0, x0]
    return sums / (size * size), y0.ravel(), x0.ravel()


def score_patches(img: np.ndarray, opts: SelectionOptions) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(scores, ys, xs)`` of every patch of a float BGR [0, 1] image; an image smaller than a patch gives none."""
    img = mod_crop(img, opts.scale)
    if min(img.shape[:2]) < opts.patch_size:
        return np.empty(0), np.empty(0, int), np.empty(0, int)
    if opts.score == 'srdd_bicubic_psnr':
        return srdd_bicubic_psnr(img, opts.patch_size, opts.stride, opts.scale)
    y = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
    if opts.score == 'bicubic_psnr':
        rebuilt = cv2.cvtColor(bicubic_upscale(bicubic_downscale(img, opts.scale, False), opts.scale), cv2.COLOR_BGR2GRAY)
        mse, ys, xs = box_means((y - rebuilt) ** 2, opts.patch_size, opts.stride)
        return 10 * np.log10(1. / np.maximum(mse.ravel(), 1e-10)), ys, xs
    gx, gy = cv2.Sobel(y, cv2.CV_32F, 1, 0), cv2.Sobel(y, cv2.CV_32F, 0, 1)
    grad, ys, xs = box_means(np.sqrt(gx ** 2 + gy ** 2), opts.patch_size, opts.stride)
    return grad.ravel(), ys, xs


def srdd_bicubic_psnr(img: np.ndarray, size: int, stride: int, scale: int
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(scores, ys, xs)``: the official SRDD score of every ``size`` patch at ``stride`` of a float BGR image."""
    grey = np.asarray(Image.fromarray(np.ascontiguousarray(to_uint8(img)[:, :, ::-1])).convert('L'), np.float32)
    h, w = grey.shape
    ys, xs = np.meshgrid(np.arange(0, h - size + 1, stride), np.arange(0, w - size + 1, stride), indexing='ij')
    ys, xs = ys.ravel(), xs.ravel()
    small = (int(size / scale), int(size / scale))
    scores = np.empty(len(ys))
    for i, (y, x) in enumerate(zip(ys, xs)):
        patch = grey[y:y + size, x:x + size]
        rebuilt = cv2.resize(cv2.resize(patch, small, interpolation=cv2.INTER_CUBIC), (size, size),
                             interpolation=cv2.INTER_CUBIC)
        mse = np.mean((patch - rebuilt) ** 2)
        scores[i] = np.inf if mse == 0 else 20 * np.log10(255. / np.sqrt(mse))
    return scores, ys, xs


def informativeness(scores: np.ndarray, score: str) -> np.ndarray:
    """Larger = more informative, for any score."""
    return -scores if score in LOW_IS_INFORMATIVE else scores


def select_patches(per_image_scores: list[tuple[np.ndarray, np.ndarray, np.ndarray]],
                   opts: SelectionOptions) -> list[tuple[int, int, int, float]]:
    """Apply threshold, per-image top-k, the kept fraction and the total cap; return ``(image, y, x, score)``
    sorted from most to least informative."""
    candidates = []
    for image_index, (scores, ys, xs) in enumerate(per_image_scores):
        order = np.argsort(-informativeness(scores, opts.score), kind='stable')
        if opts.threshold is not None:
            keep = scores < opts.threshold if opts.score in LOW_IS_INFORMATIVE else scores > opts.threshold
            order = order[keep[order]]
        if opts.per_image:
            order = order[:opts.per_image]
        candidates += [(image_index, int(ys[i]), int(xs[i]), float(scores[i])) for i in order]
    all_patches = sum(len(s[0]) for s in per_image_scores)
    limit = int(round(all_patches * opts.keep_fraction))
    if opts.total:
        limit = min(limit, opts.total)
    candidates.sort(key=lambda c: -informativeness(np.array([c[3]]), opts.score)[0])
    return candidates[:limit]
