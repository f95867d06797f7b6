"""Checkpoints that are either complete or absent, failures that stop the run, and weights read as data: steps of
the plugin's train and test pipelines around BasicSR's own ``save`` and ``build_model``.

BasicSR's ``save_network`` / ``save_training_state`` call ``torch.save`` straight onto the final name and, after
three failed tries (a full disk, a read-only folder), log "Just ignore it" and train on without checkpoints; a kill
during the write leaves a truncated file under the final name. :func:`save_checkpoint` points the model's
``path.models`` and ``path.training_states`` at one staging folder (``checkpoint.incomplete``) for the call, reads
BasicSR's retry warnings, and renames the files into place only when every one was written.
"""
from __future__ import annotations

import logging
import os
import pickle
import re
import shutil
import zipfile
from pathlib import Path

from basicsr.models import build_model
from basicsr.utils import get_root_logger

from srdistill.core.atomic_io import partial_path
from srdistill.core.errors import SRDistillError, first_line
from srdistill.core.safe_load import UnsafeCheckpointError, load_checkpoint

LOAD_ERRORS = (RuntimeError, EOFError, OSError, pickle.UnpicklingError, zipfile.BadZipFile, KeyError)
_LAST_TRY_FAILED = re.compile(r'^Save (?:model|training state) error: (?P<error>.*), remaining retry times: 0$')
_OS_ERROR = re.compile(r"^\[Errno \d+\] (?P<reason>[^:]+): '(?P<path>[^']+)'")


class _FailedWrites(logging.Handler):
    """Collects the errors of BasicSR's last (third) failed try to write a checkpoint file."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.errors: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        match = _LAST_TRY_FAILED.match(record.getMessage())
        if match:
            self.errors.append(match['error'])


def staging_folder(opt: dict) -> Path:
    """Where a checkpoint is written before its files are renamed into ``models/`` and ``training_states/``."""
    return partial_path(Path(opt['path']['experiments_root']) / 'checkpoint')


def save_checkpoint(model, epoch: int, current_iter: int) -> None:
    """``model.save(epoch, current_iter)`` (``current_iter`` -1: the ``latest`` weights) through the staging folder;
    a file BasicSR could not write stops the run with one line, and nothing of that checkpoint is kept. Rank 0 saves
    (BasicSR's saving is rank-0 only)."""
    paths = model.opt['path']
    if model.opt.get('rank', 0) != 0:
        return
    staging = staging_folder(model.opt)
    shutil.rmtree(staging, ignore_errors=True)  # a kill during an earlier write left it
    staging.mkdir(parents=True)
    final = {'models': paths['models'], 'training_states': paths['training_states']}
    failed, logger = _FailedWrites(), get_root_logger()
    logger.addHandler(failed)
    paths.update(models=str(staging), training_states=str(staging))
    try:
        model.save(epoch, current_iter)
    finally:
        paths.update(final)
        logger.removeHandler(failed)
    if failed.errors:
        shutil.rmtree(staging, ignore_errors=True)
        raise SRDistillError(write_failure(failed.errors[0], final['models'], current_iter))
    for file in sorted(staging.iterdir()):
        folder = Path(final['training_states'] if file.suffix == '.state' else final['models'])
        folder.mkdir(parents=True, exist_ok=True)
        os.replace(file, folder / file.name)
    staging.rmdir()


def write_failure(error: str, models: str, current_iter: int) -> str:
    """One line for a checkpoint file BasicSR gave up writing: its final name and the reason."""
    match = _OS_ERROR.match(error)
    name = Path(match['path']).name if match else f'checkpoint {current_iter}'
    reason = match['reason'] if match else error
    return f'{Path(models) / name}: cannot write the checkpoint ({reason}); nothing was written under its name'


def check_network_files(opt: dict) -> None:
    """Every ``path.pretrain_network_*`` file read as weights only before the model is built: a pickle that would run
    code, or a file that is not a checkpoint, is one line naming it."""
    for key, path in sorted((opt.get('path') or {}).items()):
        if not key.startswith('pretrain_network_') or not path:
            continue
        try:
            load_checkpoint(path, map_location='cpu')
        except UnsafeCheckpointError:
            raise
        except LOAD_ERRORS as err:
            raise SRDistillError(f'{path}: cannot load the network weights ({first_line(err)})') from err


def build_model_from_files(opt: dict):
    """BasicSR's ``build_model(opt)`` after :func:`check_network_files`; weights that do not fit the network
    (``strict_load``) are one line naming the file."""
    check_network_files(opt)
    try:
        return build_model(opt)
    except RuntimeError as err:
        files = [str(p) for k, p in sorted(opt['path'].items()) if k.startswith('pretrain_network_') and p]
        if 'state_dict' not in str(err) or not files:
            raise
        raise SRDistillError(f'{", ".join(files)}: cannot load the network weights ({first_line(err)})') from err
