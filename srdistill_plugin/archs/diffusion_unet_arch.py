"""A class-conditional pixel-space denoiser: diffusers' ``UNet2DModel`` with a class embedding."""
from __future__ import annotations

import torch
from basicsr.utils.registry import ARCH_REGISTRY
from diffusers import UNet2DModel
from torch import nn


@ARCH_REGISTRY.register()
class ClassConditionalUNet(nn.Module):
    """``forward(x_t, t, class_labels) -> predicted noise``; images in [-1, 1].

    Self-attention only at the lowest resolution by default (attention at full patch size dominates CPU cost).
    Scale it by options: ``block_out_channels``, ``layers_per_block``, ``attention_levels``.
    """

    def __init__(self, sample_size: int = 64, num_classes: int = 7, block_out_channels: tuple = (32, 64, 128),
                 layers_per_block: int = 1, attention_levels: tuple = (2, ), norm_num_groups: int = 16):
        super().__init__()
        levels = range(len(block_out_channels))
        self.unet = UNet2DModel(
            sample_size=sample_size, in_channels=3, out_channels=3, block_out_channels=tuple(block_out_channels),
            layers_per_block=layers_per_block, norm_num_groups=norm_num_groups, num_class_embeds=num_classes,
            down_block_types=tuple('AttnDownBlock2D' if i in attention_levels else 'DownBlock2D' for i in levels),
            up_block_types=tuple('AttnUpBlock2D' if i in attention_levels else 'UpBlock2D' for i in reversed(levels)))
        self.num_classes = num_classes

    def forward(self, x: torch.Tensor, t: torch.Tensor, class_labels: torch.Tensor) -> torch.Tensor:
        return self.unet(x, t, class_labels=class_labels).sample
