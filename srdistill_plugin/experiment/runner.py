"""The distillation experiment: distill -> train every arm x budget x student x seed -> test -> report.

``srdistill-experiment -opt options/report/<name>.yml`` (see ``options/report/sunhays80_x4.yml`` for every option).
Work goes to ``experiments/<name>/``, the report to ``results/<name>/report.{md,html}``. Everything resumes: the
distillation through its stage manifests, each student from its newest training state (one training in this
process per run, evaluated between stretches) and its result file under ``experiments/<name>/runs/``; a result made
with other settings stops the run (one line) instead of being mixed in. Every student keeps its best checkpoint on
held-out pool photographs (never the test sets), which is what the test figures are read on. Several workers may
advance one experiment at once (``--workers N``, or the same command in several shells): each run is trained by
whichever worker locks it first, the data stages and the report are made under a lock (``experiments/<name>/locks/``).
"""
from __future__ import annotations

import copy
import fnmatch
import json
import logging
import math
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import torch
import yaml
from basicsr.utils import get_root_logger
from basicsr.utils.registry import ARCH_REGISTRY
from tqdm import tqdm

from srdistill.core.atomic_io import atomic_write_text
from srdistill.core.errors import SRDistillError
from srdistill.core.file_lock import FileLock
from srdistill.core.json_store import JsonStore
from srdistill.core.lmdb_io import read_meta_keys
from srdistill.core.manifest import write_manifest
from srdistill.core.option_schema import (ANY, COUNT, INTEGER, LIST, NON_NEGATIVE, OPEN, TEXT, Section, Value,
                                          check_options)
from srdistill.core.options_file import read_options
from srdistill_plugin.data.hr_only_dataset import check_augmentations
from srdistill_plugin.distill.options import check_distill_options, set_patch_size
from srdistill_plugin.engine.train import Trainer, parse_train_options
from srdistill_plugin.engine.option_schema import signature_section

from . import data
from .evaluate import evaluate, load_student
from .results import FULL_POOL, convergence_gain
from .settings import as_now, portable

SR_TRAIN_DEFAULTS = {'total_iter': 12000, 'batch_size': 16, 'gt_size': 64, 'lr': 5e-4, 'ema_decay': 0.999,
                     'milestones_fraction': [0.6, 0.85], 'eval_every': 1000, 'patience_evals': 0,
                     'max_iter': None, 'augment': {}}
# what a custom arm's ``sr_train`` recipe may change (never the iteration schedule, which every arm shares)
RECIPE_KEYS = ('augment', 'ema_decay', 'gt_size', 'batch_size', 'lr')
CONVERGENCE_DEFAULTS = {'min_gain_db': 0.05, 'window_fraction': 0.2}
REPORT_REFRESH_SECONDS = 60  # while runs finish, the report is rewritten at most this often (and at the end)
REQUIRED = ('name', 'scale', 'pool', 'test_sets', 'arms', 'budgets_percent', 'seeds', 'students', 'distill')
# the keys of an experiment file and the kinds of the ones not checked further below
EXPERIMENT_SCHEMA = Section({
    **{key: ANY for key in REQUIRED}, 'name': TEXT, 'pool': TEXT, 'test_sets': LIST, 'arms': LIST,
    'budgets_percent': LIST, 'seeds': LIST, 'students': Section(each=Section({'network_g': OPEN})),
    'custom_arms': ANY, 'default_arm': TEXT, 'sweep_student': TEXT, 'student_budgets_percent': LIST,
    'sr_train': ANY, 'manual_seed': INTEGER, 'threads': COUNT,
    'convergence': Section({'min_gain_db': NON_NEGATIVE, 'window_fraction': Value((float, ), above=0, high=1)}),
    'validation': Section({'holdout_images': COUNT, 'crop_size': COUNT}),
    'full_pool': Section({'crop_size': COUNT, 'step': COUNT})})


