"""The MZSR network: 8 plain 3x3 convolutions with a global residual on the bicubic-upsampled input."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from basicsr.utils.registry import ARCH_REGISTRY
from torch import nn


@ARCH_REGISTRY.register()
class MZSRNet(nn.Module):
    """``forward(lr) = up(lr) + body(up(lr))`` with ``up`` = bicubic x``upscale`` (PyTorch's, differentiable).

    Defaults give the paper's network: 8 layers, 64 channels, ReLU after all but the last (about 225 K params).
    ``upscale: 1`` makes it take an already-upsampled input.
    """

    def __init__(self, num_in_ch: int = 3, num_feat: int = 64, num_layers: int = 8, upscale: int = 2):
        super().__init__()
        self.upscale = upscale
        layers = []
        for i in range(num_layers):
            layers.append(nn.Conv2d(num_in_ch if i == 0 else num_feat, num_in_ch if i == num_layers - 1 else num_feat,
                                    3, 1, 1))
            if i < num_layers - 1:
                layers.append(nn.ReLU(inplace=True))
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.upscale != 1:
            x = F.interpolate(x, scale_factor=self.upscale, mode='bicubic', align_corners=False)
        return x + self.body(x)
