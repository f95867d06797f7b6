"""Synthetic LR images with a known Gaussian blur, for training and validating a kernel estimator: a sharpened HR
crop (the photograph downscaled first, so that its own blur is negligible), blurred by a kernel drawn from MZSR's task
family or a broader log-uniform one, subsampled, and optionally degraded by noise and JPEG like a real photograph."""
from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
import torch

from .kernels import degrade, gaussian_kernel, random_mzsr_kernel_params


@dataclass(frozen=True)
class BlurSynthesis:
    """How a training pair is made. ``broad_share`` of the kernels have both eigenvalues log-uniform in
    ``variance_range`` (covering sharper kernels than MZSR's, e.g. the paper's g^d_0.2), the rest are MZSR's
    meta-training kernels; ``sharpen`` is the range of the factor the photograph is first downscaled by."""
    scale: int = 2
    downsample: str = 'direct'
    kernel_size: int = 15
    broad_share: float = 0.3
    variance_range: tuple[float, float] = (0.2, 5.0)
    sharpen: tuple[float, float] = (0.5, 1.0)
    noise_prob: float = 0.2
    noise_max_sigma: float = 3.  # 8-bit levels
    jpeg_prob: float = 0.2
    jpeg_quality: tuple[int, int] = (70, 95)

    def draw_params(self, rng: np.random.Generator) -> tuple[float, float, float]:
        if rng.random() >= self.broad_share:
            return random_mzsr_kernel_params(rng, self.scale)
        low, high = (math.log(v) for v in self.variance_range)
        a, b = np.exp(rng.uniform(low, high, 2))
        return float(max(a, b)), float(min(a, b)), float(rng.uniform(0, np.pi))

    def sharpened_crop(self, img: np.ndarray, hr_size: int, rng: np.random.Generator,
                       centre: bool = False) -> np.ndarray:
        """An ``hr_size`` square cut from ``img`` at a random (or the central) place after downscaling by a factor
        drawn from ``sharpen`` (area interpolation); the factor is raised where the image is too small for it."""
        h, w = img.shape[:2]
        factor = max(rng.uniform(*self.sharpen), hr_size / min(h, w))
        side = min(int(math.ceil(hr_size / factor)), h, w)
        top = (h - side) // 2 if centre else int(rng.integers(0, h - side + 1))
        left = (w - side) // 2 if centre else int(rng.integers(0, w - side + 1))
        crop = img[top:top + side, left:left + side]
        return crop if side == hr_size else cv2.resize(crop, (hr_size, hr_size), interpolation=cv2.INTER_AREA)

    def degrade(self, hr: np.ndarray, params: tuple[float, float, float], rng: np.random.Generator) -> np.ndarray:
        """The 8-bit LR (float32 HWC [0, 1], same channel order as ``hr``) of ``hr`` under the kernel ``params``,
        with noise and JPEG by their probabilities."""
        kernel = torch.from_numpy(gaussian_kernel(self.kernel_size, *params))
        tensor = torch.from_numpy(np.ascontiguousarray(hr.transpose(2, 0, 1))).float()[None]
        lr = degrade(tensor, kernel, self.scale, self.downsample)[0].numpy().transpose(1, 2, 0)
        sigma = rng.uniform(0, self.noise_max_sigma) if rng.random() < self.noise_prob else 0.
        quality = int(rng.integers(self.jpeg_quality[0], self.jpeg_quality[1] + 1)) if rng.random() < self.jpeg_prob \
            else None
        return noisy_jpeg(lr, rng, sigma, quality)


def noisy_jpeg(img: np.ndarray, rng: np.random.Generator, noise_sigma: float = 0.,
               jpeg_quality: int | None = None) -> np.ndarray:
    """A float HWC BGR image in [0, 1] with Gaussian noise of ``noise_sigma`` 8-bit levels, rounded to 8 bits, then
    JPEG-compressed at ``jpeg_quality`` (none when ``None``), as float32 [0, 1]."""
    out = img * 255.
    if noise_sigma:
        out = out + rng.normal(0, noise_sigma, out.shape)
    out = np.clip(np.round(out), 0, 255).astype(np.uint8)
    if jpeg_quality is not None:
        out = cv2.imdecode(cv2.imencode('.jpg', out, [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality])[1],
                           cv2.IMREAD_UNCHANGED)
    return out.astype(np.float32) / 255.
