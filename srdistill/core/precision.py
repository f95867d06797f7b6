"""Optional mixed precision (``amp: bf16 | fp16``) for the diffusion stages: autocast on CUDA, off on the CPU."""
from __future__ import annotations

from contextlib import nullcontext
from typing import ContextManager

import torch

from .errors import SRDistillError

AMP_DTYPES = {'bf16': torch.bfloat16, 'fp16': torch.float16}


def check_amp(value, option: str) -> str | None:
    """``None`` / ``false`` (off), ``bf16`` or ``fp16``; anything else is a one-line error naming ``option``."""
    if value in (None, False):
        return None
    if value not in AMP_DTYPES:
        raise SRDistillError(f'option {option}: expected false, bf16 or fp16, got {value!r}')
    return value


def autocast(amp: str | None, device: torch.device) -> ContextManager:
    """``torch.autocast`` in ``amp``'s dtype on a CUDA device; a no-op elsewhere (the CPU runs float32)."""
    if amp is None or device.type != 'cuda':
        return nullcontext()
    return torch.autocast('cuda', dtype=AMP_DTYPES[amp])
