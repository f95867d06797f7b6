"""MZSR's two training stages as one resumable chain: bicubic pretraining, then one meta-transfer run per arm from
it, each a BasicSR run of ``srdistill-train`` resumed with ``--auto_resume`` (what the MZSR benchmark and the zoo
script both train; a killed chain continues where it stopped)."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from srdistill_plugin.engine.train import read_training_record


def train_run(options: str | Path, overrides: list[str], cwd: Path, threads: int | None = None) -> float:
    """One BasicSR training (``options`` with ``--force_yml overrides``), resumed if it ran before; its wall seconds."""
    env = dict(os.environ, **({'OMP_NUM_THREADS': str(threads)} if threads else {}))
    cmd = [sys.executable, '-m', 'srdistill_plugin.commands.train', '-opt', str(options), '--auto_resume',
           '--force_yml', *overrides]
    print('$', ' '.join(cmd), flush=True)
    start = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, check=True, env=env)
    return time.perf_counter() - start


@dataclass(frozen=True)
class TrainingRun:
    """One BasicSR run of the chain: its experiment ``name``, options file and ``--force_yml`` overrides."""
    name: str
    options: str
    overrides: tuple[str, ...] = ()


def meta_transfer_chain(cwd: Path, experiments_root: Path, common: list[str], pretrain: TrainingRun | Path,
                        arms: dict[str, TrainingRun], threads: int | None = None
                        ) -> tuple[dict[str, Path], dict[str, float]]:
    """Train ``pretrain`` (or take it as given when it is a weights file, e.g. the converted official network), then
    every meta arm from it, all under ``experiments_root`` with the ``common`` overrides. Returns the last checkpoint
    of each (``'pretrained'`` and the arms) and the wall seconds of each call (``pretrain_s``, ``meta_<arm>_s``)."""
    def train(run: TrainingRun, *extra: str) -> float:
        return train_run(run.options, [*common, f'path:experiments_root={experiments_root}', f'name={run.name}',
                                       *run.overrides, *extra], cwd, threads)

    if isinstance(pretrain, TrainingRun):
        nets = {'pretrained': experiments_root / pretrain.name / 'models' / 'net_g_latest.pth'}
        seconds = {'pretrain_s': train(pretrain)}
    else:
        nets, seconds = {'pretrained': Path(pretrain)}, {}
    for arm, run in arms.items():
        seconds[f'meta_{arm}_s'] = train(run, f'path:pretrain_network_g={nets["pretrained"]}')
        nets[arm] = experiments_root / run.name / 'models' / 'net_g_latest.pth'
    return nets, seconds


def training_seconds(experiment: Path) -> float:
    """The training time of a BasicSR experiment folder: its recorded stretches summed over every resumed chunk."""
    return float(sum(s['seconds'] for s in read_training_record(experiment)['stretches'] if s['seconds'] is not None))


def validation_curve(experiment: Path) -> dict[int, float]:
    """``{iteration: validation PSNR}`` of a BasicSR experiment folder: the first metric of its first validation
    set at every recorded iteration."""
    curve = {}
    for iteration, by_set in read_training_record(experiment)['validation'].items():
        metrics = next(iter(by_set.values()), {})
        if metrics:
            curve[int(iteration)] = next(iter(metrics.values()))
    return dict(sorted(curve.items()))
