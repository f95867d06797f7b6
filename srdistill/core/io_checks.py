"""Checks on output locations, made before long work starts so that a bad path fails at once with one line."""
from __future__ import annotations

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
