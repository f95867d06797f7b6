"""The data side of a distillation experiment: the pool split into training and held-out validation photographs,
the validation pairs, the full-pool LMDB, and the per-arm, per-budget distilled sets (all resumable)."""
from __future__ import annotations

import copy
import json
import os
import shutil
from pathlib import Path

import cv2

from srdistill.core.degradations import bicubic_downscale, mod_crop
from srdistill.core.errors import SRDistillError
from srdistill.core.file_lock import FileLock
from srdistill.core.imageio import list_images, read_image, to_uint8
from srdistill.core.manifest import read_manifest, write_manifest
from srdistill.core.prepare import PrepareOptions, prepare_lmdbs
from srdistill_plugin.distill.runner import STAGES, DistillRun

from .results import FULL_POOL
from .options import ExperimentOptions

SHARED_STAGES = STAGES[:3]  # select, categorize, finetune: once per pool and settings


def split_pool(pool: Path, work: Path, holdout: int, crop_size: int, scale: int) -> tuple[Path, Path]:
    """Link all but the last ``holdout`` photographs of ``pool`` into ``work/pool_train``; write centre crops of
    the held-out ones with their MATLAB-bicubic LR to ``work/validation/{HR,LR_bicubic/X<scale>}``."""
    images = list_images(pool)
    if not 0 < holdout < len(images):
        raise SRDistillError(f'option validation.holdout_images: expected 1..{len(images) - 1} for {pool}, '
                             f'got {holdout}')
    train_dir, val_dir = work / 'pool_train', work / 'validation'
    done = work / 'pool_split.json'
    record = {'pool': str(pool.resolve()), 'holdout': holdout, 'crop_size': crop_size, 'scale': scale}
    if done.is_file() and json.loads(done.read_text()) == record:
        return train_dir, val_dir
    for folder in (train_dir, val_dir):
        shutil.rmtree(folder, ignore_errors=True)
    train_dir.mkdir(parents=True)
    for path in images[:-holdout]:
        os.symlink(path.resolve(), train_dir / path.name)
    (val_dir / 'HR').mkdir(parents=True)
    (val_dir / 'LR_bicubic' / f'X{scale}').mkdir(parents=True)
    for path in images[-holdout:]:
        img = read_image(path, min_size=crop_size)
        y, x = (img.shape[0] - crop_size) // 2, (img.shape[1] - crop_size) // 2
        hr = mod_crop(img[y:y + crop_size, x:x + crop_size], scale)
        cv2.imwrite(str(val_dir / 'HR' / f'{path.stem}.png'), to_uint8(hr))
        cv2.imwrite(str(val_dir / 'LR_bicubic' / f'X{scale}' / f'{path.stem}x{scale}.png'),
                    to_uint8(bicubic_downscale(hr, scale)))
    write_manifest(done, record)
    return train_dir, val_dir


def full_pool_lmdb(train_dir: Path, work: Path, crop_size: int, step: int, scale: int) -> Path:
    """The full training pool as an HR LMDB of sub-images (written once, atomically)."""
    out = work / 'data' / 'full_pool'
    lmdb = out / 'HR.lmdb'
    if not lmdb.is_dir():
        prepare_lmdbs(train_dir, out, PrepareOptions(crop_size=crop_size, step=step, scales=(scale, )))
    return lmdb


def stage_times(exp: ExperimentOptions, work: Path, recorded: dict) -> dict[str, tuple[float, str | None]]:
    """``{stage: (wall seconds, what it ran on)}`` of the data stages: ``recorded`` (as every worker recorded them)
    and those the distillation manifests recorded (None where a run of an older version recorded no device)."""
    times = {k: (v['seconds'], v['device']) if isinstance(v, dict) else (v, None) for k, v in recorded.items()}
    manifests = {f'distill: {stage}': work / 'experiments' / 'distill_base' / 'stages' / f'{stage}.json'
                 for stage in SHARED_STAGES}
    manifests.update({f'distill: synthesize {arm} {b:g}%':
                      work / 'experiments' / f'distill_{arm}_{b:g}pct' / 'stages' / 'synthesize.json'
                      for arm in exp.set_arms() for b in exp.budgets_percent})
    for name, path in manifests.items():
        record = read_manifest(path) if path.is_file() else {}
        if 'seconds' in record:
            times[name] = (record['seconds'], record.get('device'))
    return times


def distill_options(exp: ExperimentOptions, train_dir: Path, arm: str, budget: float | None) -> dict:
    """tools/distill.py options of one arm at one budget (``budget`` None: the shared stages only)."""
    opt = copy.deepcopy(exp.distill)
    tag = 'base' if budget is None else f'{arm}_{budget:g}pct'
    opt.update(name=f'distill_{tag}', scale=exp.scale, manual_seed=exp.manual_seed, num_gpu=0,
               pool=str(train_dir.resolve()), output=f'data/{tag}')
    mode, overrides = exp.arm_mode(arm) if budget is not None else ('sdedit', {})
    opt['synthesize'] = {**opt.get('synthesize', {}), **overrides, 'mode': mode}
    if budget is not None:
        opt['synthesize']['budget_percent'] = budget
    return opt


def data_lock(work: Path) -> FileLock:
    """The lock of an experiment's shared data: the pool split, the full-pool LMDB, the select and categorize stages."""
    return FileLock(work / 'locks' / 'data.lock')


def distilled_set(exp: ExperimentOptions, work: Path, train_dir: Path, arm: str, budget: float) -> Path:
    """Run (or resume) the distillation of ``arm`` at ``budget`` % of the pool's pixels; its stages select,
    categorize and finetune are adopted from the shared base run (each manifest records its wall time).

    Safe for several workers on one work folder, each step under its own lock (``work/locks``): the shared select
    and categorize stages under ``data.lock``, the generator's fine-tuning under ``generator.lock`` (only arms that
    sample from it wait for it), and the set's own stages under a lock of its own."""
    base = DistillRun(distill_options(exp, train_dir, 'distilled', None), root=work)
    shared = SHARED_STAGES if exp.uses_generator(arm) else SHARED_STAGES[:2]
    with data_lock(work):
        base.run(shared[:2])
    if shared[2:]:
        with FileLock(work / 'locks' / 'generator.lock'):
            base.run(shared[2:])
    with FileLock(work / 'locks' / f'set_{arm}_{budget:g}pct.lock'):
        run = DistillRun(distill_options(exp, train_dir, arm, budget), root=work)
        run.adopt_stages(base, shared)
        run.run()
    lmdb = work / 'data' / f'{arm}_{budget:g}pct' / 'HR.lmdb'
    if not lmdb.is_dir():
        raise SRDistillError(f'{lmdb}: the distillation finished without writing its LMDB')
    return lmdb