def seconds_per_iter(spans: Iterable[dict]) -> float:
    """Mean wall seconds per iteration over the timed chunks (``seconds`` None: trained by a worker that died
    before recording its time; its replay took no training)."""
    timed = [s for s in spans if s['seconds'] is not None]
    return sum(s['seconds'] for s in timed) / max(sum(s['iterations'] for s in timed), 1)


def best_on_validation(curve: dict[int, float]) -> int:
    """The iteration of the highest validation PSNR; the earliest of equal ones."""
    return max(curve, key=lambda it: (curve[it], -it))


@dataclass(frozen=True)
class Run:
    """One SR training: ``student`` on the data of ``arm`` at ``budget`` % (None for the full pool)."""
    student: str
    arm: str
    budget: float | None
    seed: int

    @property
    def name(self) -> str:
        data_tag = self.arm if self.budget is None else f'{self.arm}_{self.budget:g}pct'
        return f'{self.student}_{data_tag}_s{self.seed}'


def _fail(option: str, message: str) -> None:
    raise SRDistillError(f'option {option}: {message}')


def _check_sr_train(sr: dict, prefix: str, scale: int) -> None:
    """The integer, augmentation and patch-size options among ``sr`` (an experiment's or an arm's recipe)."""
    for key in ('total_iter', 'batch_size', 'gt_size', 'eval_every', 'patience_evals'):
        value = sr.get(key, 1)
        if isinstance(value, bool) or not isinstance(value, int) or value < (0 if key == 'patience_evals' else 1):
            _fail(f'{prefix}.{key}', f'expected a {"non-negative" if key == "patience_evals" else "positive"} integer, '
                  f'got {value!r}')
    augment = sr.get('augment', {})
    if not isinstance(augment, dict) or set(augment) - {'rgb_permute', 'mixup'}:
        _fail(f'{prefix}.augment', f'expected {{rgb_permute: p, mixup: {{prob: p, alpha: a}}}}, got {augment!r}')
    check_augmentations(augment, f'{prefix}.augment.')
    lr, ema = sr.get('lr', 1e-4), sr.get('ema_decay', 0)
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or lr <= 0:
        _fail(f'{prefix}.lr', f'expected a positive number, got {lr!r}')
    if isinstance(ema, bool) or not isinstance(ema, (int, float)) or not 0 <= ema < 1:
        _fail(f'{prefix}.ema_decay', f'expected a number in [0, 1), got {ema!r}')
    if sr.get('gt_size', scale) % scale:
        _fail(f'{prefix}.gt_size', f'{sr["gt_size"]} is not a multiple of scale {scale}')


def check_experiment(exp: dict, root: Path) -> dict:
    """Validate the options (one line naming the option or file) and fill in defaults; nothing runs before."""
    for key in REQUIRED:
        if key not in exp:
            _fail(key, 'missing')
    check_options(EXPERIMENT_SCHEMA, exp)
    exp = copy.deepcopy(exp)
    if exp['scale'] not in (2, 3, 4):
        _fail('scale', f'expected 2, 3 or 4, got {exp["scale"]!r}')
    _check_folders(exp, root)
    _check_arms(exp)
    _check_students(exp)
    _check_sr_training(exp)
    exp['convergence'] = {**CONVERGENCE_DEFAULTS, **exp.get('convergence', {})}
    exp['validation'] = {'holdout_images': 4, 'crop_size': 256, **exp.get('validation', {})}
    exp['full_pool'] = {'crop_size': 192, 'step': 192, **exp.get('full_pool', {})}
    exp.setdefault('threads', 2)
    _check_sets(exp)
    return exp


def _check_folders(exp: dict, root: Path) -> None:
    """The pool and every test set's HR and bicubic LR folders exist."""
    if not (root / exp['pool']).is_dir():
        _fail('pool', f'{root / exp["pool"]} is not a folder of HR images')
    for folder in exp['test_sets']:
        for sub in ('HR', f'LR_bicubic/X{exp["scale"]}'):
            if not (root / folder / sub).is_dir():
                _fail('test_sets', f'{root / folder / sub} does not exist')


