"""Blur kernels and the MZSR degradation (blur, then direct subsampling or MATLAB bicubic), as the official code does.

Conventions of the official MZSR code (JWSoh/MZSR, ``gkernel.py`` / ``imresize.py``), which reproduce its released
LR inputs byte for byte:

* a Gaussian is named by the **eigenvalues of its covariance** (variances, pixels^2): ``g^d_2.0`` has variance 2.0
  (sigma = 1.41), not sigma 2.0; ``lambda1``/``lambda2`` are rotated by ``theta``;
* blurring is a **correlation** with half-sample-symmetric borders (``scipy.ndimage.correlate(mode='reflect')``);
* direct subsampling keeps rows/columns ``round(linspace(0, H - s, ceil(H / s)))`` - pixels (0, 0), (0, s), ... for
  sizes divisible by ``s``; any size works, odd ones included;
* bicubic subsampling is MATLAB's antialiased ``imresize`` of the blurred image to ``ceil(H / s)``.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .errors import SRDistillError, first_line
from .matlab_resize import matlab_resize

KERNEL_SUFFIXES = ('.mat', '.npy', '.txt')


def gaussian_kernel(size: int, lambda1: float, lambda2: float, theta: float = 0.) -> np.ndarray:
    """A normalised ``size x size`` Gaussian with covariance eigenvalues ``lambda1``, ``lambda2`` rotated by ``theta``."""
    if size < 1 or size % 2 == 0:
        raise SRDistillError(f'kernel size must be a positive odd number, got {size}')
    rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    inv_cov = np.linalg.inv(rot @ np.diag([lambda1, lambda2]) @ rot.T)
    r = np.arange(size) - size // 2
    xy = np.stack(np.meshgrid(r, r, indexing='xy'), axis=-1)
    kernel = np.exp(-0.5 * np.einsum('...i,ij,...j->...', xy, inv_cov, xy))
    return (kernel / kernel.sum()).astype(np.float32)


def random_mzsr_kernel_params(rng: np.random.Generator, scale: int,
                              min_variance: float = 1.) -> tuple[float, float, float]:
    """``(lambda1, lambda2, theta)`` of a meta-training task kernel: lambda1 ~ U[m, 2.5 s], lambda2 ~ U[m, lambda1],
    theta ~ U[0, pi], drawn in that order; ``m = min_variance``, 1 in the official generator (JWSoh/MZSR
    ``gkernel.generate_kernel``)."""
    if not 0 < min_variance < 2.5 * scale:
        raise SRDistillError(f'min_variance must lie in (0, {2.5 * scale:g}) for scale {scale}, got {min_variance}')
    lambda1 = rng.uniform(min_variance, 2.5 * scale)
    lambda2 = rng.uniform(min_variance, lambda1)
    return lambda1, lambda2, rng.uniform(0, np.pi)


def random_mzsr_kernel(rng: np.random.Generator, scale: int, size: int = 15, min_variance: float = 1.) -> np.ndarray:
    """A meta-training task kernel (``random_mzsr_kernel_params``) as a ``size x size`` Gaussian."""
    return gaussian_kernel(size, *random_mzsr_kernel_params(rng, scale, min_variance))


# The paper's x2 evaluation kernels (Table 1): the number is the variance. g^d: direct subsampling, g^b: bicubic.
EVAL_KERNELS = {
    'gd0.2': dict(lambda1=0.2, lambda2=0.2, downsample='direct'),
    'gd2.0': dict(lambda1=2.0, lambda2=2.0, downsample='direct'),
    'gdani': dict(lambda1=4.0, lambda2=1.0, theta=-0.5, downsample='direct'),
    'gb1.3': dict(lambda1=1.3, lambda2=1.3, downsample='bicubic'),
}
EVAL_KERNEL_SIZE = 21  # the official released kernel (Input/g20/kernel.mat) is 21x21


def eval_kernel(name: str, size: int = EVAL_KERNEL_SIZE) -> tuple[np.ndarray, str]:
    """``(kernel, downsample)`` of a named evaluation kernel."""
    if name not in EVAL_KERNELS:
        raise SRDistillError(f'unknown evaluation kernel {name!r}; choose from {sorted(EVAL_KERNELS)}')
    spec = dict(EVAL_KERNELS[name])
    downsample = spec.pop('downsample')
    return gaussian_kernel(size, **spec), downsample


def check_kernel(kernel: np.ndarray, where: str) -> np.ndarray:
    """Validate a kernel (2-D, odd sides, positive sum) and return it normalised to sum 1 (float32)."""
    kernel = np.asarray(kernel, dtype=np.float64)
    if kernel.ndim != 2:
        raise SRDistillError(f'{where}: a kernel must be a 2-D array, got shape {kernel.shape}')
    if kernel.shape[0] % 2 == 0 or kernel.shape[1] % 2 == 0:
        raise SRDistillError(f'{where}: kernel sides must be odd, got {kernel.shape[0]}x{kernel.shape[1]}')
    if not np.isfinite(kernel).all() or kernel.sum() <= 0:
        raise SRDistillError(f'{where}: kernel cannot be normalised (its sum is {kernel.sum():.4g}, must be > 0)')
    return (kernel / kernel.sum()).astype(np.float32)


def _read_mat(path: Path) -> np.ndarray:
    from scipy.io import loadmat

    arrays = {k: v for k, v in loadmat(str(path)).items() if not k.startswith('__') and getattr(v, 'ndim', 0) == 2
              and np.issubdtype(v.dtype, np.number)}
    for key in ('kernel', 'Kernel', 'k', 'K'):
        if key in arrays:
            return arrays[key]
    if len(arrays) != 1:
        raise SRDistillError(f'{path}: expected one 2-D array (e.g. "kernel") in the .mat file, found '
                             f'{sorted(arrays) or "none"}')
    return next(iter(arrays.values()))


def load_kernel(path: str | Path) -> np.ndarray:
    """A kernel from ``.mat`` (the official format), ``.npy`` or whitespace text, of any odd size, normalised."""
    path = Path(path)
    if not path.is_file():
        raise SRDistillError(f'{path}: kernel file does not exist')
    if path.suffix not in KERNEL_SUFFIXES:
        raise SRDistillError(f'{path}: unknown kernel format; use one of {KERNEL_SUFFIXES}')
    try:
        if path.suffix == '.mat':
            kernel = _read_mat(path)
        elif path.suffix == '.npy':
            kernel = np.load(path)
        else:
            kernel = np.loadtxt(path, ndmin=2)
    except SRDistillError:
        raise
    except Exception as err:  # numpy's and scipy's readers fail on a foreign or truncated file in many ways
        raise SRDistillError(f'{path}: cannot read a kernel ({first_line(err)})') from err
    return check_kernel(kernel, str(path))


def find_kernel(kernel_dir: str | Path, stem: str) -> Path:
    """``<kernel_dir>/<stem>.{mat,npy,txt}``, or a one-line error naming the image whose kernel is missing."""
    for suffix in KERNEL_SUFFIXES:
        candidate = Path(kernel_dir) / f'{stem}{suffix}'
        if candidate.is_file():
            return candidate
    raise SRDistillError(f'{kernel_dir}: no kernel for image {stem!r} (expected {stem}.mat, .npy or .txt)')


def kernel_shift(kernel: np.ndarray, scale: int) -> np.ndarray:
    """ZSSR's ``kernel_shift``: move the kernel's centre of mass to where the official code wants it for ``scale``
    (padded so that nothing is cut). Used by the ZSSR baseline on its given-kernel configuration."""
    from scipy import ndimage

    wanted = np.array(kernel.shape) / 2 + 0.5 * (scale - np.array(kernel.shape) % 2)
    shift = wanted - np.array(ndimage.center_of_mass(kernel))
    padded = np.pad(kernel, int(np.ceil(np.max(np.abs(shift)))) + 1)
    return ndimage.shift(padded, shift).astype(np.float32)


def symmetric_pad(img: torch.Tensor, pad_h: int, pad_w: int) -> torch.Tensor:
    """Half-sample-symmetric padding (``d c b a | a b c d | d c b a``), scipy's ``reflect`` / MATLAB's 'symmetric'."""
    h, w = img.shape[-2:]
    if pad_h > h or pad_w > w:
        raise SRDistillError(f'the {2 * pad_h + 1}x{2 * pad_w + 1} kernel is larger than the {w}x{h} image')
    if pad_h:
        img = torch.cat([img[..., :pad_h, :].flip(-2), img, img[..., h - pad_h:, :].flip(-2)], dim=-2)
    if pad_w:
        img = torch.cat([img[..., :pad_w].flip(-1), img, img[..., w - pad_w:].flip(-1)], dim=-1)
    return img


def blur(img: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Correlate an NCHW batch with one kernel per item (``(N, kh, kw)``) or a shared ``(kh, kw)`` one."""
    n, c, h, w = img.shape
    kh, kw = kernel.shape[-2:]
    kernel = kernel.to(img).expand(n, kh, kw) if kernel.dim() == 2 else kernel.to(img)
    weight = kernel.repeat_interleave(c, dim=0).unsqueeze(1)  # (n*c, 1, kh, kw)
    padded = symmetric_pad(img.reshape(1, n * c, h, w), kh // 2, kw // 2)
    return F.conv2d(padded, weight, groups=n * c).reshape(n, c, h, w)  # conv2d is a correlation


def subsample_indices(length: int, scale: int) -> torch.Tensor:
    """The rows (or columns) that the official direct subsampling keeps: ``round(linspace(0, L - s, ceil(L / s)))``."""
    return torch.from_numpy(np.round(np.linspace(0, length - scale, math.ceil(length / scale))).astype(np.int64))


def degrade(img: torch.Tensor, kernel: torch.Tensor, scale: int, downsample: str = 'direct') -> torch.Tensor:
    """Blur then subsample by ``scale`` to ``ceil(H / s) x ceil(W / s)``: ``direct`` keeps pixels on the official
    grid, ``bicubic`` resizes the blurred image with MATLAB's antialiased bicubic. Float output, not rounded."""
    blurred = blur(img, kernel)
    h, w = img.shape[-2:]
    if downsample == 'direct':
        rows, cols = subsample_indices(h, scale).to(img.device), subsample_indices(w, scale).to(img.device)
        return blurred.index_select(-2, rows).index_select(-1, cols)
    if downsample == 'bicubic':
        return matlab_resize(blurred, 1 / scale)
    raise SRDistillError(f"downsample must be 'direct' or 'bicubic', got {downsample!r}")


def moment_covariance(kernel: np.ndarray) -> np.ndarray:
    """The 2x2 covariance (second central moments, x = column, y = row) of a kernel of any shape: for a Gaussian
    that fits its grid, the covariance it was drawn with; for an estimated kernel, the Gaussian it stands closest to."""
    k = np.asarray(kernel, dtype=np.float64)
    k = k / k.sum()
    y, x = np.mgrid[:k.shape[0], :k.shape[1]]
    mx, my = np.sum(k * x), np.sum(k * y)
    dx, dy = x - mx, y - my
    return np.array([[np.sum(k * dx * dx), np.sum(k * dx * dy)], [np.sum(k * dx * dy), np.sum(k * dy * dy)]])
