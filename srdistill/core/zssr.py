"""ZSSR (Shocher et al., CVPR 2018), the zero-shot baseline: a network trained from scratch on fathers cut from the
test image and their degraded sons, then back-projected; the official given-kernel protocol (assafshocher/ZSSR).

Images are NCHW float tensors in [0, 1], as in :mod:`srdistill.core.zero_shot`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from .kernels import degrade, kernel_shift
from .matlab_resize import matlab_resize
from .zero_shot import dihedral_outputs, elementwise_median


@dataclass
class ZSSRConfig:
    """ZSSR's schedule and test protocol; defaults are the official ``X2_GIVEN_KERNEL_CONF`` (assafshocher/ZSSR).

    The learning rate drops by 10x when the slope of the reconstruction error (LR rebuilt from its son, measured
    every ``test_every`` iterations over the last ``slope_range`` iterations) is flatter than its standard deviation
    times 1 / ``change_ratio``; training stops when it falls below ``min_lr`` or at ``max_iters``.
    Fathers: ``leave_as_is`` of the time a plain crop, ``no_interpolate`` a crop with a 90-degree rotation/flip
    (when ``allow_rotation``), the rest a random affine crop (scale U[``min_scale``, 1], aspect N(0,
    ``scale_diff_sigma``), shear N(0, ``shear_sigma``), any rotation when allowed). The output gets
    ``back_projection_iters`` back-projections and, with ``output_flip``, the median of the 8 rotated/flipped outputs.

    ``kernel_shift`` (official ZSSR: on) moves the given kernel's centre of mass half a subsampling step off its centre
    (+1 HR pixel at x2), matching LR images made by ZSSR's own ``imresize`` with that shift. LR made on the official
    MZSR grid - this package's ``degrade``, and MZSR's released inputs - puts LR pixel (0, 0) on HR pixel (0, 0); for
    such LR (and for kernels centred by the kernel estimator) set ``kernel_shift: false``, or ZSSR learns, and
    back-projects to, an output one HR pixel off (measured in benchmarks/results/mzsr_own_start/mzsr_adaptation_cpu.md).
    """
    crop_size: int = 128
    lr: float = 1e-3
    max_iters: int = 3000
    min_iters: int = 256
    test_every: int = 50
    check_every: int = 60
    slope_range: int = 256
    change_ratio: float = 1.5
    min_lr: float = 9e-6
    leave_as_is: float = 0.05
    no_interpolate: float = 0.45
    min_scale: float = 0.5
    scale_diff_sigma: float = 0.25
    shear_sigma: float = 0.1
    allow_rotation: bool = False
    kernel_shift: bool = True
    back_projection_iters: int = 2
    output_flip: bool = False
    noise_std: float = 0.
    history: list = field(default_factory=list)


def zssr_father(lr: np.ndarray, cfg: ZSSRConfig, rng: np.random.Generator) -> np.ndarray:
    """One training father from the HWC LR image, drawn as the official ``random_augment`` does (``crop_size``
    square; an LR smaller than the crop leaves a zero border, as in the original)."""
    h, w = lr.shape[:2]
    chooser = rng.random()
    mode = ('as_is' if chooser < cfg.leave_as_is else
            'no_interp' if chooser < cfg.leave_as_is + cfg.no_interpolate else 'affine')
    scale, scale_diff, theta, shear = 1., 0., 0., (0., 0.)
    if mode == 'affine':
        scale = rng.random() * (1 - cfg.min_scale) + cfg.min_scale
        scale_diff = rng.standard_normal() * cfg.scale_diff_sigma
        theta = rng.random() * 2 * math.pi if cfg.allow_rotation else 0.
        shear = (rng.standard_normal() * cfg.shear_sigma, rng.standard_normal() * cfg.shear_sigma)
    elif mode == 'no_interp' and cfg.allow_rotation:
        theta = int(rng.integers(4)) * math.pi / 2
    reflect = np.sign(rng.standard_normal()) if mode != 'as_is' and cfg.allow_rotation else 1.
    shift = (rng.random() * max(scale * w - cfg.crop_size, 0), rng.random() * max(scale * h - cfg.crop_size, 0))
    to_centre, from_centre = np.eye(3), np.eye(3)
    to_centre[:2, 2], from_centre[:2, 2] = (-w / 2, -h / 2), (w / 2, h / 2)
    shift_mat = np.eye(3)
    shift_mat[:2, 2] = (-shift[0], -shift[1])
    if mode != 'affine':
        to_centre, from_centre, shift_mat = np.round(to_centre), np.round(from_centre), np.round(shift_mat)
    cos, sin = math.cos(theta), math.sin(theta)
    rotation = np.array([[cos, sin, 0], [-sin, cos, 0], [0, 0, 1]])
    shear_mat = np.array([[1, shear[0], 0], [shear[1], 1, 0], [0, 0, 1]])
    scale_mat = np.diag([reflect * (scale + scale_diff / 2), scale - scale_diff / 2, 1])
    transform = from_centre @ shift_mat @ shear_mat @ rotation @ scale_mat @ to_centre
    father = cv2.warpPerspective(lr, transform, (cfg.crop_size, cfg.crop_size), flags=cv2.INTER_CUBIC)
    return np.clip(father.reshape(cfg.crop_size, cfg.crop_size, -1), 0, 1)


def _to_hwc(img: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(img[0].permute(1, 2, 0).cpu().numpy())


def zssr_kernel(kernel: torch.Tensor, scale: int, cfg: ZSSRConfig) -> torch.Tensor:
    """The kernel ZSSR degrades with: shifted to the subsampling grid when ``cfg.kernel_shift``."""
    return torch.from_numpy(kernel_shift(kernel.cpu().numpy(), scale)) if cfg.kernel_shift else kernel


def zssr_on_plateau(steps: list[int], errors: list[float], change_ratio: float) -> bool:
    """ZSSR's learning-rate test: a line fitted to the reconstruction errors falls by less than its slope's standard
    error / ``change_ratio`` (then the rate drops 10x)."""
    (slope, _), cov = np.polyfit(steps, errors, 1, cov=True)
    return bool(-change_ratio * slope < np.sqrt(cov[0, 0]))


def zssr_train(net: nn.Module, lr: torch.Tensor, kernel: torch.Tensor, scale: int, cfg: ZSSRConfig,
               downsample: str = 'direct', seed: int = 0,
               on_test: Callable[[int, nn.Module], None] | None = None, progress: str | None = None) -> int:
    """Train ``net`` (freshly initialised) on one LR image as ZSSR does; return the iterations run.

    ``on_test(iteration, net)`` is called at every reconstruction check (for PSNR-vs-steps curves); ``progress`` (a
    label) shows the iterations on a progress bar.
    """
    rng = np.random.default_rng(seed)
    kernel = zssr_kernel(kernel, scale, cfg).to(lr)
    lr_hwc = _to_hwc(lr)
    optimizer = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    son_full = degrade(lr, kernel, scale, downsample)
    last_change, it = 0, -1  # it + 1: the iterations run (none when max_iters is 0)
    steps, errors = [], []
    for it in tqdm(range(cfg.max_iters), desc=progress, unit='it', leave=False, disable=progress is None):
        father = torch.from_numpy(zssr_father(lr_hwc, cfg, rng)).permute(2, 0, 1)[None].to(lr)
        son = degrade(father, kernel, scale, downsample)
        if cfg.noise_std:
            son = (son + torch.randn_like(son) * cfg.noise_std).clamp(0, 1)
        loss = F.l1_loss(net(son, father.shape[-2:]), father)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if it % cfg.test_every == 0:
            with torch.no_grad():
                steps.append(it)
                errors.append(F.mse_loss(net(son_full, lr.shape[-2:]).clamp(0, 1), lr).item())
            if on_test is not None:
                on_test(it, net)
        window = max(cfg.slope_range // cfg.test_every, 4)  # a slope with an error bar needs >= 4 points
        if (it + 1) % cfg.check_every == 0 and it - last_change > cfg.min_iters and len(errors) >= 4:
            if zssr_on_plateau(steps[-window:], errors[-window:], cfg.change_ratio):
                for group in optimizer.param_groups:
                    group['lr'] /= 10
                last_change = it
        if optimizer.param_groups[0]['lr'] < cfg.min_lr:
            break
    cfg.history = list(zip(steps, errors))
    return it + 1


def back_project(sr: torch.Tensor, lr: torch.Tensor, kernel: torch.Tensor, scale: int,
                 downsample: str = 'direct') -> torch.Tensor:
    """One iterative back-projection step: add the bicubic-upsampled LR residual of ``sr``."""
    residual = lr - degrade(sr, kernel, scale, downsample)
    return (sr + matlab_resize(residual, scale, sr.shape[-2:])).clamp(0, 1)


def zssr_infer(net: nn.Module, lr: torch.Tensor, kernel: torch.Tensor, scale: int, cfg: ZSSRConfig,
               downsample: str = 'direct') -> torch.Tensor:
    """ZSSR's final output: back-projected outputs of the (8 rotated/flipped, with ``output_flip``) inputs, their
    median, back-projected again."""
    kernel = zssr_kernel(kernel, scale, cfg).to(lr)
    outputs = []
    net.eval()
    with torch.no_grad():
        for out in dihedral_outputs(net, lr, 8 if cfg.output_flip else 1):
            for _ in range(cfg.back_projection_iters):
                out = back_project(out, lr, kernel, scale, downsample)
            outputs.append(out)
        sr = elementwise_median(outputs)
        for _ in range(cfg.back_projection_iters):
            sr = back_project(sr, lr, kernel, scale, downsample)
    return sr
