"""Stage 4 of the distillation: sampling HR patches from the fine-tuned class-conditional model (DDIM or DDPM).

``noise``: generate from pure noise; ``sdedit``: noise a selected real patch of the class to ``strength`` (a fraction
of the diffusion time) and denoise it back, which keeps the patch's layout and re-synthesises its detail.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from diffusers import DDIMScheduler
from torch import nn

from .errors import SRDistillError


def ddim_timesteps(scheduler: DDIMScheduler, steps: int, strength: float) -> torch.Tensor:
    """About ``steps`` DDIM timesteps, all below ``strength * T`` (``strength`` in (0, 1]; 1 = the full chain)."""
    if not 0 < strength <= 1 or steps < 1:
        raise ValueError(f'ddim_timesteps: steps {steps} must be >= 1 and strength {strength} in (0, 1]')
    total = scheduler.config.num_train_timesteps
    scheduler.set_timesteps(max(steps, math.ceil(steps / strength)))
    return scheduler.timesteps[scheduler.timesteps < strength * total]


def guided_noise(net: nn.Module, x: torch.Tensor, t: torch.Tensor, classes: torch.Tensor,
                 guidance_scale: float = 1.) -> torch.Tensor:
    """The predicted noise; with ``guidance_scale`` s != 1, classifier-free guidance as DiT samples:
    ``eps_null + s * (eps_class - eps_null)``, the null prediction from the model's ``null_class`` (one batch of
    twice the size)."""
    if guidance_scale == 1:
        return net(x, t, classes)
    if getattr(net, 'null_class', None) is None:
        raise SRDistillError(f'option synthesize.guidance_scale: {guidance_scale} needs a generator with an '
                             'unconditional class (a DiT, or the pixel UNet with null_class: true)')
    null = torch.full_like(classes, net.null_class)
    eps_class, eps_null = net(torch.cat([x, x]), torch.cat([t, t]), torch.cat([classes, null])).chunk(2)
    return eps_null + guidance_scale * (eps_class - eps_null)


def step(scheduler, eps: torch.Tensor, t: torch.Tensor, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """One reverse step; an ancestral (DDPM) scheduler draws its noise from the CPU ``generator`` too."""
    extra = {} if isinstance(scheduler, DDIMScheduler) else {'generator': generator}
    return scheduler.step(eps, t, x, **extra).prev_sample


@torch.no_grad()
def sample(net: nn.Module, scheduler: DDIMScheduler, classes: torch.Tensor, size: int, steps: int,
           generator: torch.Generator, init: torch.Tensor | None = None, strength: float = 1.,
           device: torch.device | str = 'cpu', guidance_scale: float = 1.) -> torch.Tensor:
    """Images in [0, 1], NCHW, one per entry of ``classes``, on ``device`` (where ``net`` is); ``init`` (in [0, 1])
    switches on SDEdit. The noise comes from the CPU ``generator``, so a seed gives the same draws on any device. A
    latent model (one with ``encode`` / ``decode`` / ``latent_shape``) is sampled in its latent space and decoded.
    ``guidance_scale``: classifier-free guidance (:func:`guided_noise`; 1: none)."""
    latent = hasattr(net, 'encode')
    timesteps = ddim_timesteps(scheduler, steps, strength if init is not None else 1.).to(device)
    noise = torch.randn((len(classes), *(net.latent_shape(size) if latent else (3, size, size))),
                        generator=generator).to(device)
    classes = classes.to(device)
    if init is not None:
        init = init.to(device, torch.float32)
        start = net.encode(init * 2 - 1) if latent else init * 2 - 1
        x = scheduler.add_noise(start, noise, timesteps[:1].repeat(len(classes)))
    else:
        x = noise
    for t in timesteps:
        eps = guided_noise(net, x, t.repeat(len(classes)), classes, guidance_scale)
        x = step(scheduler, eps, t, x, generator)
    if latent:
        x = net.decode(x)
    return ((x.clamp(-1, 1) + 1) / 2)


def preview_grid(images: list[np.ndarray], classes: list[int], per_row: int = 8) -> np.ndarray:
    """A uint8 grid: one row per class, up to ``per_row`` images each (2-pixel white gutters)."""
    rows = []
    for c in sorted(set(classes)):
        members = [img for img, k in zip(images, classes) if k == c][:per_row]
        members += [np.zeros_like(images[0])] * (per_row - len(members))
        rows.append(np.concatenate([np.pad(m, ((2, 2), (2, 2), (0, 0)), constant_values=255) for m in members], 1))
    return np.concatenate(rows, 0)
