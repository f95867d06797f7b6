"""Carry an unfinished BasicSR training across machines: a compact copy of its newest resume point (the training
state, the network it names, the run's network and training records and its text logs) in a folder that can be
committed::

    python scripts/resume_state.py save    --name MZSR_pretrain_x2_long --to benchmarks/results/mzsr_pretrain_long/resume
    python scripts/resume_state.py restore --name MZSR_pretrain_x2_long --to benchmarks/results/mzsr_pretrain_long/resume

``save`` keeps only the newest point in the folder; ``restore`` copies it into ``experiments/<name>/`` unless that
already holds a newer one, so ``srdistill-train -opt ... --auto_resume`` continues from it.
"""
from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from srdistill.cli import run_cli
from srdistill.core.atomic_io import atomic_path, atomic_write_text
from srdistill.core.errors import SRDistillError
from srdistill_plugin.engine.resume import NETWORK_RECORD


def newest_iter(folder: Path) -> int | None:
    iters = [int(p.stem) for p in folder.glob('*.state') if p.stem.isdigit()] if folder.is_dir() else []
    return max(iters, default=None)


def copy_atomic(src: Path, dst: Path) -> None:
    with atomic_path(dst) as tmp:
        shutil.copyfile(src, tmp)


def save(experiment: Path, store: Path) -> str:
    it = newest_iter(experiment / 'training_states')
    if it is None:
        raise SRDistillError(f'{experiment}: no training state to save')
    net = experiment / 'models' / f'net_g_{it}.pth'
    if not net.is_file():
        raise SRDistillError(f'{net}: the network of training state {it} is missing')
    copy_atomic(experiment / 'training_states' / f'{it}.state', store / f'{it}.state')
    copy_atomic(net, store / net.name)
    for record in (NETWORK_RECORD, 'training.json'):  # the network record and the train loop's training record
        if (experiment / record).is_file():
            copy_atomic(experiment / record, store / record)
    root = str(Path.cwd().resolve())
    for log in experiment.glob('train_*.log'):  # kept with paths relative to the repository
        atomic_write_text(store / log.name, log.read_text().replace(f'{root}/', '').replace(root, '.'))
    for old in [*store.glob('*.state'), *store.glob('net_g_*.pth')]:
        if old.stem not in (str(it), f'net_g_{it}'):
            old.unlink()
    return f'saved iteration {it} to {store}'


def restore(experiment: Path, store: Path) -> str:
    it = newest_iter(store)
    if it is None:
        raise SRDistillError(f'{store}: no saved training state')
    have = newest_iter(experiment / 'training_states')
    if have is not None and have >= it:
        return f'{experiment} already holds iteration {have} (saved: {it}); nothing restored'
    copy_atomic(store / f'{it}.state', experiment / 'training_states' / f'{it}.state')
    copy_atomic(store / f'net_g_{it}.pth', experiment / 'models' / f'net_g_{it}.pth')
    for extra in [store / NETWORK_RECORD, store / 'training.json', *store.glob('train_*.log')]:
        if extra.is_file() and not (experiment / extra.name).exists():
            copy_atomic(extra, experiment / extra.name)
    return f'restored iteration {it} into {experiment}'


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('action', choices=['save', 'restore'])
    parser.add_argument('--name', required=True, help="the experiment's name (options' name:)")
    parser.add_argument('--to', required=True, help='the folder that holds the compact copy')
    parser.add_argument('--experiments-root', default='experiments')
    args = parser.parse_args()
    experiment, store = Path(args.experiments_root) / args.name, Path(args.to)
    print(save(experiment, store) if args.action == 'save' else restore(experiment, store))


if __name__ == '__main__':
    run_cli(main)