def _check_arms(exp: dict) -> None:
    """``custom_arms``, ``arms`` (registered or custom), ``default_arm`` (an arm with a set; the first by default),
    ``budgets_percent`` and ``seeds``."""
    custom = exp.get('custom_arms') or {}
    if not isinstance(custom, dict):
        _fail('custom_arms', f'expected a mapping of arm name -> {{arm: <built-in arm>, <synthesize option>: value}}, '
              f'got {custom!r}')
    bases = (*data.ARM_MODES, FULL_POOL)
    for name, spec in custom.items():
        if name in bases or not isinstance(spec, dict) or spec.get('arm') not in bases:
            _fail(f'custom_arms.{name}', f'expected a new name with arm: one of {sorted(data.ARM_MODES)} or '
                  f'{FULL_POOL}, got {spec!r}')
        if spec['arm'] == FULL_POOL and set(spec) != {'arm', 'sr_train'}:
            _fail(f'custom_arms.{name}', f'an arm on the {FULL_POOL} changes only its SR training: expected {{arm: '
                  f'{FULL_POOL}, sr_train: {{...}}}}, got {spec!r}')
    unknown = [a for a in exp['arms'] if a not in data.ARM_MODES and a not in custom]
    if unknown or not exp['arms']:
        _fail('arms', f'unknown arm {unknown[0] if unknown else None!r}; expected some of {sorted(data.ARM_MODES)} '
              'or a name defined under custom_arms')
    exp.setdefault('default_arm', exp['arms'][0])
    if exp['default_arm'] not in data.arms_on_sets(exp):
        _fail('default_arm', f'{exp["default_arm"]!r} is not one of the arms that make a set: '
              f'{data.arms_on_sets(exp)}')
    for b in exp['budgets_percent']:
        if isinstance(b, bool) or not isinstance(b, (int, float)) or not 0 < b < 100:
            _fail('budgets_percent', f'{b!r} is not a percentage of the pool between 0 and 100 (exclusive; the '
                  'full pool is always trained)')
    if not exp['budgets_percent']:
        _fail('budgets_percent', 'empty')
    if not exp['seeds'] or any(isinstance(s, bool) or not isinstance(s, int) for s in exp['seeds']):
        _fail('seeds', f'expected a list of integers, got {exp["seeds"]!r}')


def _check_students(exp: dict) -> None:
    """Every student a registered BasicSR architecture with its own arguments, at the experiment's scale;
    ``sweep_student`` (the first by default) and ``student_budgets_percent`` among them."""
    for name, student in exp['students'].items():
        net = (student or {}).get('network_g') or {}
        if net.get('type') not in ARCH_REGISTRY:
            _fail(f'students.{name}.network_g.type', f'{net.get("type")!r} is not in BasicSR\'s ARCH_REGISTRY')
        check_options(signature_section(ARCH_REGISTRY.get(net['type'])), net, f'students.{name}.network_g')
        net_scale = net.get('upscale', net.get('scale'))
        if net_scale != exp['scale']:
            _fail(f'students.{name}.network_g.upscale',
                  f'{net_scale!r} differs from the distilled sets\' scale {exp["scale"]}')
    exp.setdefault('sweep_student', next(iter(exp['students'])))
    if exp['sweep_student'] not in exp['students']:
        _fail('sweep_student', f'{exp["sweep_student"]!r} is not one of the students {list(exp["students"])}')
    exp.setdefault('student_budgets_percent', exp['budgets_percent'][:1])
    for b in exp['student_budgets_percent']:
        if b not in exp['budgets_percent']:
            _fail('student_budgets_percent', f'{b!r} is not one of budgets_percent {exp["budgets_percent"]}')


