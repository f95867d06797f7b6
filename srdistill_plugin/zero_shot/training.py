"""MZSR's two training stages as one resumable chain: bicubic pretraining, then one meta-transfer run per arm from
it, each a BasicSR run of ``srdistill-train`` resumed with ``--auto_resume`` (what the MZSR benchmark and the zoo
script both train; a killed chain continues where it stopped)."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path


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
    """Training time of a BasicSR experiment folder summed over its logs: the "Time consumed" of every run that
    finished, and for a run stopped before its end (killed to resume later) the time from its start to its last log
    line, so a chain resumed in chunks still reports what its training cost."""
    def stamp(line: str) -> datetime | None:
        try:
            return datetime.strptime(line[:23], '%Y-%m-%d %H:%M:%S,%f')
        except ValueError:
            return None

    total = 0.
    for log in Path(experiment).glob('train_*.log'):
        lines = log.read_text().splitlines()
        ended = [line for line in lines if 'End of training. Time consumed:' in line]
        if ended:
            for line in ended:
                h, m, sec = line.rsplit(' ', 1)[-1].split(':')
                total += 3600 * int(h) + 60 * int(m) + float(sec)
            continue
        started = next((stamp(line) for line in lines if 'Start training from' in line), None)
        last = next((t for t in map(stamp, reversed(lines)) if t), None)
        if started and last:
            total += (last - started).total_seconds()
    return total


def validation_curve(experiment: Path) -> dict[int, float]:
    """``{iteration: validation PSNR}`` read from a BasicSR experiment folder's logs (the first metric of each
    "Validation" block, at the iteration of the log line before it), over every resumed chunk."""
    curve, last_iter, in_block = {}, None, False
    for log in sorted(Path(experiment).glob('train_*.log')):
        for line in log.read_text().splitlines():
            if 'iter:' in line and '[epoch:' in line:
                last_iter = int(re.search(r'iter:\s*([\d,]+)', line).group(1).replace(',', ''))  # 1,000
            elif ' INFO: Validation ' in line:
                in_block = True
            elif in_block and line.strip().startswith('#') and last_iter is not None:
                curve[last_iter] = float(line.split(':', 1)[1].split()[0])
                in_block = False
    return curve
