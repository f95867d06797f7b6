"""A pretrained latent diffusion model (local folders or hub ids), fine-tuned on pseudo-classes.

The paper's backend: a pretrained latent diffusion model made class-conditional on the pseudo-classes. Two kinds of
denoiser in diffusers' ``save_pretrained`` format are accepted (``denoiser_dir``), with a frozen ``AutoencoderKL``
(``vae_dir``; ``decode_vae_dir``: another one to decode the samples):

* a DiT (``Transformer2DModel`` with ``norm_type: ada_norm_zero``): already class-conditional; pseudo-class ``k`` uses
  the model's class-embedding row ``k``, which fine-tuning re-learns;
* a Stable-Diffusion-style ``UNet2DConditionModel``: conditioned on ``class_tokens`` learned embedding vectors per
  pseudo-class, fed as its cross-attention context (no text encoder is needed).

With ``lora_rank`` > 0 only LoRA adapters (peft) on the attention projections and the class embeddings are trained;
with ``difffit: true`` (a DiT only) only DiffFit's groups (Xie et al. 2023, as the SRDD code fine-tunes its DiT):
every bias, the normalisation layers, the class embeddings and a learnable scale ``gamma`` per block (initialised to
1, so the model starts as the pretrained one).
Only noise-prediction (epsilon) models are supported. ``vae_dir`` / ``denoiser_dir`` are local diffusers folders or
hub ids (``org/name[/subfolder]``, fetched into the Hugging Face cache; offline only the cache is used).
"""
from __future__ import annotations

import torch
from basicsr.utils.registry import ARCH_REGISTRY
from torch import nn

from srdistill.core.errors import SRDistillError
from srdistill.core.hub import diffusers_config, load_diffusers

DENOISERS = ('Transformer2DModel', 'UNet2DConditionModel')  # diffusers classes, imported when a network is built
ATTENTION_TARGETS = ['to_q', 'to_k', 'to_v', 'to_out.0']


class DiffFitBlock(nn.Module):
    """A transformer block whose update is scaled by a learnable ``gamma``: ``x + gamma * (block(x) - x)``."""

    def __init__(self, block: nn.Module):
        super().__init__()
        self.block = block
        self.gamma = nn.Parameter(torch.ones(1))

    def forward(self, hidden_states: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        return hidden_states + self.gamma * (self.block(hidden_states, *args, **kwargs) - hidden_states)

    def __getattr__(self, name: str):
        """The wrapped block's attributes too (diffusers reads ``transformer_blocks[0].norm1``)."""
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self.block, name)


def difffit_parameters(model: nn.Module) -> set[str]:
    """The names of DiffFit's trainable groups: biases, normalisation layers, ``gamma`` scales, class embeddings."""
    names = set()
    for module_name, module in model.named_modules():
        for name, _ in module.named_parameters(recurse=False):
            full = f'{module_name}.{name}' if module_name else name
            if name in ('bias', 'gamma') or isinstance(module, (nn.LayerNorm, nn.GroupNorm)) or 'class_embedder' in full:
                names.add(full)
    return names


def apply_difffit(denoiser: nn.Module, where: str) -> None:
    """Wrap every transformer block with a ``gamma`` scale and train DiffFit's groups only."""
    if not hasattr(denoiser, 'transformer_blocks'):
        raise SRDistillError(f'option {where}: DiffFit fine-tunes a DiT (transformer blocks with scales); '
                             f'{type(denoiser).__name__} has none')
    denoiser.transformer_blocks = nn.ModuleList(DiffFitBlock(b) for b in denoiser.transformer_blocks)
    trainable = difffit_parameters(denoiser)
    for name, param in denoiser.named_parameters():
        param.requires_grad_(name in trainable)