def _check_sr_training(exp: dict) -> None:
    """``sr_train`` over its defaults (``max_iter`` at least ``total_iter``) and every custom arm's recipe."""
    unknown = set(exp.get('sr_train', {})) - set(SR_TRAIN_DEFAULTS)
    if unknown:
        _fail('sr_train', f'unknown keys {sorted(unknown)}')
    exp['sr_train'] = {**SR_TRAIN_DEFAULTS, **exp.get('sr_train', {})}
    sr = exp['sr_train']
    _check_sr_train(sr, 'sr_train', exp['scale'])
    if sr['max_iter'] is None:
        sr['max_iter'] = sr['total_iter']
    if not isinstance(sr['max_iter'], int) or isinstance(sr['max_iter'], bool) or sr['max_iter'] < sr['total_iter']:
        _fail('sr_train.max_iter', f'expected an integer >= total_iter ({sr["total_iter"]}), got {sr["max_iter"]!r}')
    for name, spec in ((n, s) for n, s in (exp.get('custom_arms') or {}).items() if 'sr_train' in s):
        recipe = spec['sr_train']
        if not isinstance(recipe, dict) or not recipe or set(recipe) - set(RECIPE_KEYS):
            _fail(f'custom_arms.{name}.sr_train', f'expected a mapping of some of {list(RECIPE_KEYS)}, got {recipe!r}')
        _check_sr_train(recipe, f'custom_arms.{name}.sr_train', exp['scale'])


def _check_sets(exp: dict) -> None:
    """The distillation options, and each arm's as it will run: its synthesis mode and overrides, with patches no
    smaller than its training crops."""
    check_distill_options(exp['distill'])
    custom = exp.get('custom_arms') or {}
    for arm in data.arms_on_sets(exp):
        mode, overrides = data.arm_mode(exp, arm)
        arm_distill = {**exp['distill'], 'scale': exp['scale'],
                       'synthesize': {**exp['distill'].get('synthesize', {}), **overrides, 'mode': mode}}
        check_distill_options(arm_distill)
        patch, gt_size = set_patch_size(arm_distill), {**exp['sr_train'], **data.recipe(exp, arm)}['gt_size']
        if patch < gt_size:
            _fail(f'custom_arms.{arm}' if arm in custom else 'sr_train.gt_size',
                  f'the set of {arm} has {patch}-px patches, smaller than its training crops (gt_size {gt_size})')


def plan_runs(exp: dict) -> list[Run]:
    """Every training, the most telling first: per student (the sweep student first) the full pool's first seed,
    every seed and arm at the budget nearest 0.68 % (where the targets are read), then seed by seed the other
    budgets outwards from it (a whole budget curve before a second seed), the full pool's other seeds last, and
    last the full pool under each recipe arm on it (``{arm: full_pool, sr_train: ...}``), seed by seed."""
    runs = []
    seeds = exp['seeds']
    set_arms = data.arms_on_sets(exp)
    pool_arms = [a for a in exp['arms'] if a not in set_arms]
    for student in sorted(exp['students'], key=lambda s: s != exp['sweep_student']):
        budgets = exp['budgets_percent'] if student == exp['sweep_student'] else exp['student_budgets_percent']
        first, *others = sorted(budgets, key=lambda b: abs(math.log(b / 0.68)))
        runs.append(Run(student, FULL_POOL, None, seeds[0]))
        runs += [Run(student, arm, first, seed) for seed in seeds for arm in set_arms]
        runs += [Run(student, arm, b, seed) for seed in seeds for b in others for arm in set_arms]
        runs += [Run(student, FULL_POOL, None, seed) for seed in seeds[1:]]
        runs += [Run(student, arm, None, seed) for seed in seeds for arm in pool_arms]
    return runs


