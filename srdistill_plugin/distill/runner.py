"""The distillation stage runner: select -> categorize -> finetune -> synthesize, each resumable.

Options (``options/distill_x4.yml``): ``name``, ``scale``, ``manual_seed``, ``pool`` (folder of HR images),
``output`` (the distilled LMDB's folder) and one block per stage. A stage whose manifest exists under
``experiments/<name>/stages/`` is skipped; ``finetune`` runs BasicSR's train loop with ``--auto_resume``, so a
killed run continues from its last checkpoint, and so does a finished one whose ``total_iter`` was raised; the other
stages write their outputs atomically.
"""
from __future__ import annotations

import copy
from collections import Counter
import itertools
import json
import logging
import math
import shutil
import time
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np
import torch
import yaml
from basicsr.archs import build_network
from basicsr.utils import get_root_logger, get_time_str
from diffusers import DDIMScheduler, DDPMScheduler
from tqdm import tqdm

from srdistill.core.errors import SRDistillError
from srdistill.core.features import HUB_PREFIX, ClipImageEncoder, cluster, colour_texture_descriptor
from srdistill.core.hub import diffusers_config
from srdistill.core.io_checks import check_can_create
from srdistill.core.imageio import list_images, read_image, to_uint8
from srdistill.core.lmdb_io import atomic_lmdb, estimate_map_size
from srdistill.core.manifest import read_manifest, write_manifest
from srdistill.core.precision import autocast
from srdistill.core.patch_selection import SelectionOptions, informativeness, score_patches, select_patches
from srdistill.core.representative import kernel_herding, proportional_split
from srdistill.core.safe_load import load_checkpoint
from srdistill.core.set_diagnostics import k_center_greedy, pairwise_distances
from srdistill.core.synthesis import preview_grid, sample
from srdistill_plugin.data.selected_patch_dataset import SelectedPatchDataset
from srdistill_plugin.engine.launch import run_training, torchrun_command
from srdistill_plugin.engine.option_schema import check_basicsr_options
from srdistill_plugin.models.diffusion_distill_model import schedule_options

from .options import (POOL_MODES, categorize_by, check_distill_options, class_budget, draw_seed, guidance_scale,
                      herding_features,
                      informative_share, noise_sigma, sampler_name, seed_selection, set_patch_size, strength,
                      synthesis_device, synthesis_mode)
from .pool import PoolGrid

STAGES = ('select', 'categorize', 'finetune', 'synthesize')
# The options each stage's result depends on (cumulative: a stage depends on everything before it).
STAGE_OPTIONS = {'select': ('pool', 'scale', 'select'), 'categorize': ('categorize', 'manual_seed'),
                 'finetune': ('finetune', 'num_gpu'), 'synthesize': ('synthesize', 'output')}
GENERATIVE_MODES = ('sdedit', 'noise')  # the modes that need the fine-tuned diffusion model
SEEDED_MODES = ('sdedit', 'selected_real', 'selected_noise')  # the modes that start from the selected patches
REAL_MODES = ('selected_real', 'coverage', 'random_selected', 'random_proportional', 'herding')  # real patches as is
PREVIEW_PER_CLASS = 8


def spread_over_images(members: np.ndarray, images: list[int]) -> list[int]:
    """Reorder ranked patches round-robin over their source images (the best of every image, then the second
    best, ...), so that a budget is not spent on overlapping patches of one image."""
    by_image: dict[int, list[int]] = {}
    for member, image in zip(members.tolist(), images):
        by_image.setdefault(image, []).append(member)
    return [m for rank in itertools.zip_longest(*by_image.values()) for m in rank if m is not None]


