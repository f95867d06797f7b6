"""The registry of synthesis modes: ``synthesize.mode: <mode>`` runs the registered class whose ``mode`` it is."""
from __future__ import annotations

from basicsr.utils.registry import Registry

from srdistill.core.errors import SRDistillError

SYNTHESIS_REGISTRY = Registry('synthesis')


def synthesis_modes() -> list[str]:
    """Every registered mode, in registration order."""
    return [cls.mode for _, cls in SYNTHESIS_REGISTRY]


def strategy_class(mode: str) -> type:
    """The registered class of ``mode``; one line naming the option when none is."""
    for _, cls in SYNTHESIS_REGISTRY:
        if cls.mode == mode:
            return cls
    raise SRDistillError(f'option synthesize.mode: expected one of {tuple(synthesis_modes())}, got {mode!r}')