def student_options(run: Run, sr: dict, lmdb: Path, exp: dict, work: Path, num_gpu: int) -> dict:
    """The BasicSR options of ``run``'s SR training: the student on the HR LMDB ``lmdb`` (LR made on the fly), Adam
    and a multi-step schedule from ``sr`` (its ``sr_train``), checkpoints every ``eval_every`` iterations."""
    size = len(read_meta_keys(lmdb))
    enlarge = max(1, math.ceil(200 * sr['batch_size'] / size))  # an epoch of at least 200 iterations
    return {
        'name': run.name, 'model_type': 'SRModel', 'scale': exp['scale'], 'num_gpu': num_gpu,
        'manual_seed': run.seed,
        'datasets': {'train': {
            'name': run.name, 'type': 'HROnlyDataset', 'dataroot_gt': str(lmdb), 'io_backend': {'type': 'lmdb'},
            'gt_size': sr['gt_size'], 'use_hflip': True, 'use_rot': True, 'num_worker_per_gpu': 0,
            'batch_size_per_gpu': sr['batch_size'], 'dataset_enlarge_ratio': enlarge, 'prefetch_mode': None,
            **sr['augment']}},
        'network_g': exp['students'][run.student]['network_g'],
        'path': {'experiments_root': str(work / 'experiments'), 'pretrain_network_g': None,
                 'strict_load_g': True, 'resume_state': None},
        'train': {'ema_decay': sr['ema_decay'],
                  'optim_g': {'type': 'Adam', 'lr': sr['lr'], 'weight_decay': 0, 'betas': [0.9, 0.99]},
                  'scheduler': {'type': 'MultiStepLR', 'gamma': 0.5,
                                'milestones': [round(f * sr['total_iter']) for f in sr['milestones_fraction']]},
                  'total_iter': sr['total_iter'], 'warmup_iter': -1,
                  'pixel_opt': {'type': 'L1Loss', 'loss_weight': 1.0, 'reduction': 'mean'}},
        'logger': {'print_freq': 500, 'save_checkpoint_freq': sr['eval_every'], 'use_tb_logger': False,
                   'wandb': {'project': None, 'resume_id': None}},
        'dist_params': {'backend': None, 'port': 29500}}


