"""Checkpoints that are either complete or absent, and failures that stop the run.

BasicSR's ``save_network`` / ``save_training_state`` call ``torch.save`` straight onto the final name and, when
it fails three times (a full disk, a read-only folder), log "Just ignore it" and train on without checkpoints; a
kill during the write leaves a truncated file under the final name. ``atomic_checkpoints()`` changes both for the
duration of a run: every ``torch.save`` to a path goes to ``<name>.tmp`` and is renamed when complete, and a failed
write is raised once BasicSR's retries are spent. ``load_network`` reads weights-only (``core/safe_load.py``)
and its failures name the file.
"""
from __future__ import annotations

import os
import pickle
import zipfile
from contextlib import contextmanager
from typing import Iterator

import torch
from basicsr.models.base_model import BaseModel

from srdistill.core.atomic_io import atomic_path
from srdistill.core.errors import SRDistillError, first_line
from srdistill.core.safe_load import UnsafeCheckpointError, load_checkpoint


def atomic_save(save, obj, path, *args, **kwargs) -> None:
    """``save(obj, path)`` (``torch.save``) through the partial name and a rename; the partial file is removed
    when the write fails."""
    if not isinstance(path, (str, os.PathLike)):
        return save(obj, path, *args, **kwargs)
    with atomic_path(path) as tmp:
        save(obj, tmp, *args, **kwargs)


def _saving(method):
    def save_atomically(self, *args, **kwargs):
        original, failures = torch.save, []

        def save(obj, path, *a, **k):
            try:
                atomic_save(original, obj, path, *a, **k)
            except Exception as err:  # OSError, or torch's RuntimeError "PytorchStreamWriter failed writing file"
                failures.append((path, err))
                raise

        torch.save = save
        try:
            method(self, *args, **kwargs)
        finally:
            torch.save = original
        if failures:  # BasicSR retried and gave up silently: stop here instead
            path, err = failures[-1]
            reason = os.strerror(err.errno) if isinstance(err, OSError) and err.errno else first_line(err)
            raise SRDistillError(f'{path}: cannot write the checkpoint ({reason}); nothing was written under its '
                                 'name') from err
    return save_atomically


def _loading(method):
    def load_weights_only_naming_the_file(self, net, load_path, *args, **kwargs):
        original = torch.load
        torch.load = lambda path, map_location=None, **_: load_checkpoint(path, map_location)
        try:
            return method(self, net, load_path, *args, **kwargs)
        except UnsafeCheckpointError:
            raise
        except (RuntimeError, EOFError, OSError, pickle.UnpicklingError, zipfile.BadZipFile, KeyError) as err:
            raise SRDistillError(f'{load_path}: cannot load the network weights ({first_line(err)})') from err
        finally:
            torch.load = original
    return load_weights_only_naming_the_file


@contextmanager
def atomic_checkpoints() -> Iterator[None]:
    """Patch ``BaseModel``'s checkpoint saving (atomic, failures raised) and loading (errors name the file)."""
    names = ('save_network', 'save_training_state', 'load_network')
    saved = {name: getattr(BaseModel, name) for name in names}
    BaseModel.save_network = _saving(saved['save_network'])
    BaseModel.save_training_state = _saving(saved['save_training_state'])
    BaseModel.load_network = _loading(saved['load_network'])
    try:
        yield
    finally:
        for name, method in saved.items():
            setattr(BaseModel, name, method)
