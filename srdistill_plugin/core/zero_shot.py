"""Zero-shot SR at test time: MZSR's few-step adaptation and the ZSSR baseline, both on the test image alone."""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .kernels import degrade
from .maml import sgd_adapt


def mzsr_step_sizes(steps: int) -> list[float]:
    """The official x2 (direct) schedule: 2e-2 at step 0, 1e-2 for steps 1-3, 5e-3 afterwards."""
    return [2e-2 if i == 0 else 1e-2 if i < 4 else 5e-3 for i in range(steps)]


def mzsr_adapt(net: nn.Module, lr: torch.Tensor, kernel: torch.Tensor, scale: int, steps: int,
               downsample: str = 'direct', step_sizes: list[float] | None = None) -> tuple[nn.Module, float]:
    """A copy of ``net`` adapted by ``steps`` SGD steps on (son -> LR); returns it and the adaptation time (s)."""
    start = time.perf_counter()
    adapted = copy.deepcopy(net).train()
    if steps:
        son = degrade(lr, kernel, scale, downsample)
        sgd_adapt(adapted, son, lr, step_sizes or mzsr_step_sizes(steps), F.l1_loss)
    return adapted.eval(), time.perf_counter() - start


@dataclass
class ZSSRConfig:
    """ZSSR's training schedule (defaults from the original's configuration, crop size scaled by option).

    The learning rate drops by 10x when the slope of the reconstruction error (LR rebuilt from its son, measured
    every ``test_every`` iterations over the last ``slope_range`` iterations) is flatter than its standard
    deviation times 1 / ``change_ratio``; training stops when it falls below ``min_lr`` or at ``max_iters``.
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
    history: list = field(default_factory=list)


def _random_father(lr: torch.Tensor, crop: int, scale: int, rng: np.random.Generator) -> torch.Tensor:
    """A random rotation/flip of the LR image, then a random crop (at most ``crop``, a multiple of ``scale``)."""
    img = torch.rot90(lr, int(rng.integers(4)), dims=(-2, -1))
    if rng.random() < 0.5:
        img = img.flip(-1)
    h, w = img.shape[-2:]
    ch, cw = min(crop, h) // scale * scale, min(crop, w) // scale * scale
    top, left = int(rng.integers(h - ch + 1)), int(rng.integers(w - cw + 1))
    return img[..., top:top + ch, left:left + cw]


def zssr_train(net: nn.Module, lr: torch.Tensor, kernel: torch.Tensor, scale: int, cfg: ZSSRConfig,
               downsample: str = 'direct', seed: int = 0,
               on_test: Callable[[int, nn.Module], None] | None = None) -> int:
    """Train ``net`` (freshly initialised) on one LR image as ZSSR does; return the iterations run.

    ``on_test(iteration, net)`` is called at every reconstruction check (for PSNR-vs-steps curves).
    """
    rng = np.random.default_rng(seed)
    optimizer = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    son_full = degrade(lr, kernel, scale, downsample)
    last_change, it = 0, 0
    steps, errors = [], []
    for it in range(1, cfg.max_iters + 1):
        father = _random_father(lr, cfg.crop_size, scale, rng)
        son = degrade(father, kernel, scale, downsample)
        loss = F.l1_loss(net(son), father[..., :son.shape[-2] * scale, :son.shape[-1] * scale])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if it % cfg.test_every == 0:
            with torch.no_grad():
                rebuilt = net(son_full)
                steps.append(it)
                errors.append(F.mse_loss(rebuilt, lr[..., :rebuilt.shape[-2], :rebuilt.shape[-1]]).item())
            if on_test is not None:
                on_test(it, net)
        if it % cfg.check_every == 0 and it - last_change > cfg.min_iters and len(errors) >= 4:
            window = cfg.slope_range // cfg.test_every
            (slope, _), cov = np.polyfit(steps[-window:], errors[-window:], 1, cov=True)
            if -cfg.change_ratio * slope < np.sqrt(cov[0, 0]):
                for group in optimizer.param_groups:
                    group['lr'] /= 10
                last_change = it
                if optimizer.param_groups[0]['lr'] < cfg.min_lr:
                    break
    cfg.history = list(zip(steps, errors))
    return it
