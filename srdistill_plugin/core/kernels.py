"""Blur kernels and the MZSR degradation (blur, then direct subsampling or bicubic), in numpy and torch.

Kernels are Gaussians parameterised as in MZSR's code: ``lambda1``/``lambda2`` are the eigenvalues (variances,
in pixels^2) of the covariance, rotated by ``theta``. An isotropic ``sigma`` is ``lambda1 = lambda2 = sigma**2``.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .degradations import bicubic_downscale
from .errors import SRDistillError


def gaussian_kernel(size: int, lambda1: float, lambda2: float, theta: float = 0.) -> np.ndarray:
    """A normalised ``size x size`` anisotropic Gaussian (float32)."""
    if size < 1 or size % 2 == 0:
        raise SRDistillError(f'kernel size must be a positive odd number, got {size}')
    rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    inv_cov = np.linalg.inv(rot @ np.diag([lambda1, lambda2]) @ rot.T)
    r = np.arange(size) - size // 2
    xy = np.stack(np.meshgrid(r, r, indexing='xy'), axis=-1)
    kernel = np.exp(-0.5 * np.einsum('...i,ij,...j->...', xy, inv_cov, xy))
    return (kernel / kernel.sum()).astype(np.float32)


def isotropic_kernel(size: int, sigma: float) -> np.ndarray:
    """``g_sigma``: an isotropic Gaussian of standard deviation ``sigma``."""
    return gaussian_kernel(size, sigma ** 2, sigma ** 2)


def random_mzsr_kernel(rng: np.random.Generator, scale: int, size: int = 15) -> np.ndarray:
    """A meta-training task kernel: theta ~ U[0, pi], lambda1 ~ U[1, 2.5 s], lambda2 ~ U[1, lambda1]."""
    lambda1 = rng.uniform(1, 2.5 * scale)
    return gaussian_kernel(size, lambda1, rng.uniform(1, lambda1), rng.uniform(0, np.pi))


# The paper's evaluation kernels (x2): g^d_0.2, g^d_2.0, g^d_ani (direct subsampling), g^b_1.3 (then bicubic).
EVAL_KERNELS = {
    'gd0.2': dict(sigma=0.2, downsample='direct'),
    'gd2.0': dict(sigma=2.0, downsample='direct'),
    'gdani': dict(lambda1=4.0, lambda2=1.0, theta=np.pi / 4, downsample='direct'),
    'gb1.3': dict(sigma=1.3, downsample='bicubic'),
}


def eval_kernel(name: str, size: int = 15) -> tuple[np.ndarray, str]:
    """``(kernel, downsample)`` of a named evaluation kernel."""
    if name not in EVAL_KERNELS:
        raise SRDistillError(f'unknown evaluation kernel {name!r}; choose from {sorted(EVAL_KERNELS)}')
    spec = dict(EVAL_KERNELS[name])
    downsample = spec.pop('downsample')
    sigma = spec.pop('sigma', None)
    kernel = isotropic_kernel(size, sigma) if sigma is not None else gaussian_kernel(size, **spec)
    return kernel, downsample


def load_kernel(path: str | Path, size: int | None = None) -> np.ndarray:
    """A kernel from ``.npy`` or whitespace text; must be square, odd-sized (``size`` if given), sum normalised."""
    path = Path(path)
    if not path.is_file():
        raise SRDistillError(f'{path}: kernel file does not exist')
    try:
        kernel = np.load(path) if path.suffix == '.npy' else np.loadtxt(path, ndmin=2)
    except (ValueError, OSError) as err:
        raise SRDistillError(f'{path}: cannot read a kernel ({err})') from err
    if kernel.ndim != 2 or kernel.shape[0] != kernel.shape[1] or kernel.shape[0] % 2 == 0:
        raise SRDistillError(f'{path}: kernel must be square with an odd size, got shape {kernel.shape}')
    if size is not None and kernel.shape[0] != size:
        raise SRDistillError(f'{path}: kernel is {kernel.shape[0]}x{kernel.shape[0]}, expected {size}x{size}')
    if kernel.min() < 0 or kernel.sum() <= 0:
        raise SRDistillError(f'{path}: kernel must be non-negative with a positive sum')
    return (kernel / kernel.sum()).astype(np.float32)


def blur(img: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Blur an NCHW batch with one ``k x k`` kernel per batch item (``(N, k, k)``) or a shared ``(k, k)`` one."""
    n, c, h, w = img.shape
    k = kernel.shape[-1]
    if min(h, w) <= k // 2:
        raise SRDistillError(f'image of {w}x{h} is smaller than the {k}x{k} blur kernel needs')
    kernel = kernel.to(img).expand(n, k, k) if kernel.dim() == 2 else kernel.to(img)
    weight = kernel.repeat_interleave(c, dim=0).unsqueeze(1)  # (n*c, 1, k, k)
    padded = F.pad(img.reshape(1, n * c, h, w), [k // 2] * 4, mode='reflect')
    return F.conv2d(padded, weight.flip(-1, -2), groups=n * c).reshape(n, c, h, w)


def degrade(img: torch.Tensor, kernel: torch.Tensor, scale: int, downsample: str = 'direct') -> torch.Tensor:
    """Blur then subsample by ``scale``: ``direct`` keeps every ``scale``-th pixel; ``bicubic`` uses MATLAB bicubic.

    The input is cropped to a multiple of ``scale`` first; the output is ``(h // scale, w // scale)``.
    """
    h, w = img.shape[-2:]
    img = img[..., :h - h % scale, :w - w % scale]
    blurred = blur(img, kernel)
    if downsample == 'direct':
        return blurred[..., ::scale, ::scale]
    if downsample == 'bicubic':
        return torch.stack([torch.from_numpy(bicubic_downscale(b.permute(1, 2, 0).numpy(), scale, False))
                            .permute(2, 0, 1) for b in blurred.detach().cpu()]).to(img)
    raise SRDistillError(f"downsample must be 'direct' or 'bicubic', got {downsample!r}")
