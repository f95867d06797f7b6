"""A parameter-free 'network' that upsamples by MATLAB bicubic: the SR baseline, run through the same test pipeline."""
from __future__ import annotations

import torch
from basicsr.utils.registry import ARCH_REGISTRY
from torch import nn

from srdistill.core.matlab_resize import matlab_resize


@ARCH_REGISTRY.register()
class BicubicUpsampler(nn.Module):
    """``forward(lr)`` returns MATLAB-style bicubic ``x scale`` of each image in the NCHW batch, clipped to [0, 1]."""

    def __init__(self, scale: int = 4):
        super().__init__()
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return matlab_resize(x, self.scale).clamp_(0, 1)
