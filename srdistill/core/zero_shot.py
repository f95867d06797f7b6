"""Zero-shot SR at test time: MZSR's few-step adaptation on the test image alone and the x8 self-ensemble (ZSSR, the
baseline that trains from scratch on it: :mod:`srdistill.core.zssr`).

Images are NCHW float tensors in [0, 1]; any size works (odd LR sides included): the son of an LR image is
``ceil(H / s)`` high and the network upsamples it back to the LR's exact shape, as the official codes do.
"""
from __future__ import annotations

import copy
import time
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from .errors import SRDistillError
from .kernels import degrade

# The official test-time step sizes per released model (JWSoh/MZSR test.py): step index -> SGD learning rate.
STEP_SCHEDULES: dict[str, Callable[[int], float]] = {
    'direct_x2': lambda i: 2e-2 if i == 0 else 1e-2 if i < 4 else 5e-3,
    'multiscale': lambda i: 1e-2 if i < 3 else 5e-3,
    'bicubic_x2': lambda i: 1e-2 if i < 3 else 1e-3,
    'direct_x4': lambda i: 1e-2 if i == 0 else 5e-3 if i < 5 else 1e-3,
    'task_lr': lambda i: 1e-2,  # not in test.py: the meta-training inner step size (config.py TASK_LR) throughout
}


def mzsr_step_sizes(steps: int, schedule: str = 'direct_x2') -> list[float]:
    """The official step sizes of ``steps`` adaptation steps for the named model's ``schedule``."""
    if schedule not in STEP_SCHEDULES:
        raise SRDistillError(f'unknown adaptation schedule {schedule!r}; choose from {sorted(STEP_SCHEDULES)}')
    return [STEP_SCHEDULES[schedule](i) for i in range(steps)]


def mzsr_adapt(net: nn.Module, lr: torch.Tensor, kernel: torch.Tensor, scale: int, steps: int,
               downsample: str = 'direct', step_sizes: list[float] | None = None,
               schedule: str = 'direct_x2', progress: str | None = None) -> tuple[nn.Module, float]:
    """A copy of ``net`` adapted by ``steps`` plain SGD steps on (son -> LR); returns it and the adaptation time (s).

    ``step_sizes`` overrides the official ``schedule`` (one learning rate per step); ``progress`` (a label) shows the
    steps on a progress bar when there are several.
    """
    sizes = list(step_sizes) if step_sizes is not None else mzsr_step_sizes(steps, schedule)
    if len(sizes) < steps:
        raise SRDistillError(f'{steps} adaptation steps need {steps} step sizes, got {len(sizes)}')
    start = time.perf_counter()
    adapted = copy.deepcopy(net).train()
    if steps:
        son = degrade(lr, kernel, scale, downsample)
        for step_size in tqdm(sizes[:steps], desc=progress, unit='step', leave=False,
                              disable=progress is None or steps < 2):
            adapted.zero_grad(set_to_none=True)
            F.l1_loss(adapted(son, lr.shape[-2:]), lr).backward()
            with torch.no_grad():
                for p in adapted.parameters():
                    p -= step_size * p.grad
        adapted.zero_grad(set_to_none=True)
    return adapted.eval(), time.perf_counter() - start


# whether view k of ``dihedral_outputs`` (k mod 4 quarter turns, mirrored for k >= 4) runs the image's rows /
# columns backwards
REVERSED_AXES = ((False, False), (False, True), (True, True), (True, False),
                 (False, True), (True, True), (True, False), (False, False))


def _shift_back(out: torch.Tensor, dim: int, pixels: int) -> torch.Tensor:
    """``out`` moved ``pixels`` towards index 0 along ``dim``, its last slice repeated."""
    size = out.shape[dim]
    return torch.cat([out.narrow(dim, pixels, size - pixels), *[out.narrow(dim, size - 1, 1)] * pixels], dim)


def dihedral_outputs(net: nn.Module, lr: torch.Tensor, views: int = 8, grid_shift: int = 0) -> list[torch.Tensor]:
    """The network's output (clamped to [0, 1]) on the first ``views`` of the 8 rotations and flips of ``lr``
    (view k: turned k mod 4 quarter turns, then mirrored for k >= 4), each turned back to ``lr``'s frame.

    ``grid_shift``: an LR subsampled directly at HR pixels 0, s, 2s, ... (``s - 1``; 0 for a grid symmetric under
    flips, as MATLAB bicubic's) is, read backwards, sampled at s - 1, 2s - 1, ...: the output of a view that runs an
    axis backwards lands that many HR pixels further along it, and is moved back."""
    outputs = []
    with torch.no_grad():
        for k in range(views):
            view = torch.rot90(lr, k % 4, dims=(-2, -1))
            view = view.flip(-1) if k >= 4 else view
            out = net(view).clamp(0, 1)
            out = out.flip(-1) if k >= 4 else out
            out = torch.rot90(out, -(k % 4), dims=(-2, -1))
            for dim, reversed_axis in zip((-2, -1), REVERSED_AXES[k]):
                if reversed_axis and grid_shift:
                    out = _shift_back(out, dim, grid_shift)
            outputs.append(out)
    return outputs


def elementwise_median(tensors: list[torch.Tensor]) -> torch.Tensor:
    """The element-wise median as ``np.median`` takes it (ZSSR's): the mean of the two middle values for an even
    count (``torch.median`` would keep the lower one)."""
    ordered = torch.stack(tensors).sort(dim=0).values
    n = len(tensors)
    return ordered[n // 2] if n % 2 else (ordered[n // 2 - 1] + ordered[n // 2]) / 2


def self_ensemble(net: nn.Module, lr: torch.Tensor, grid_shift: int = 0) -> torch.Tensor:
    """ZSSR's test-time ensemble without back-projection: the median of :func:`dihedral_outputs` (``grid_shift``:
    ``scale - 1`` for direct subsampling)."""
    return elementwise_median(dihedral_outputs(net, lr, grid_shift=grid_shift))