def denoiser_class(name: str):
    """The diffusers class of the denoiser named by a folder or hub id (from its config)."""
    cls_name = diffusers_config(name, 'network_g.denoiser_dir').get('_class_name')
    if cls_name not in DENOISERS:
        raise SRDistillError(f'option network_g.denoiser_dir: {name} holds {cls_name or "no diffusers model"}; '
                             f'expected one of {sorted(DENOISERS)}')
    import diffusers

    return getattr(diffusers, cls_name)


@ARCH_REGISTRY.register()
class LatentClassConditionalDenoiser(nn.Module):
    """``forward(z_t, t, class_labels) -> predicted latent noise``; ``encode`` / ``decode`` map images in [-1, 1]
    to the VAE's scaled latents and back (the VAE stays frozen)."""

    def __init__(self, vae_dir: str, denoiser_dir: str, num_classes: int = 7, lora_rank: int = 0,
                 class_tokens: int = 4, sample_size: int | None = None, difffit: bool = False,
                 decode_vae_dir: str | None = None):
        super().__init__()
        self.num_classes = num_classes
        from diffusers import AutoencoderKL, Transformer2DModel

        self.vae = load_diffusers(AutoencoderKL, vae_dir, 'network_g.vae_dir').requires_grad_(False)
        # the SRDD code encodes with sd-vae-ft-ema and decodes its samples with sd-vae-ft-mse
        self.decode_vae = (load_diffusers(AutoencoderKL, decode_vae_dir, 'network_g.decode_vae_dir').requires_grad_(False)
                           if decode_vae_dir else None)
        self.scaling = float(self.vae.config.scaling_factor)
        self.denoiser = load_diffusers(denoiser_class(denoiser_dir), denoiser_dir, 'network_g.denoiser_dir')
        self.is_dit = isinstance(self.denoiser, Transformer2DModel)
        if sample_size is not None and sample_size % self.downscale:
            raise SRDistillError(f'option network_g: patches of {sample_size} px do not map onto the VAE latent grid '
                                 f'(a multiple of {self.downscale} is needed)')
        self.null_class = None  # the cross-attention UNet has no unconditional class: no guidance
        if self.is_dit:
            table = self.denoiser.config.num_embeds_ada_norm
            self.null_class = table  # DiT's label embedding: classes 0..table-1, then the dropped-label class
            if self.denoiser.config.norm_type != 'ada_norm_zero' or not table or table < num_classes:
                raise SRDistillError(f'option network_g.denoiser_dir: {denoiser_dir} is not a class-conditional DiT '
                                     f'with at least {num_classes} classes (norm_type ada_norm_zero)')
        else:
            width = self.denoiser.config.cross_attention_dim
            self.class_context = nn.Parameter(torch.randn(num_classes, class_tokens, width) * width ** -0.5)
        if difffit:
            if lora_rank:
                raise SRDistillError('option network_g: give one of difffit, lora_rank')
            apply_difffit(self.denoiser, 'network_g.difffit')
        if lora_rank:
            from peft import LoraConfig
            self.denoiser.requires_grad_(False)
            self.denoiser.add_adapter(LoraConfig(r=lora_rank, lora_alpha=lora_rank, target_modules=ATTENTION_TARGETS))
            for name, param in self.denoiser.named_parameters():
                if 'class_embedder' in name:  # DiT: its class embeddings are the pseudo-class conditioning
                    param.requires_grad_(True)

    @property
    def downscale(self) -> int:
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    def latent_shape(self, size: int) -> tuple[int, int, int]:
        return self.vae.config.latent_channels, size // self.downscale, size // self.downscale

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.vae.encode(x).latent_dist.mean * self.scaling

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return (self.decode_vae or self.vae).decode(z / self.scaling).sample

    def forward(self, z: torch.Tensor, t: torch.Tensor, class_labels: torch.Tensor) -> torch.Tensor:
        if self.is_dit:
            out = self.denoiser(z, timestep=t, class_labels=class_labels).sample
            return out[:, :z.shape[1]]  # a learned-variance DiT also predicts sigma: keep the noise
        return self.denoiser(z, t, encoder_hidden_states=self.class_context[class_labels]).sample
