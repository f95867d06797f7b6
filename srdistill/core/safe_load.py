"""Checkpoints are data: every checkpoint the project reads goes through :func:`load_checkpoint`.

``torch.load(..., weights_only=True)`` rebuilds tensors, numbers, strings and containers only; a pickle that names
any other global (``os.system``, ``builtins.open``, an arbitrary class) is refused before anything of it runs.
Frameworks whose own checkpoints hold a few harmless classes (MMEngine's message hub) pass exactly those as
``allowed`` -- never ``weights_only=False``.
"""
from __future__ import annotations

import os
import pickle
import re
from typing import Any, Iterable

import torch

from .errors import SRDistillError

_REFUSED_GLOBAL = re.compile(r'GLOBAL (\S+) (?:was not an allowed global|whose module \S+ is blocked)')
_REFUSALS = ('Can only build', 'Trying to call reduce', 'Unsupported global')  # code it would build or call


class UnsafeCheckpointError(SRDistillError):
    """A checkpoint whose pickle would call or build something other than tensors and plain containers."""


def unpickler_reason(err: BaseException) -> str:
    """The weights-only unpickler's own reason (``Unsupported operand 120``), without torch's advice around it."""
    text = str(err)
    return next((line.strip() for line in text.split('WeightsUnpickler error:', 1)[-1].splitlines() if line.strip()),
                text.strip().splitlines()[0] if text.strip() else type(err).__name__)


def refused_part(err: BaseException) -> str | None:
    """What torch's weights-only unpickler refused (``builtins.open``, ``"Can only build ..."``), if ``err`` is that
    refusal; ``None`` for other read errors (a truncated or foreign file is not a pickle to refuse)."""
    text = str(err)
    found = _REFUSED_GLOBAL.search(text)
    if found:
        return found.group(1)
    reason = unpickler_reason(err)
    return f'"{reason}"' if reason.startswith(_REFUSALS) else None


def load_checkpoint(path: str | os.PathLike, map_location: Any = 'cpu', allowed: Iterable[Any] = ()) -> Any:
    """``torch.load(path, weights_only=True)`` with ``allowed`` extra globals; a refusal is one line naming the
    file and the refused global (:class:`UnsafeCheckpointError`). A file that is no checkpoint at all is an
    ``UnpicklingError`` with the unpickler's reason only (never torch's advice to turn weights-only off); other read
    errors propagate unchanged."""
    try:
        with torch.serialization.safe_globals(list(allowed)):
            return torch.serialization.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        refused = refused_part(err)
        if refused is None:
            raise pickle.UnpicklingError(f'not a checkpoint torch can read: {unpickler_reason(err)}') from err
        raise UnsafeCheckpointError(
            f'{os.fspath(path)}: refused to load: its pickle asks for {refused}, which is not a tensor, number or '
            'container (checkpoints are read weights-only, because a checkpoint holding code could run it)') from err
