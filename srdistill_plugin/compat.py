"""Documented fixes that let the pinned MMagic stack import on current numpy / without compiled mmcv ops.

Applied once, by :mod:`srdistill_plugin.mm` only (the BasicSR side needs none of them):

1. ``np.bool8`` -- removed in numpy 2; ``mmagic/utils/trans_utils.py`` (mmagic 1.2.0) still uses it at import
   time. It is restored as an alias of ``np.bool_`` (what numpy 1.x defined it as).
2. ``mmcv.ops`` -- mmcv-lite ships no compiled ops, and a few mmagic modules (BasicVSR++, EDVR, TDAN, StyleGAN)
   import ``mmcv.ops`` names at module level, which makes ``register_all_modules()`` fail. When the real module
   cannot be imported, a stand-in module is installed whose attributes raise a clear error **when used**, so
   every other module registers and only those models (which srdistill does not use) stay unavailable.
3. MMEngine checkpoints -- mmengine 0.10.7 calls ``torch.load`` without ``weights_only``. Local checkpoint files are
   read weights-only (:func:`srdistill.core.safe_load.load_checkpoint`) with exactly what MMEngine's own
   checkpoints hold besides tensors allowed: the message hub's ``HistoryBuffer`` with its numpy arrays, numpy
   scalars and dtypes, and ``getattr`` restricted to the buffer's statistics methods. Anything else is refused
   before it runs.
4. MMEngine's ``--launcher pytorch`` calls ``torch.cuda.set_device`` before ``init_process_group``, which fails on
   a machine without GPUs; there the process group is initialised directly (gloo), as torch itself allows.
"""
from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import pickle
import sys
import types

import numpy as np

_APPLIED = False


class _MissingOp:
    """Placeholder for a compiled mmcv op: importable, fails with a clear message when used."""

    def __init__(self, name: str):
        self.name = name

    def __call__(self, *args, **kwargs):
        raise RuntimeError(f'mmcv.ops.{self.name} needs the compiled mmcv package; mmcv-lite is installed '
                           '(srdistill_plugin.compat installed this stand-in)')

    def __getattr__(self, attr):
        if attr.startswith('__'):
            raise AttributeError(attr)
        self(attr)

    def __mro_entries__(self, bases):  # used as a base class: subclasses fail on instantiation only
        return (_MissingOpBase, )


class _MissingOpBase:
    def __init__(self, *args, **kwargs):
        raise RuntimeError(f'{type(self).__name__} needs compiled mmcv ops; mmcv-lite is installed')


def _standin_attribute(name: str) -> _MissingOp:
    if name.startswith('__'):  # introspection (__file__, __path__, ...) must see a plain module
        raise AttributeError(name)
    return _MissingOp(name)


class _OpsStandinFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Serves ``mmcv.ops`` and every ``mmcv.ops.<name>`` submodule as a stand-in package."""

    def find_spec(self, fullname, path, target=None):
        if fullname == 'mmcv.ops' or fullname.startswith('mmcv.ops.'):
            return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
        return None

    def create_module(self, spec):
        module = types.ModuleType(spec.name)
        module.__getattr__ = _standin_attribute  # PEP 562 module attribute hook
        module.__path__ = []
        module.__srdistill_standin__ = True
        return module

    def exec_module(self, module):
        pass


_HISTORY_STATISTICS = ('min', 'max', 'current', 'mean')


def _history_statistic(owner, name: str):
    """``getattr`` as MMEngine's pickled ``HistoryBuffer`` statistics need it, and nothing more."""
    from mmengine.logging.history_buffer import HistoryBuffer

    if owner is HistoryBuffer and name in _HISTORY_STATISTICS:
        return getattr(owner, name)
    raise pickle.UnpicklingError(f'Unsupported global: getattr of {name!r} on {owner!r} (only HistoryBuffer statistics)')


def mmengine_checkpoint_globals() -> list:
    """What an MMEngine checkpoint holds besides tensors and containers (fix 3)."""
    from mmengine.logging.history_buffer import HistoryBuffer

    multiarray = np._core.multiarray if hasattr(np, '_core') else np.core.multiarray
    dtypes = [type(np.dtype(t)) for t in (np.bool_, np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16,
                                          np.uint32, np.uint64, np.float16, np.float32, np.float64)]
    return [HistoryBuffer, np.ndarray, np.dtype, multiarray.scalar, multiarray._reconstruct, *dtypes,
            (_history_statistic, 'builtins.getattr')]


def _load_local_checkpoint(filename: str, map_location=None):
    """MMEngine's local-file checkpoint loader, weights-only (see fix 3)."""
    import os.path as osp

    from srdistill.core.safe_load import load_checkpoint
    if not osp.isfile(filename):
        raise FileNotFoundError(f'{filename} can not be found.')
    return load_checkpoint(filename, map_location, allowed=mmengine_checkpoint_globals())


def _init_dist_pytorch_cpu_aware(backend, init_backend='torch', **kwargs) -> None:
    """MMEngine's pytorch-launcher initialisation, without the CUDA device call when no GPU is visible (fix 4)."""
    import torch
    import torch.distributed as dist

    if torch.cuda.is_available() or init_backend != 'torch':
        _MMENGINE_INIT_DIST_PYTORCH[0](backend, init_backend=init_backend, **kwargs)
    else:
        dist.init_process_group(backend=backend or 'gloo', **kwargs)


_MMENGINE_INIT_DIST_PYTORCH: list = []


def apply_mmagic_fixes() -> None:
    """Apply the four fixes (idempotent)."""
    global _APPLIED
    if _APPLIED:
        return
    if not hasattr(np, 'bool8'):
        np.bool8 = np.bool_
    try:
        importlib.import_module('mmcv.ops')
    except ImportError:
        sys.modules.pop('mmcv.ops', None)
        sys.meta_path.insert(0, _OpsStandinFinder())
    from mmengine.runner.checkpoint import CheckpointLoader
    CheckpointLoader.register_scheme(prefixes='', loader=_load_local_checkpoint, force=True)
    import mmengine.dist.utils as mmengine_dist
    _MMENGINE_INIT_DIST_PYTORCH.append(mmengine_dist._init_dist_pytorch)
    mmengine_dist._init_dist_pytorch = _init_dist_pytorch_cpu_aware
    _APPLIED = True