class Experiment:
    """The state of one experiment on disk and the steps that advance it."""

    def __init__(self, exp: dict, root: Path, num_gpu: int = 0):
        self.exp, self.root, self.num_gpu = exp, root, num_gpu
        self.eval_device = torch.device('cuda' if num_gpu else 'cpu')  # where students are evaluated
        self.cpu_device = f'cpu: {exp["threads"]} thread{"s" if exp["threads"] != 1 else ""}'
        self.device = f'cuda: {torch.cuda.get_device_name(0)}' if num_gpu else self.cpu_device
        self.work = root / 'experiments' / exp['name']
        self.results = root / 'results' / exp['name']
        self.scale = exp['scale']
        self.times = JsonStore(self.work / 'stage_times.json')
        self.train_dir = self.val_dir = None
        self.data_lock = data.data_lock(self.work)
        self.report_lock = FileLock(self.work / 'locks' / 'report.lock')

    # --- data ------------------------------------------------------------------------------------------------
    def prepare_data(self) -> None:
        val, fp = self.exp['validation'], self.exp['full_pool']
        with self.data_lock:
            start, built = time.perf_counter(), not (self.work / 'data' / FULL_POOL / 'HR.lmdb').is_dir()
            self.train_dir, self.val_dir = data.split_pool(self.root / self.exp['pool'], self.work,
                                                           val['holdout_images'], val['crop_size'], self.scale)
            data.full_pool_lmdb(self.train_dir, self.work, fp['crop_size'], fp['step'], self.scale)
            if built:  # timed only where this call made it
                self.times = JsonStore(self.times.path)
                self.times.put('prepare: pool split + full-pool LMDB', time.perf_counter() - start)

    def lmdb(self, run: Run) -> Path:
        if run.budget is None:
            return self.work / 'data' / FULL_POOL / 'HR.lmdb'
        return self.work / 'data' / f'{data.set_arm(self.exp, run.arm)}_{run.budget:g}pct' / 'HR.lmdb'

    def data_settings(self, run: Run) -> dict:
        if run.budget is None:
            return {'pool': str((self.root / self.exp['pool']).resolve()), 'validation': self.exp['validation'],
                    'full_pool': self.exp['full_pool']}
        arm = data.set_arm(self.exp, run.arm)
        options = data.distill_options(self.exp, self.train_dir, arm, run.budget)
        if not data.uses_generator(self.exp, arm):
            options.pop('finetune', None)  # fine-tuning the generator longer redoes none of this set's runs
        return options

    # --- students --------------------------------------------------------------------------------------------
    def settings(self, run: Run) -> dict:
        """Everything a run's result depends on (a stored result with other settings is never reused); paths inside
        the experiment's root are written relative to it, so a moved or copied repository keeps its runs."""
        # max_iter is left out: raising it continues the runs the old cap cut off (see ``unfinished``)
        sr = {k: v for k, v in self.sr_train(run).items() if k != 'max_iter' and not (k == 'augment' and not v)}
        settings = {'network_g': self.exp['students'][run.student]['network_g'], 'sr_train': sr,
                    'data': self.data_settings(run), 'seed': run.seed, 'scale': self.scale}
        return portable(self.root, json.loads(json.dumps(settings)))

    def result_path(self, run: Run) -> Path:
        return self.work / 'runs' / f'{run.name}.json'

    def check_stored_settings(self, runs: list[Run]) -> None:
        """Refuse to continue where a run (finished or started) was made with other settings."""
        for run in runs:
            path = self.result_path(run).with_suffix('.settings.json')
            settings = self.settings(run)
            if path.is_file() and as_now(self.root, json.loads(path.read_text()), settings) != settings:
                raise SRDistillError(f'{path}: run {run.name} was started with other settings; use a new experiment '
                                     'name, or delete this file and the run\'s folder to redo it')

    def sr_train(self, run: Run) -> dict:
        """The SR training options of ``run``: the experiment's ``sr_train`` with its arm's recipe overrides."""
        return {**self.exp['sr_train'], **data.recipe(self.exp, run.arm)}

    def checkpoint(self, run_name: str, iteration: int) -> Path:
        """The student checkpoint of ``run_name`` saved at ``iteration`` (a multiple of ``eval_every``, or the
        last iteration: ``net_g_latest``)."""
        name = f'net_g_{iteration}.pth' if iteration % self.exp['sr_train']['eval_every'] == 0 else 'net_g_latest.pth'
        return self.work / 'experiments' / run_name / 'models' / name

    def train(self, run: Run) -> None:
        """BasicSR training of ``run`` in this process, in the stretches of ``next_target`` (one training that goes
        on after each), the validation PSNR measured after each. The seconds and iterations of every stretch are
        recorded; a run that was stopped resumes from its last checkpoint, and a stretch trained before the stop
        but not timed is recorded untimed."""
        sr = self.exp['sr_train']
        opt_file = self.work / 'runs' / f'{run.name}.yml'
        opt_file.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(opt_file, yaml.safe_dump(student_options(run, self.sr_train(run), self.lmdb(run), self.exp,
                                                                   self.work, self.num_gpu)))
        atomic_write_text(self.result_path(run).with_suffix('.settings.json'), json.dumps(self.settings(run)))
        clock, curve = self.store(run, 'time'), self.store(run, 'curve')
        trainer = None
        try:
            target = self.next_target(0, curve.data)
            while target is not None:
                if str(target) not in clock.data:
                    trainer = trainer or self.start_training(run, opt_file)
                    done = trainer.current_iter
                    start = time.perf_counter()
                    trainer.train_to(target)
                    clock.put(str(target), {'seconds': time.perf_counter() - start if done < target else None,
                                            'device': self.device,
                                            'iterations': target - max(map(int, clock.data), default=0)})
                for it in range(sr['eval_every'], target + 1, sr['eval_every']):
                    if curve.get(str(it)) is None:
                        net = load_student(self.exp['students'][run.student]['network_g'],
                                           self.checkpoint(run.name, it), self.eval_device)
                        curve.put(str(it), evaluate(net, self.val_dir, self.scale, ssim=False)['psnr'])
                target = self.next_target(target, curve.data)
            if trainer is not None:
                trainer.finish()
        finally:
            if trainer is not None:
                trainer.close()

    def start_training(self, run: Run, opt_file: Path) -> Trainer:
        """The BasicSR training of ``run`` (resumed from its newest state), logging to ``runs/<name>.log``."""
        opt, args = parse_train_options(str(self.root), ['-opt', str(opt_file), '--auto_resume'])
        return Trainer(opt, args.opt, also_log_to=self.work / 'runs' / f'{run.name}.log')

    def next_target(self, done: int, curve: dict) -> int | None:
        """The iteration to train to after ``done``, or None when the run is finished: chunks of ``eval_every``
        (with ``patience_evals`` > 0; else one chunk) up to ``total_iter``, stopping early once the validation PSNR
        has not improved by ``convergence.min_gain_db`` for ``patience_evals`` evaluations (a small set has
        converged: it overfits from there); from ``total_iter`` on (at the last learning rate) the convergence
        rule alone decides: ``eval_every`` more at a time up to ``max_iter`` while the run is not converged. Only
        the points of ``curve`` up to ``done`` count (a resumed run replays its chunks)."""
        sr = self.exp['sr_train']
        curve = {it: psnr for it, psnr in curve.items() if int(it) <= done}
        if done < sr['total_iter']:
            if done and self.stalled(curve):
                return None
            return min(done + (sr['eval_every'] if sr['patience_evals'] else sr['total_iter']), sr['total_iter'])
        rule = self.exp['convergence']
        if done < sr['max_iter'] and convergence_gain(curve, rule['window_fraction']) >= rule['min_gain_db']:
            return min(done + sr['eval_every'], sr['max_iter'])
        return None

    def unfinished(self, run: Run) -> bool:
        """Whether a recorded run would train further under these options (``max_iter`` raised since)."""
        result = json.loads(self.result_path(run).read_text())
        return self.next_target(result['last_iter'], result['val_curve']) is not None

    def stalled(self, curve: dict) -> bool:
        """Whether the last ``patience_evals`` validation points all fall short of the best before them by the
        convergence threshold."""
        patience = self.exp['sr_train']['patience_evals']
        values = [curve[k] for k in sorted(curve, key=int)]
        if not patience or len(values) <= patience:
            return False
        return max(values[-patience:]) < max(values[:-patience]) + self.exp['convergence']['min_gain_db']

    def store(self, run: Run, kind: str) -> JsonStore:
        return JsonStore(self.work / 'runs' / f'{run.name}.{kind}.json')

    def measure(self, run: Run) -> dict:
        """The validation curve, and test PSNR/SSIM of the best checkpoint (by validation) and the last."""
        curve = {int(k): v for k, v in self.store(run, 'curve').data.items()}
        spans = self.store(run, 'time').data.values()
        best, last = best_on_validation(curve), max(curve)
        net_opt = self.exp['students'][run.student]['network_g']

        def test(it: int) -> dict:
            net = load_student(net_opt, self.checkpoint(run.name, it), self.eval_device)
            return {Path(s).name: evaluate(net, self.root / s, self.scale) for s in self.exp['test_sets']}
        return {'run': run.name, 'student': run.student, 'arm': run.arm, 'budget': run.budget, 'seed': run.seed,
                'val_curve': curve, 'best_iter': best, 'last_iter': last, 'test_best': test(best),
                'test_last': test(last), 'stopped_early': last < self.exp['sr_train']['total_iter'],
                'seconds_per_iter': seconds_per_iter(spans),
                'device': ', '.join(sorted({s.get('device', self.cpu_device) for s in spans})),
                'num_train_images': len(read_meta_keys(self.lmdb(run)))}

    def run_one(self, run: Run) -> bool:
        """Train, test and record ``run`` unless it is recorded already or another worker holds it; return
        whether this call trained it."""
        lock = FileLock(self.work / 'locks' / f'{run.name}.lock')
        if not lock.acquire(blocking=False):
            return False
        try:
            if self.result_path(run).is_file() and not self.unfinished(run):
                return False
            if run.budget is not None:  # takes the data locks it needs
                data.distilled_set(self.exp, self.work, self.train_dir, data.set_arm(self.exp, run.arm), run.budget)
            self.train(run)
            write_manifest(self.result_path(run), self.measure(run))
            return True
        finally:
            lock.release()

    def stored_results(self, runs: list[Run]) -> list[dict]:
        """The finished runs' results (those recorded before devices were recorded ran on this CPU setting)."""
        return [{'device': self.cpu_device, **json.loads(self.result_path(r).read_text())}
                for r in runs if self.result_path(r).is_file()]

