"""BasicSR's pure helper modules, loaded from their files without ``import basicsr``.

``import basicsr`` runs its package ``__init__``, which imports every BasicSR arch, dataset and model and, through
``torchvision.ops``, ``torch._dynamo``: about 4 s on two CPU cores, longer than ``import torch`` itself. The
framework-free core needs only a few pure functions (MATLAB-style bicubic weights, YCbCr conversion, the LMDB
writer), whose modules import nothing but numpy, torch, cv2 and lmdb; loading those files directly keeps BasicSR's
own code and keeps ``srdistill`` (and so the zero-shot command) free of the training stack.
"""
from __future__ import annotations

import importlib.util
import sys
from functools import lru_cache
from pathlib import Path
from types import ModuleType

from .errors import SRDistillError


@lru_cache(maxsize=None)
def basicsr_module(name: str) -> ModuleType:
    """``basicsr.<name>`` (e.g. ``'utils.matlab_functions'``): the module already imported, else its file loaded on
    its own as ``srdistill_basicsr.<name>``."""
    if f'basicsr.{name}' in sys.modules:
        return sys.modules[f'basicsr.{name}']
    spec = importlib.util.find_spec('basicsr')  # finds the package without running its __init__
    if spec is None or not spec.submodule_search_locations:
        raise SRDistillError('basicsr is not installed (pip install -r requirements.txt)')
    path = Path(list(spec.submodule_search_locations)[0], *name.split('.')).with_suffix('.py')
    module_spec = importlib.util.spec_from_file_location(f'srdistill_basicsr.{name}', path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module
