"""The functional MAML step of MZSR: inner SGD on the support set, MAML++ weighted query losses.

Parameters are a ``{name: tensor}`` dict used through ``torch.func.functional_call``, so the inner updates stay in
the autograd graph: with ``first_order=False`` the outer gradient includes the second-order terms through every
inner step; with ``first_order=True`` the inner gradients are treated as constants (FOMAML).
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn
from torch.func import functional_call

Params = dict[str, torch.Tensor]
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def inner_step(net: nn.Module, params: Params, x: torch.Tensor, y: torch.Tensor, lr: float, loss_fn: LossFn,
               first_order: bool) -> Params:
    """One SGD step on ``loss_fn(net(x), y)`` that returns new (differentiable) parameters."""
    loss = loss_fn(functional_call(net, params, (x, )), y)
    grads = torch.autograd.grad(loss, list(params.values()), create_graph=not first_order)
    return {name: p - lr * g for (name, p), g in zip(params.items(), grads)}


# The paper's MAML++ schedule: each early step's weight falls by 1 / (N * 10000 / 3) per iteration down to 0.03 / N,
# i.e. it reaches the floor after 0.97 * 10000 / 3 iterations whatever N is.
PAPER_ANNEAL_ITERS = 0.97 * 10000 / 3  # 3233.3


def multi_step_loss_weights(num_steps: int, current_iter: int, anneal_iters: float = PAPER_ANNEAL_ITERS) -> torch.Tensor:
    """MAML++ per-step query-loss weights: uniform at first; the early steps' weights decay linearly to
    ``0.03 / num_steps`` over ``anneal_iters`` iterations and the last step takes the rest (``anneal_iters <= 0``:
    uniform throughout, which is what the released code trains with, its step counter never moving)."""
    weights = torch.full((num_steps, ), 1. / num_steps)
    if num_steps == 1 or anneal_iters <= 0:
        return weights
    progress = min(current_iter / anneal_iters, 1.)
    floor = 0.03 / num_steps
    weights[:-1] = 1. / num_steps - progress * (1. / num_steps - floor)
    weights[-1] = 1. - weights[:-1].sum()
    return weights


def task_query_loss(net: nn.Module, params: Params, support: tuple[torch.Tensor, torch.Tensor],
                    query: tuple[torch.Tensor, torch.Tensor], inner_lr: float, step_weights: torch.Tensor,
                    loss_fn: LossFn, first_order: bool = False) -> tuple[torch.Tensor, list[float]]:
    """Adapt on ``support`` for ``len(step_weights)`` steps; return the weighted query loss and each step's loss."""
    fast = params
    total, per_step = 0., []
    for weight in step_weights:
        fast = inner_step(net, fast, *support, inner_lr, loss_fn, first_order)
        loss = loss_fn(functional_call(net, fast, (query[0], )), query[1])
        total = total + weight * loss
        per_step.append(loss.item())
    return total, per_step