def load_experiment(opt_path: str, root: Path) -> dict:
    return check_experiment(read_options(opt_path), root)


def select_runs(runs: list[Run], patterns: list[str] | None) -> list[Run]:
    """The runs whose names match one of the shell-style ``patterns`` (e.g. ``SwinIR_*pct_*``), pattern by pattern
    (None: all runs, in plan order); a pattern that matches no run is an error."""
    if patterns is None:
        return runs
    chosen = []
    for pattern in patterns:
        matched = [r for r in runs if fnmatch.fnmatchcase(r.name, pattern)]
        if not matched:
            raise SRDistillError(f'--runs: {pattern!r} matches none of the runs (e.g. {runs[0].name}, {runs[-1].name})')
        chosen += [r for r in matched if r not in chosen]
    return chosen


def check_worker(exp: dict, num_gpu: int, runs: list[str] | None) -> None:
    """One line for a worker's options that cannot work (before anything runs)."""
    if num_gpu not in (0, 1):
        raise SRDistillError(f'--num_gpu: expected 0 (CPU) or 1, got {num_gpu}')
    if num_gpu and not torch.cuda.is_available():
        raise SRDistillError('--num_gpu 1: this machine has no CUDA device that torch can use')
    select_runs(plan_runs(exp), runs)


def log_basicsr_to_files_only() -> None:
    """BasicSR's log (the trainings, the fine-tuning) goes to each run's log files, not the console: the
    experiment's console shows its own progress."""
    logger = get_root_logger()
    for handler in list(logger.handlers):
        if type(handler) is logging.StreamHandler:
            logger.removeHandler(handler)


