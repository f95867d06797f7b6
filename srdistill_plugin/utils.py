"""Small helpers shared by the plugin's subpackages."""
from __future__ import annotations

import importlib
from pathlib import Path


def import_modules_with_suffix(package_file: str, package_name: str, suffix: str) -> list:
    """Import every ``*<suffix>.py`` module beside ``package_file`` (BasicSR's auto-registration convention)."""
    folder = Path(package_file).parent
    names = sorted(p.stem for p in folder.glob(f'*{suffix}.py'))
    return [importlib.import_module(f'{package_name}.{name}') for name in names]