def kept_patch_features(selection: dict, extract) -> np.ndarray:
    """``extract`` of every kept patch of the select manifest, rows in its order (each image decoded once)."""
    size, patches = selection['options']['patch_size'], selection['patches']
    rows: list = [None] * len(patches)
    by_image = sorted(range(len(patches)), key=lambda k: patches[k][0])
    current, img = None, None
    for k in tqdm(by_image, desc='categorize: features', unit='patch'):
        image_index, y, x = patches[k][:3]
        if image_index != current:
            current, img = image_index, read_image(selection['images'][image_index])
        rows[k] = extract(img[y:y + size, x:x + size])
    return np.stack(rows)


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
        self._patch_features = None  # the grouping feature extractor, loaded when coverage selection needs it
        check_distill_options(opt)  # option errors before hours of work, not after
        if not (self.root / opt['pool']).is_dir():
            made_by = opt.get('pool_made_by') or 'srdistill-prepare --skimage --output DIR writes the embedded ' \
                'photographs to DIR/HR_images'
            raise SRDistillError(f'option pool: {opt["pool"]}: image folder does not exist (made by: {made_by})')
        self.device = synthesis_device(opt)
        self.check_model_folders()
        self.check_finetune_options()
        check_can_create(self.root / opt['output'], 'output')
        self.stage_dir.mkdir(parents=True, exist_ok=True)
        self.logger = get_root_logger(logger_name='basicsr', log_level=logging.INFO,
                                      log_file=str(self.exp_dir / f'distill_{opt["name"]}_{get_time_str()}.log'))

    def check_model_folders(self) -> None:
        """The pretrained models named in ``finetune.network_g`` must be local diffusers folders or hub ids (their
        configs are read now, from the hub's cache when offline, so a missing model stops the run at start)."""
        network = (self.opt.get('finetune') or {}).get('network_g') or {}
        configs = {}
        for key in ('vae_dir', 'decode_vae_dir', 'denoiser_dir'):
            if network.get(key):
                local = self.root / network[key]
                configs[key] = diffusers_config(str(local) if local.exists() else network[key],
                                                f'finetune.network_g.{key}')
        denoiser = configs.get('denoiser_dir', {}).get('_class_name')
        if network.get('difffit') and denoiser != 'Transformer2DModel':
            raise SRDistillError(f'option finetune.network_g.difffit: DiffFit fine-tunes a DiT (transformer blocks '
                                 f'with scales); the denoiser is {denoiser or network.get("type", "the pixel UNet")}')

    def manifest(self, stage: str) -> Path:
        return self.stage_dir / f'{stage}.json'

    def fingerprint(self, stage: str) -> dict:
        """The options that ``stage``'s result depends on."""
        keys = [k for s in STAGES[:STAGES.index(stage) + 1] for k in STAGE_OPTIONS[s]]
        options = json.loads(json.dumps({k: self.opt.get(k) for k in keys}))
        if (options.get('finetune') or {}).get('num_processes') == 1:  # the default: runs made before it existed match
            del options['finetune']['num_processes']
        return options

    def extends_finetune(self, done_with: dict | None) -> bool:
        """Whether ``done_with`` (a finished finetune stage's options) differs from ours only by a larger
        ``finetune.train.total_iter``: then the fine-tuning continues from its last checkpoint."""
        if not done_with:
            return False
        ours, theirs = self.fingerprint('finetune'), copy.deepcopy(done_with)
        try:
            old_iter, new_iter = (int(o['finetune']['train']['total_iter']) for o in (theirs, ours))
        except (KeyError, TypeError, ValueError):
            return False
        theirs['finetune']['train']['total_iter'] = ours['finetune']['train']['total_iter']
        return new_iter > old_iter and theirs == ours

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
                if stage == 'finetune' and self.extends_finetune(done_with):
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
                                                  'seconds': times[stage]})
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
    def feature_extractor(self):
        cat = self.opt.get('categorize', {})
        clip = cat.get('clip') or {}
        mode = cat.get('features', 'auto')
        if mode not in ('auto', 'clip', 'colour_texture'):
            raise SRDistillError(f"option categorize.features: expected auto, clip or colour_texture, got {mode!r}")
        pretrained = clip.get('pretrained')
        model = clip.get('model', 'ViT-B-32')
        if mode == 'clip' or (mode == 'auto' and (pretrained or model.startswith(HUB_PREFIX))):
            if pretrained and (self.root / str(pretrained)).is_file():
                pretrained = self.root / pretrained
            config = clip.get('model_config')
            encoder = ClipImageEncoder(model, pretrained, model_config=str(self.root / config) if config else None)
            return 'clip', encoder.description, encoder
        return ('colour_texture', 'colour-texture descriptor (HSV histogram + gradient statistics; no CLIP '
                'weights given, so NOT CLIP features)', colour_texture_descriptor)

    def categorize(self) -> None:
        selection = read_manifest(self.manifest('select'))
        mode, description, extract = self.feature_extractor()
        self.logger.info(f'[categorize] features: {description}')
        num_classes = self.opt.get('categorize', {}).get('num_classes', 7)
        if categorize_by(self.opt) == 'patch':  # the official code: every kept patch is clustered on its own
            features = kept_patch_features(selection, extract)
            patch_classes = cluster(features, num_classes, self.seed).tolist()
            image_classes, grouped = [-1] * len(selection['images']), f'{len(patch_classes)} patches'
        else:
            used = sorted({p[0] for p in selection['patches']})
            features = np.stack([extract(read_image(selection['images'][i]))
                                 for i in tqdm(used, desc='categorize: features', unit='img')])
            labels = cluster(features, num_classes, self.seed)
            image_classes = [-1] * len(selection['images'])
            for i, c in zip(used, labels):
                image_classes[i] = int(c)
            patch_classes, grouped = [image_classes[p[0]] for p in selection['patches']], f'{len(used)} images'
        found = max(patch_classes) + 1
        counts = np.bincount(patch_classes, minlength=found)
        self.logger.info(f'[categorize] {grouped} -> {found} pseudo-classes; patches per class: {counts.tolist()}')
        np.save(self.stage_dir / 'categorize_features.npy', features)
        record = {'feature_mode': mode, 'feature_description': description, 'num_classes': int(found),
                  'image_classes': image_classes, 'patches_per_class': counts.tolist()}
        if categorize_by(self.opt) == 'patch':
            record.update(by='patch', patch_classes=patch_classes)
        write_manifest(self.manifest('categorize'), record)

    # --- stage 3 -------------------------------------------------------------------------------------------
    def finetune_processes(self) -> int:
        """``finetune.num_processes`` (1): more starts the BasicSR run through torchrun (one process per GPU, or
        CPU processes with gloo)."""
        value = self.opt.get('finetune', {}).get('num_processes', 1)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise SRDistillError(f'option finetune.num_processes: expected a positive integer, got {value!r}')
        return value

    def finetune_options(self) -> dict:
        """The BasicSR options of the fine-tuning, for the selected patches and the pseudo-classes found."""
        categories = read_manifest(self.manifest('categorize'))
        patch = read_manifest(self.manifest('select'))['options']['patch_size']
        return self.finetune_options_for(categories['num_classes'], patch)

    def check_finetune_options(self) -> None:
        """The fine-tuning's BasicSR options checked at start (the class count and patch size are placeholders)."""
        if (self.opt.get('synthesize') or {}).get('mode', 'sdedit') in GENERATIVE_MODES:
            options = self.finetune_options_for(1, set_patch_size(self.opt))
            if not isinstance(options['train'], dict):
                raise SRDistillError(f'option finetune.train: expected the BasicSR train options of the fine-tuning '
                                     f'(optim_g, scheduler, total_iter, ...), got {options["train"]!r}')
            try:
                check_basicsr_options(options)
            except SRDistillError as err:
                raise SRDistillError(f'finetune (the BasicSR options of the fine-tuning): {err}') from err

    def finetune_options_for(self, num_classes: int, patch: int) -> dict:
        ft = copy.deepcopy(self.opt.get('finetune', {}))
        ft.pop('num_processes', None)
        opt = {'name': f'{self.opt["name"]}_finetune', 'model_type': 'DiffusionDistillModel',
               'num_gpu': self.opt.get('num_gpu', 0), 'manual_seed': self.seed,
               'diffusion': ft.pop('diffusion', {}),
               'datasets': {'train': {'name': 'selected_patches', 'type': 'SelectedPatchDataset',
                                      'stage_dir': str(self.stage_dir.resolve()), 'num_worker_per_gpu': 0,
                                      'prefetch_mode': None, 'dataset_enlarge_ratio': 1,
                                      **ft.pop('dataset', {'batch_size_per_gpu': 16})}},
               'network_g': {'type': 'ClassConditionalUNet', 'sample_size': patch,
                             'num_classes': num_classes, **ft.pop('network_g', {})},
               'path': {'experiments_root': str(self.exp_dir.resolve()), 'pretrain_network_g': None,
                        'resume_state': None, **ft.pop('path', {})},
               'logger': {'print_freq': 50, 'save_checkpoint_freq': 200, 'use_tb_logger': True,
                          'wandb': {'project': None}, **ft.pop('logger', {})}}
        opt['train'] = ft.pop('train', None)
        if ft:
            raise SRDistillError(f'option finetune: unknown keys {sorted(ft)}')
        return opt

    def checkpoint(self) -> Path:
        return self.exp_dir / f'{self.opt["name"]}_finetune' / 'models' / 'net_g_latest.pth'

    def finetune(self) -> None:
        if self.opt.get('synthesize', {}).get('mode', 'sdedit') not in GENERATIVE_MODES:
            write_manifest(self.manifest('finetune'), {'skipped': 'real-patch baseline: no generator needed'})
            return
        opt_file = self.exp_dir / 'finetune.yml'
        opt_file.write_text(yaml.safe_dump(self.finetune_options()))
        train = ['-opt', str(opt_file.resolve()), '--auto_resume']
        processes = self.finetune_processes()
        command = torchrun_command(train, processes) if processes > 1 else ['srdistill-train', *train]
        self.logger.info(f'[finetune] BasicSR training: {" ".join(command)}')
        run_training(train, self.root, processes)
        write_manifest(self.manifest('finetune'), {'checkpoint': str(self.checkpoint()), 'options': str(opt_file)})

    # --- stage 4 -------------------------------------------------------------------------------------------
    def budget(self, selection: dict, num_classes: int, size: int) -> int:
        """Patches per pseudo-class of side ``size``: ``synthesize.budget_percent`` of the pool's pixels, else
        ``synthesize.per_class``."""
        syn = self.opt.get('synthesize', {})
        patch_px = size ** 2
        if syn.get('budget_percent') is not None:
            total = math.ceil(float(syn['budget_percent']) / 100 * selection['pool_pixels'] / patch_px)
            per_class = math.ceil(total / num_classes)
        else:
            per_class = int(syn.get('per_class', 16))
        if per_class * num_classes * patch_px > selection['pool_pixels']:
            raise SRDistillError(f'option synthesize: a budget of {per_class * num_classes} patches is larger than '
                                 f'the pool ({selection["pool_pixels"]} px)')
        return per_class

    def class_budgets(self, per_class: int, class_sizes: list[int], policy: str = 'equal',
                      pool_sizes: list[int] | None = None) -> list[int]:
        """Patches per pseudo-class: ``equal`` gives each ``per_class``, ``proportional`` splits the same total in
        proportion to the classes' shares of the pool's patches (``pool_sizes``). A class with no patches to draw
        from (``class_sizes``) is skipped (warned) and its budget goes to the others."""
        empty = [c for c, n in enumerate(class_sizes) if n == 0]
        if len(empty) == len(class_sizes):
            raise SRDistillError(f'{self.manifest("categorize")}: every pseudo-class is empty (no selected patches)')
        for c in empty:
            self.logger.warning(f'[synthesize] pseudo-class {c} has no patches to draw from: skipped, its budget is '
                                'shared among the other classes')
        if policy == 'proportional':
            return proportional_split(per_class * len(class_sizes),
                                      [0 if n == 0 else p for n, p in zip(class_sizes, pool_sizes)])
        budgets = [0 if n == 0 else per_class for n in class_sizes]
        spare = per_class * len(empty)
        full = [c for c, n in enumerate(class_sizes) if n]
        for i, c in enumerate(full):
            budgets[c] += spare // len(full) + (i < spare % len(full))
        return budgets

    def pool_image_classes(self) -> list[int]:
        """The pseudo-class of every pool image: the categorize stage's, and for the images it did not see (no
        selected patch) the class of the nearest centroid in the same feature space."""
        categories = read_manifest(self.manifest('categorize'))
        classes = np.array(categories['image_classes'])
        unseen = np.flatnonzero(classes < 0)
        if len(unseen):
            features = np.load(self.stage_dir / 'categorize_features.npy')
            labels = classes[classes >= 0]  # the rows of the saved features, in image order
            centroids = np.stack([features[labels == c].mean(0) for c in range(categories['num_classes'])])
            extract = self.feature_extractor()[2]
            images = read_manifest(self.manifest('select'))['images']
            for i in tqdm(unseen, desc='synthesize: classes of unselected images', unit='img'):
                classes[i] = int(np.argmin(pairwise_distances(extract(read_image(images[i]))[None], centroids)))
        return classes.tolist()

    def pool_grid(self, selection: dict, with_features: bool) -> PoolGrid:
        space = herding_features(self.opt) if with_features else None
        extract = self.feature_extractor()[2] if space == 'clip' else None
        return PoolGrid(selection['images'], self.pool_image_classes(), SelectionOptions(**selection['options']),
                        space, extract)

    def class_picks(self, mode: str, syn: dict, selection: dict, num_classes: int, per_class: int,
                    rng: np.random.Generator):
        """``(patch source, {class: source indices})``: which real patches every class starts from."""
        herded = mode == 'herding' or (mode in SEEDED_MODES and seed_selection(syn) == 'herding')
        pool_wide = herded or mode in POOL_MODES
        grid = (self.pool_grid(selection, with_features=herded)
                if pool_wide or class_budget(syn) == 'proportional' else None)
        source = grid if pool_wide else SelectedPatchDataset({'stage_dir': str(self.stage_dir)})
        class_ids = np.asarray(source.class_ids)
        if mode == 'random_selected':  # uniform among the kept patches, whatever their class
            picks = rng.choice(len(class_ids), per_class * num_classes, replace=len(class_ids) < per_class * num_classes)
            return source, {c: picks[class_ids[picks] == c].tolist() for c in range(num_classes)}
        budgets = self.class_budgets(per_class, np.bincount(class_ids, minlength=num_classes).tolist(),
                                     class_budget(syn), grid.class_sizes(num_classes) if grid is not None else None)
        picks = {}
        for c in range(num_classes):
            members = np.flatnonzero(class_ids == c)
            if not budgets[c]:
                continue
            if herded:
                picks[c] = self.herding_picks(grid, members, budgets[c], syn, rng)
            elif mode in SEEDED_MODES:  # the same seeds for all three: the best patches, spread over images
                ranked = spread_over_images(members, [source.patches[m][0] for m in members])
                picks[c] = list(itertools.islice(itertools.cycle(ranked), budgets[c]))
            elif mode == 'coverage':
                picks[c] = self.coverage_picks(source, members, budgets[c], syn)
            else:
                picks[c] = rng.choice(members, budgets[c], replace=len(members) < budgets[c]).tolist()
        return source, picks

    def herding_picks(self, grid: PoolGrid, members: np.ndarray, count: int, syn: dict,
                      rng: np.random.Generator) -> list[int]:
        """Kernel herding over the class's grid patches towards a random reference sample of them, after the class's
        ``informative_share`` most informative patches (spread over images)."""
        ranked = grid.ranked(members)
        best = spread_over_images(ranked, grid.image[ranked].tolist())[:round(informative_share(syn) * count)]
        reference = rng.choice(members, min(len(members), int(syn.get('herding_reference', 4096))), replace=False)
        local = {m: i for i, m in enumerate(members.tolist())}
        chosen = kernel_herding(grid.features[members], count, grid.features[reference],
                                preselected=[local[m] for m in best])
        return members[chosen].tolist()

    def synthesized_batches(self, mode: str, syn: dict, selection: dict, num_classes: int, per_class: int,
                            size: int) -> Iterator[tuple[list[np.ndarray], int, np.ndarray | None]]:
        """``(uint8 BGR patches, class, their seed patches or None)``, one batch at a time, on ``self.device``."""
        rng = np.random.default_rng(draw_seed(syn, self.seed))
        if mode == 'random_real':
            yield from self.random_real_patches(selection, per_class * num_classes, size, rng)
            return
        source, picks_by_class = self.class_picks(mode, syn, selection, num_classes, per_class, rng)
        generator = torch.Generator().manual_seed(self.seed)
        net, scheduler = self.load_generator() if mode in GENERATIVE_MODES else (None, None)
        sigma, batch, amp = noise_sigma(syn) / 255, int(syn.get('batch', 16)), syn.get('amp') or None
        for c, picks in picks_by_class.items():
            if isinstance(source, PoolGrid):
                picks = sorted(picks, key=lambda i: source.image[i])  # image by image: one image decoded at a time
            for start in tqdm(range(0, len(picks), batch), desc=f'synthesize ({mode}) class {c}/{num_classes}',
                              unit='batch'):
                chunk = picks[start:start + batch]
                real = np.stack([source.patch(i)[:, :, ::-1] for i in chunk])  # RGB
                if mode in REAL_MODES:
                    out = real
                elif mode == 'selected_noise':
                    noise = torch.randn(real.shape, generator=generator, dtype=torch.float64).numpy()
                    out = np.clip(real + sigma * noise, 0, 1)
                else:
                    init = torch.from_numpy(real.copy()).permute(0, 3, 1, 2) if mode == 'sdedit' else None
                    with autocast(amp, self.device):
                        out = sample(net, scheduler, torch.full((len(chunk), ), c), size, int(syn.get('steps', 10)),
                                     generator, init, strength(syn), self.device, guidance_scale(self.opt))
                    out = out.float().permute(0, 2, 3, 1).cpu().numpy()
                seeds = None if mode == 'noise' else np.stack([to_uint8(r[:, :, ::-1]) for r in real])
                yield [to_uint8(o[:, :, ::-1]) for o in out], c, seeds

    def synthesize(self) -> None:
        """Stream the synthesized patches into the output LMDB as they are made (bounded memory; atomic)."""
        syn = self.opt.get('synthesize', {})
        mode = synthesis_mode(syn)
        selection, categories = read_manifest(self.manifest('select')), read_manifest(self.manifest('categorize'))
        num_classes, size = categories['num_classes'], set_patch_size(self.opt)
        per_class = self.budget(selection, num_classes, size)
        out = self.root / self.opt['output']
        out.mkdir(parents=True, exist_ok=True)
        keys, classes, preview, shown = [], [], [], Counter()
        residual = np.zeros(3)  # count, sum and sum of squares of (output - seed)
        map_size = estimate_map_size(per_class * num_classes * size * size * 3)
        with atomic_lmdb(out / 'HR.lmdb', map_size, overwrite=True) as writer:
            for images, c, seeds in self.synthesized_batches(mode, syn, selection, num_classes, per_class, size):
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
        stats = {}
        if residual[0]:
            mean = residual[1] / residual[0]
            stats['seed_residual_std'] = float(np.sqrt(max(residual[2] / residual[0] - mean ** 2, 0.)))
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

    def coverage_picks(self, patches: SelectedPatchDataset, members: np.ndarray, count: int, syn: dict) -> list[int]:
        """``coverage``: greedy k-center in the grouping feature space among the class's most informative
        ``synthesize.coverage_candidates`` patches (1500), starting from the most informative one."""
        if self._patch_features is None:
            self._patch_features = self.feature_extractor()[2]
        candidates = members[:int(syn.get('coverage_candidates', 1500))]
        features = np.stack([self._patch_features(patches.patch(i)) for i in candidates])
        return [int(candidates[i]) for i in k_center_greedy(features, count)]

    def random_real_patches(self, selection: dict, count: int, size: int,
                            rng: np.random.Generator) -> Iterator[tuple[list[np.ndarray], int, None]]:
        """The random-subset baseline: uniformly random patches of the whole pool (no scoring, no classes),
        yielded image by image."""
        paths = selection['images']
        picks = rng.integers(len(paths), size=count)
        for i in tqdm(sorted(set(picks.tolist())), desc='synthesize (random_real)', unit='img'):
            img, images = read_image(paths[i], min_size=size), []
            for _ in range(int((picks == i).sum())):
                y, x = rng.integers(img.shape[0] - size + 1), rng.integers(img.shape[1] - size + 1)
                images.append(to_uint8(img[y:y + size, x:x + size]))
            yield images, 0, None

    def load_generator(self):
        ft = read_manifest(self.manifest('finetune'))
        checkpoint = load_checkpoint(ft['checkpoint'])
        ft_opt = yaml.safe_load(Path(ft['options']).read_text())
        net = build_network(ft_opt['network_g'])
        net.load_state_dict(checkpoint.get('params_ema', checkpoint['params']))
        net.to(self.device)
        latent = hasattr(net, 'encode')  # latents are not bounded to [-1, 1]
        sampler = DDPMScheduler if sampler_name(self.opt) == 'ddpm' else DDIMScheduler
        scheduler = sampler(**schedule_options(ft_opt.get('diffusion', {})), clip_sample=not latent)
        return net.eval(), scheduler

