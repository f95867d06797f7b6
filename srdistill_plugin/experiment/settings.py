"""A run's stored settings in a form that survives a moved repository and older versions of the tool."""
from __future__ import annotations

import os
from pathlib import Path


def portable(root: Path, value):
    """``value`` (parsed JSON) with every absolute path under ``root`` (the experiment's root) made relative."""
    if isinstance(value, dict):
        return {k: portable(root, v) for k, v in value.items()}
    if isinstance(value, list):
        return [portable(root, v) for v in value]
    if isinstance(value, str) and os.path.isabs(value):
        path, base = Path(value), root.resolve()
        return str(path.relative_to(base)) if path.is_relative_to(base) else value
    return value


def as_now(root: Path, stored: dict, settings: dict) -> dict:
    """``stored`` settings in the form ``settings`` take now: paths portable (older versions stored absolute
    ones), and no ``finetune`` options where ``settings`` leave them out (older versions recorded them for every
    set)."""
    stored = portable(root, stored)
    if 'finetune' not in settings['data']:
        stored['data'].pop('finetune', None)
    return stored
