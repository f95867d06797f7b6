"""Stage manifests: one JSON file per finished stage, written atomically (its presence means 'done')."""
from __future__ import annotations

import json
from pathlib import Path

from .atomic_io import atomic_write_text
from .errors import SRDistillError


def write_manifest(path: str | Path, payload: dict) -> Path:
    """Write ``payload`` as JSON under its partial name, then rename it to ``path``."""
    return atomic_write_text(path, json.dumps(payload, indent=1))


def read_manifest(path: str | Path) -> dict:
    """Read a manifest; a clear error when the stage that writes it has not finished."""
    path = Path(path)
    if not path.is_file():
        raise SRDistillError(f'{path}: missing (run the stage that writes it first)')
    return json.loads(path.read_text())
