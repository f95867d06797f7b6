"""The distillation stage runner: select -> categorize -> finetune -> synthesize, each resumable.

Options (``options/distill_x4.yml``): ``name``, ``scale``, ``manual_seed``, ``pool`` (folder of HR images),
``output`` (the distilled LMDB's folder) and one block per stage. A stage whose manifest exists under
``experiments/<name>/stages/`` is skipped; ``finetune`` runs BasicSR's train loop with ``--auto_resume``, so a
killed run continues from its last checkpoint, and so does a finished one whose ``total_iter`` was raised; the other
stages write their outputs atomically.
"""
from __future__ import annotations

import json
import logging
import shutil
import time
from collections import Counter
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np
import torch
import yaml
from basicsr.utils import get_root_logger, get_time_str
from tqdm import tqdm

from srdistill.core.atomic_io import atomic_write_text
from srdistill.core.errors import SRDistillError
from srdistill.core.io_checks import check_can_create
from srdistill.core.imageio import list_images, read_image
from srdistill.core.lmdb_io import atomic_lmdb, estimate_map_size
from srdistill.core.manifest import read_manifest, write_manifest
from srdistill.core.patch_selection import SelectionOptions, informativeness, score_patches, select_patches
from srdistill.core.synthesis import preview_grid
from srdistill_plugin.engine.launch import run_training, torchrun_command
from srdistill_plugin.engine.train import read_training_record

from .categorize import Extract, group_patches, grouping_features, pool_image_classes
from .generator import (check_finetune_options, check_model_folders, extends_finetune, finetune_options,
                        finetune_processes, load_generator)
from .options import check_distill_options, synthesis_device
from .registry import strategy_class
from .strategies import Batch, per_class_budget

STAGES = ('select', 'categorize', 'finetune', 'synthesize')
# The options each stage's result depends on (cumulative: a stage depends on everything before it).
STAGE_OPTIONS = {'select': ('pool', 'scale', 'select'), 'categorize': ('categorize', 'manual_seed'),
                 'finetune': ('finetune', 'num_gpu'), 'synthesize': ('synthesize', 'output')}
PREVIEW_PER_CLASS = 8


def write_patches(lmdb: Path, batches: Iterator[Batch], num_bytes: int) -> tuple[list[str], list[int], list, dict]:
    """Stream the synthesized ``batches`` into the HR LMDB ``lmdb`` (keys ``c<class>_<index>``, with
    ``class_info.txt``; bounded memory; atomic): ``(keys, classes, preview (patch, class) pairs, stats)``, where
    stats holds the std of (output - seed patch) when the outputs have seeds."""
    keys, classes, preview, shown = [], [], [], Counter()
    residual = np.zeros(3)  # count, sum and sum of squares of (output - seed)
    with atomic_lmdb(lmdb, estimate_map_size(num_bytes), overwrite=True) as writer:
        for images, c, seeds in batches:
            for img in images:
                keys.append(f'c{c:02d}_{len(keys):05d}')
                classes.append(c)
                writer.put(keys[-1], img)
                if shown[c] < PREVIEW_PER_CLASS:
                    shown[c] += 1
                    preview.append((img, c))
            if seeds is not None:
                diff = np.stack(images).astype(np.float64) - seeds
                residual += (diff.size, diff.sum(), np.square(diff).sum())
        (writer.tmp / 'class_info.txt').write_text(''.join(f'{k} {c}\n' for k, c in zip(keys, classes)))
    if not residual[0]:
        return keys, classes, preview, {}
    mean = residual[1] / residual[0]
    return keys, classes, preview, {'seed_residual_std': float(np.sqrt(max(residual[2] / residual[0] - mean ** 2, 0.)))}


