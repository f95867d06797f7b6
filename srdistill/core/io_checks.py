"""Checks on output locations, made before long work starts so that a bad path fails at once with one line."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

from .errors import SRDistillError


def check_output_folder(folder: Path) -> None:
    """Create ``folder`` if needed and make sure a file can be written in it."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder):
            pass
    except OSError as err:
        raise SRDistillError(f'{folder}: output folder cannot be written ({err.strerror or err})') from err


def check_can_create(path: Path, option: str) -> None:
    """``path`` can be made later (without making anything now): the nearest folder that exists above it is
    writable, and ``path`` itself, if it exists, is a folder."""
    path = Path(path).absolute()
    if path.exists() and not path.is_dir():
        raise SRDistillError(f'option {option}: {path} exists and is not a folder')
    existing = next(p for p in (path, *path.parents) if p.exists())
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise SRDistillError(f'option {option}: {path} cannot be written ({existing} is not a writable folder)')
