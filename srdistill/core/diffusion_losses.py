"""Diffusion fine-tuning objectives for SR data distillation (framework-free).

* ``eps``: the standard noise-prediction MSE;
* representativeness / diversity (MinimaxDiffusion-style): the predicted clean sample's embedding is pulled
  towards the *least* similar member of a per-class memory of real samples, and pushed away from the *most*
  similar member of a memory of recent predictions;
* ``sr``: an L1 loss between the Sobel gradients of the predicted clean sample and the real one, weighted by the
  signal level, so that the high-frequency content that SR training learns from is reproduced.

The embedding is a fixed, parameter-free one: the L2-normalised 8x8 average-pooled image (a coarse layout
descriptor), which costs nothing on the CPU.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def embed(x: torch.Tensor, size: int = 8) -> torch.Tensor:
    """``(N, 3*size*size)`` unit vectors describing the coarse layout of an NCHW batch."""
    return F.normalize(F.adaptive_avg_pool2d(x, size).flatten(1), dim=1)


def predicted_x0(x_t: torch.Tensor, eps: torch.Tensor, alpha_bar: torch.Tensor) -> torch.Tensor:
    """The clean sample implied by a noise prediction: ``(x_t - sqrt(1 - a) eps) / sqrt(a)``."""
    a = alpha_bar.view(-1, 1, 1, 1)
    return (x_t - (1 - a).sqrt() * eps) / a.sqrt()


def sobel_gradients(x: torch.Tensor) -> torch.Tensor:
    """Horizontal and vertical Sobel responses of every channel, stacked: ``(N, 2C, H, W)``."""
    kx = torch.tensor([[-1., 0., 1.], [-2., 0., 2.], [-1., 0., 1.]], device=x.device, dtype=x.dtype) / 8
    weight = torch.stack([kx, kx.t()]).unsqueeze(1).repeat(x.shape[1], 1, 1, 1)
    return F.conv2d(F.pad(x, [1] * 4, mode='replicate'), weight, groups=x.shape[1])


class EmbeddingMemory:
    """Per-class FIFO queues of detached embeddings (``size`` per class)."""

    def __init__(self, num_classes: int, size: int):
        self.size = size
        self.queues: list[torch.Tensor | None] = [None] * num_classes

    def push(self, emb: torch.Tensor, classes: torch.Tensor) -> None:
        for c in classes.unique().tolist():
            new = emb[classes == c].detach()
            old = self.queues[c]
            self.queues[c] = (new if old is None else torch.cat([new, old]))[:self.size]

    def get(self, c: int) -> torch.Tensor | None:
        return self.queues[c]


def minimax_terms(emb: torch.Tensor, classes: torch.Tensor, real: EmbeddingMemory,
                  generated: EmbeddingMemory) -> tuple[torch.Tensor, torch.Tensor]:
    """``(representativeness, diversity)`` losses averaged over the batch (zero where a memory is empty)."""
    rep, div = emb.new_zeros(()), emb.new_zeros(())
    for i, c in enumerate(classes.tolist()):
        if real.get(c) is not None:
            rep = rep + (1 - (real.get(c) @ emb[i]).min())
        if generated.get(c) is not None:
            div = div + (generated.get(c) @ emb[i]).max()
    return rep / len(emb), div / len(emb)