def run_experiment(exp: dict, root: Path, train: bool = True, report: bool = True, num_gpu: int = 0,
                   runs: list[str] | None = None) -> Path | None:
    """Advance the experiment as far as it goes and return the report's path. ``train`` False: only report what
    is finished; ``report`` False: train only (no report); ``num_gpu`` 1: BasicSR trains on the GPU (the device
    is recorded with every run, and students are evaluated there too); ``runs``: train only the runs matching these
    name patterns, in their order."""
    from .report import write_report

    check_worker(exp, num_gpu, runs)
    torch.set_num_threads(int(exp['threads']))
    for var in ('OMP_NUM_THREADS', 'MKL_NUM_THREADS'):
        os.environ[var] = str(exp['threads'])
    log_basicsr_to_files_only()
    experiment = Experiment(exp, root, num_gpu)
    planned = plan_runs(exp)
    experiment.prepare_data()
    experiment.check_stored_settings(planned)
    if train:
        written = time.monotonic()
        for run in tqdm(select_runs(planned, runs), desc=f'{exp["name"]}: runs', unit='run'):
            if experiment.run_one(run) and report and time.monotonic() - written >= REPORT_REFRESH_SECONDS:
                with experiment.report_lock:
                    write_report(experiment, planned)  # a readable report while the runs go on
                written = time.monotonic()
    if not report:
        return None
    with experiment.report_lock:
        return write_report(experiment, planned)
