"""A class-conditional pixel-space denoiser: diffusers' ``UNet2DModel`` with a class embedding.

Two backends: trained from scratch (the default), or a pretrained ``UNet2DModel`` loaded from a **local** folder in
diffusers' ``save_pretrained`` format (``pretrained_dir``), given a fresh class embedding and, optionally, LoRA
adapters through peft (``lora_rank``) so that only the adapters and the class embedding are trained.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import torch
from basicsr.utils.registry import ARCH_REGISTRY
from torch import nn

from srdistill.core.errors import SRDistillError, first_line

if TYPE_CHECKING:
    from diffusers import UNet2DModel

# diffusers is imported where a network is built, not at registration: every BasicSR run imports this package's
# archs, and most (the SR students) never build a diffusion model.

LORA_TARGETS = ('to_q', 'to_k', 'to_v', 'to_out.0', 'conv1', 'conv2')


def load_pretrained_unet(folder: str, num_classes: int, lora_rank: int = 0) -> 'UNet2DModel':
    """A local pretrained ``UNet2DModel`` with a new ``num_classes`` embedding (and LoRA adapters if rank > 0)."""
    from diffusers import UNet2DModel
    path = Path(folder)
    if not (path / 'config.json').is_file():
        raise SRDistillError(f'option network_g.pretrained_dir: {path} is not a diffusers UNet2DModel folder '
                             '(no config.json)')
    try:
        base = UNet2DModel.from_pretrained(str(path), local_files_only=True)
    except Exception as err:  # diffusers raises several types for a wrong or partial folder
        raise SRDistillError(f'option network_g.pretrained_dir: cannot load {path} ({first_line(err)})') from err
    config = dict(base.config, num_class_embeds=num_classes, class_embed_type=None)
    unet = UNet2DModel.from_config(config)
    missing = unet.load_state_dict(base.state_dict(), strict=False).missing_keys
    if any(not k.startswith('class_embedding') for k in missing):
        raise SRDistillError(f'option network_g.pretrained_dir: {path} lacks weights {missing[:3]}')
    if lora_rank:
        from peft import LoraConfig
        unet.requires_grad_(False)
        unet.add_adapter(LoraConfig(r=lora_rank, lora_alpha=lora_rank, target_modules=list(LORA_TARGETS)))
        unet.class_embedding.requires_grad_(True)
    return unet


@ARCH_REGISTRY.register()
class ClassConditionalUNet(nn.Module):
    """``forward(x_t, t, class_labels) -> predicted noise``; images in [-1, 1].

    Self-attention only at the lowest resolution by default (attention at full patch size dominates CPU cost).
    Scale it by options: ``block_out_channels``, ``layers_per_block``, ``attention_levels``; or start from a
    pretrained local model: ``pretrained_dir`` (+ ``lora_rank`` to train LoRA adapters and the class embedding).
    ``null_class: true`` adds one more embedding, class ``num_classes``: the unconditional input of classifier-free
    guidance (trained through ``train.class_dropout_prob``).
    """

    def __init__(self, sample_size: int = 64, num_classes: int = 7, block_out_channels: tuple = (32, 64, 128),
                 layers_per_block: int = 1, attention_levels: tuple = (2, ), norm_num_groups: int = 16,
                 pretrained_dir: str | None = None, lora_rank: int = 0, null_class: bool = False):
        super().__init__()
        self.num_classes = num_classes
        self.null_class = num_classes if null_class else None
        embeddings = num_classes + int(bool(null_class))
        if pretrained_dir:
            self.unet = load_pretrained_unet(pretrained_dir, embeddings, lora_rank)
            return
        from diffusers import UNet2DModel

        levels = range(len(block_out_channels))
        self.unet = UNet2DModel(
            sample_size=sample_size, in_channels=3, out_channels=3, block_out_channels=tuple(block_out_channels),
            layers_per_block=layers_per_block, norm_num_groups=norm_num_groups, num_class_embeds=embeddings,
            down_block_types=tuple('AttnDownBlock2D' if i in attention_levels else 'DownBlock2D' for i in levels),
            up_block_types=tuple('AttnUpBlock2D' if i in attention_levels else 'UpBlock2D' for i in reversed(levels)))

    def forward(self, x: torch.Tensor, t: torch.Tensor, class_labels: torch.Tensor) -> torch.Tensor:
        return self.unet(x, t, class_labels=class_labels).sample