class DistillRun:
    """One distillation run described by its options dict; ``run()`` executes the unfinished stages."""

    def __init__(self, opt: dict, root: str | Path = '.'):
        self.opt, self.root = opt, Path(root)
        for key in ('name', 'pool', 'output', 'scale'):
            if key not in opt:
                raise SRDistillError(f'distill options: missing top-level option {key!r}')
        self.exp_dir = self.root / 'experiments' / opt['name']
        self.stage_dir = self.exp_dir / 'stages'
        self.seed = int(opt.get('manual_seed', 0))
        self._patch_features = None  # the grouping feature extractor, loaded when a synthesis mode needs it
        self.categorizing, self.synthesis = check_distill_options(opt)  # option errors before hours of work
        if not (self.root / opt['pool']).is_dir():
            made_by = opt.get('pool_made_by') or 'srdistill-prepare --skimage --output DIR writes the embedded ' \
                'photographs to DIR/HR_images'
            raise SRDistillError(f'option pool: {opt["pool"]}: image folder does not exist (made by: {made_by})')
        self.device = synthesis_device(opt)
        check_model_folders(opt, self.root)
        if self.needs_generator():  # the class count and patch size are placeholders here
            finetune_processes(opt)
            check_finetune_options(self.finetune_options_for(1, self.synthesis.patch_size))
        check_can_create(self.root / opt['output'], 'output')
        self.stage_dir.mkdir(parents=True, exist_ok=True)
        self.logger = get_root_logger(logger_name='basicsr', log_level=logging.INFO,
                                      log_file=str(self.exp_dir / f'distill_{opt["name"]}_{get_time_str()}.log'))

    def needs_generator(self) -> bool:
        """Whether the synthesis mode samples from the fine-tuned diffusion model (else the finetune stage is
        skipped)."""
        return strategy_class(self.synthesis.mode).needs_generator

    def manifest(self, stage: str) -> Path:
        return self.stage_dir / f'{stage}.json'

    def fingerprint(self, stage: str) -> dict:
        """The options that ``stage``'s result depends on."""
        keys = [k for s in STAGES[:STAGES.index(stage) + 1] for k in STAGE_OPTIONS[s]]
        options = json.loads(json.dumps({k: self.opt.get(k) for k in keys}))
        if (options.get('finetune') or {}).get('num_processes') == 1:  # the default: runs made before it existed match
            del options['finetune']['num_processes']
        return options

    def adopt_stages(self, other: 'DistillRun', stages: tuple[str, ...]) -> None:
        """Take ``stages`` as finished by ``other`` (a run on the same pool and settings), so that they run once
        for many syntheses. A stage is adopted only when its options match ours exactly."""
        for stage in stages:
            if self.manifest(stage).exists() or not other.manifest(stage).exists():
                continue
            if read_manifest(other.manifest(stage)).get('stage_options') != self.fingerprint(stage):
                raise SRDistillError(f'{other.manifest(stage)}: stage {stage} was run with other options than '
                                     f'{self.opt["name"]} needs')
            for extra in other.stage_dir.glob(f'{stage}_*.npy'):
                shutil.copyfile(extra, self.stage_dir / extra.name)
            shutil.copyfile(other.manifest(stage), self.manifest(stage))

    def run(self, stages: tuple[str, ...] = STAGES) -> dict:
        times = {}
        for stage in stages:
            if self.manifest(stage).exists():
                done_with = read_manifest(self.manifest(stage)).get('stage_options')
                if stage == 'finetune' and extends_finetune(self.fingerprint('finetune'), done_with):
                    self.logger.info(f'[finetune] total_iter raised to {self.opt["finetune"]["train"]["total_iter"]}: '
                                     'continuing from the last checkpoint; later stages are redone')
                    for later in STAGES[STAGES.index(stage):]:
                        self.manifest(later).unlink(missing_ok=True)
                elif done_with != self.fingerprint(stage):
                    raise SRDistillError(f'{self.manifest(stage)}: stage {stage} was run with other options; use a new '
                                         f'name or delete this manifest (and those after it) to redo it')
                else:
                    self.logger.info(f'[{stage}] done before with the same options; skipped ({self.manifest(stage)})')
                    continue
            start = time.perf_counter()
            self.logger.info(f'[{stage}] starting')
            getattr(self, stage)()
            times[stage] = time.perf_counter() - start
            manifest = read_manifest(self.manifest(stage))
            write_manifest(self.manifest(stage), {**manifest, 'stage_options': self.fingerprint(stage),
                                                  'seconds': times[stage], 'device': self.stage_device(stage)})
            self.logger.info(f'[{stage}] finished in {times[stage]:.1f} s')
        return times

    # --- stage 1 -------------------------------------------------------------------------------------------
    def select(self) -> None:
        sel = dict(self.opt.get('select', {}))
        opts = SelectionOptions(scale=self.opt['scale'], **sel)
        opts.validate()
        images = list_images(self.root / self.opt['pool'])
        scored, pool_pixels = [], 0
        for path in tqdm(images, desc='select: scoring patches', unit='img'):
            img = read_image(path, min_size=opts.patch_size)
            pool_pixels += img.shape[0] * img.shape[1]
            scored.append(score_patches(img, opts))
        kept = select_patches(scored, opts)
        scores = np.concatenate([s[0] for s in scored])
        if not kept:
            best = scores[np.argmax(informativeness(scores, opts.score))] if len(scores) else None
            seen = f'; the most informative scored {best:.2f}' if best is not None else ''
            raise SRDistillError(f'option select.threshold: no patch of {self.opt["pool"]} passed the selection '
                                 f'({len(scores)} patches scored by {opts.score}{seen}, threshold {opts.threshold})')
        self.logger.info(f'[select] {len(kept)} of {len(scores)} patches kept; score ({opts.score}) median all '
                         f'{np.median(scores):.2f}, kept {np.median([k[3] for k in kept]):.2f}')
        write_manifest(self.manifest('select'), {
            'options': vars(opts), 'images': [str(p) for p in images], 'pool_pixels': pool_pixels,
            'num_candidates': int(len(scores)), 'score_median_all': float(np.median(scores)),
            'patches': [list(k) for k in kept]})

    # --- stage 2 -------------------------------------------------------------------------------------------
    def feature_extractor(self) -> tuple[str, str, Extract]:
        return grouping_features(self.categorizing, self.root)

    def categorize(self) -> None:
        selection = read_manifest(self.manifest('select'))
        mode, description, extract = self.feature_extractor()
        self.logger.info(f'[categorize] features: {description}')
        features, patch_classes, image_classes, grouped = group_patches(
            selection, extract, self.categorizing.num_classes, self.seed, self.categorizing.by)
        found = max(patch_classes) + 1
        counts = np.bincount(patch_classes, minlength=found)
        self.logger.info(f'[categorize] {grouped} -> {found} pseudo-classes; patches per class: {counts.tolist()}')
        np.save(self.stage_dir / 'categorize_features.npy', features)
        record = {'feature_mode': mode, 'feature_description': description, 'num_classes': int(found),
                  'image_classes': image_classes, 'patches_per_class': counts.tolist()}
        if self.categorizing.by == 'patch':
            record.update(by='patch', patch_classes=patch_classes)
        write_manifest(self.manifest('categorize'), record)

    # --- stage 3 -------------------------------------------------------------------------------------------
    def finetune_options_for(self, num_classes: int, patch: int) -> dict:
        """The BasicSR options of the fine-tuning for ``num_classes`` pseudo-classes of ``patch``-pixel patches."""
        return finetune_options(self.opt, self.stage_dir.resolve(), self.exp_dir.resolve(), num_classes, patch)

    def stage_device(self, stage: str) -> str:
        """What ``stage`` ran on: this process's device and threads, or the fine-tuning's own as its training record
        says (its ranks and threads)."""
        if stage == 'finetune' and self.needs_generator():
            stretches = read_training_record(self.checkpoint().parents[1])['stretches']
            return ' + '.join(sorted({s['device'] for s in stretches}))
        threads = torch.get_num_threads()
        return f'{self.device.type}: {threads} thread{"s" if threads != 1 else ""}'

    def checkpoint(self) -> Path:
        return self.exp_dir / f'{self.opt["name"]}_finetune' / 'models' / 'net_g_latest.pth'

    def finetune(self) -> None:
        if not self.needs_generator():
            write_manifest(self.manifest('finetune'), {'skipped': 'real-patch baseline: no generator needed'})
            return
        opt_file = self.exp_dir / 'finetune.yml'
        categories = read_manifest(self.manifest('categorize'))
        patch = read_manifest(self.manifest('select'))['options']['patch_size']
        atomic_write_text(opt_file, yaml.safe_dump(self.finetune_options_for(categories['num_classes'], patch)))
        train = ['-opt', str(opt_file.resolve()), '--auto_resume']
        processes = finetune_processes(self.opt)
        command = torchrun_command(train, processes) if processes > 1 else ['srdistill-train', *train]
        self.logger.info(f'[finetune] BasicSR training: {" ".join(command)}')
        run_training(train, self.root, processes)
        write_manifest(self.manifest('finetune'), {'checkpoint': str(self.checkpoint()), 'options': str(opt_file)})

    # --- stage 4 -------------------------------------------------------------------------------------------
    def pool_image_classes(self) -> list[int]:
        """The pseudo-class of every pool image (``categorize.pool_image_classes``)."""
        features = np.load(self.stage_dir / 'categorize_features.npy')
        return pool_image_classes(read_manifest(self.manifest('categorize')), features,
                                  read_manifest(self.manifest('select'))['images'],
                                  lambda img: self.patch_features()(img))  # the extractor loaded if an image needs it

    def synthesize(self) -> None:
        """Stream the synthesized patches into the output LMDB as they are made (bounded memory; atomic)."""
        options = self.synthesis
        mode = options.mode
        selection, categories = read_manifest(self.manifest('select')), read_manifest(self.manifest('categorize'))
        num_classes, size = categories['num_classes'], options.patch_size
        per_class = per_class_budget(options, selection['pool_pixels'], num_classes, size)
        out = self.root / self.opt['output']
        out.mkdir(parents=True, exist_ok=True)
        batches = strategy_class(mode)(self, options).batches(selection, num_classes, per_class, size)
        keys, classes, preview, stats = write_patches(out / 'HR.lmdb', batches,
                                                      per_class * num_classes * size * size * 3)
        if stats:
            self.logger.info(f'[synthesize] std of (output - seed patch): {stats["seed_residual_std"]:.2f} '
                             '(8-bit levels)')
        cv2.imwrite(str(out / 'preview.png'), preview_grid(*map(list, zip(*preview)), per_row=PREVIEW_PER_CLASS))
        payload = {'mode': mode, 'num_images': len(keys), 'patch_size': size, 'lmdb': str(out / 'HR.lmdb'),
                   'feature_mode': categories['feature_mode'], 'feature_description': categories['feature_description'],
                   'classes': dict(zip(keys, classes)), 'options': self.opt.get('synthesize', {}),
                   'device': str(self.device), **stats}
        write_manifest(out / 'manifest.json', payload)
        write_manifest(self.manifest('synthesize'), {k: v for k, v in payload.items() if k != 'classes'})
        self.logger.info(f'[synthesize] {len(keys)} HR patches ({mode}, {self.device}) -> {out / "HR.lmdb"}; '
                         f'preview {out / "preview.png"}')

    def patch_features(self):
        """The categorize stage's feature extractor, loaded once (the coverage mode compares patches in it)."""
        if self._patch_features is None:
            self._patch_features = self.feature_extractor()[2]
        return self._patch_features

    def load_generator(self):
        """``(network, scheduler)``: the fine-tuned generator, on the synthesis device."""
        return load_generator(read_manifest(self.manifest('finetune')), self.synthesis.sampler, self.device)
