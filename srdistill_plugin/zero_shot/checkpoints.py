"""The checkpoints of BasicSR meta-transfer runs: content hashes, the saved iterations, running averages of the
weights, and branches that continue a run from one of its training states."""
from __future__ import annotations

import shutil
from pathlib import Path

import torch

from srdistill.core.atomic_io import atomic_path, partial_path
from srdistill.core.errors import SRDistillError
from srdistill.core.hashing import file_hash  # noqa: F401  (the checkpoints' key, re-exported)
from srdistill.core.safe_load import load_checkpoint


def saved_checkpoints(models: Path) -> dict[int, Path]:
    """``{iteration: path}`` of the ``net_g_<iteration>.pth`` files in a BasicSR ``models`` folder, in order."""
    found = {int(p.stem[len('net_g_'):]): p for p in Path(models).glob('net_g_*.pth')
             if p.stem[len('net_g_'):].isdigit()}
    return dict(sorted(found.items()))


def average_checkpoint(models: Path, end: int, window: int, out: Path) -> Path:
    """``out``: the mean ``params`` of the checkpoints in ``models`` saved at iterations in (end - window, end]
    (with ``members``: those iterations); written once, through a temporary name."""
    members = [path for it, path in saved_checkpoints(models).items() if end - window < it <= end]
    if not members:
        raise SRDistillError(f'{models}: no checkpoint saved in ({end - window}, {end}] to average')
    if not out.is_file():
        params = [load_checkpoint(path)['params'] for path in members]
        mean_params = {k: torch.stack([p[k].float() for p in params]).mean(0) for k in params[0]}
        out.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(out) as partial:
            torch.save({'params': mean_params, 'members': [int(p.stem.rsplit('_', 1)[1]) for p in members]}, partial)
    return out


def seed_branch(base: Path, folder: Path, iteration: int) -> None:
    """Start the BasicSR experiment ``folder`` from ``base``'s training state and weights at ``iteration`` (copied
    once, through a temporary folder), so a training of ``folder`` with ``--auto_resume`` continues from there."""
    state = base / 'training_states' / f'{iteration}.state'
    if folder.is_dir():
        return
    if not state.is_file():
        raise SRDistillError(f'{state}: the run has no training state at iteration {iteration} to branch from')
    tmp = partial_path(folder)
    shutil.rmtree(tmp, ignore_errors=True)
    for sub, name in (('training_states', state.name), ('models', f'net_g_{iteration}.pth')):
        (tmp / sub).mkdir(parents=True)
        shutil.copy2(base / sub / name, tmp / sub / name)
    tmp.rename(folder)
