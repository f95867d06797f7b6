"""The MZSR / ZSSR network: 8 plain 3x3 convolutions with a global residual on the MATLAB-bicubic-upsampled input."""
from __future__ import annotations

import math

import torch
from torch import nn

from .matlab_resize import matlab_resize


class MZSRNet(nn.Module):
    """``forward(lr) = up(lr) + body(up(lr))``, ``up`` = MATLAB bicubic x``upscale`` (a = -0.5, differentiable), as
    the official models take a MATLAB-bicubic input. ``forward(lr, out_size=(H, W))`` upsamples to a given size
    (odd-sized fathers at test time). ``upscale: 1`` takes an already-upsampled input.

    Defaults give the paper's network: 8 layers, 64 channels, ReLU after all but the last (about 225 K params).
    ZSSR's own network: ``bias: false, init_variance: 0.1`` (weights ~ N(0, 0.1 / fan_in), no biases).
    """

    def __init__(self, num_in_ch: int = 3, num_feat: int = 64, num_layers: int = 8, upscale: int = 2,
                 bias: bool = True, init_variance: float | None = None):
        super().__init__()
        self.upscale = upscale
        layers = []
        for i in range(num_layers):
            conv = nn.Conv2d(num_in_ch if i == 0 else num_feat, num_in_ch if i == num_layers - 1 else num_feat, 3, 1,
                             1, bias=bias)
            if init_variance is not None:
                nn.init.normal_(conv.weight, std=math.sqrt(init_variance / conv.weight[0].numel()))
            layers.append(conv)
            if i < num_layers - 1:
                layers.append(nn.ReLU(inplace=True))
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, out_size: tuple[int, int] | None = None) -> torch.Tensor:
        if self.upscale != 1:
            x = matlab_resize(x, self.upscale, out_size)
        elif out_size is not None:
            raise ValueError('MZSRNet: out_size needs upscale > 1 (upscale 1 takes an already-upsampled input)')
        return x + self.body(x)
