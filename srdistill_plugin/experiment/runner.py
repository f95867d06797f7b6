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

import dataclasses
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
from tqdm import tqdm

from srdistill.core.atomic_io import atomic_write_text
from srdistill.core.errors import SRDistillError
from srdistill.core.file_lock import FileLock
from srdistill.core.json_store import JsonStore
from srdistill.core.lmdb_io import read_meta_keys
from srdistill.core.manifest import write_manifest
from srdistill_plugin.engine.train import Trainer, parse_train_options

from . import data
from .evaluate import evaluate, load_student
from .options import ExperimentOptions, TrainingRecipe
from .results import FULL_POOL, convergence_gain
from .settings import as_now, portable

REPORT_REFRESH_SECONDS = 60  # while runs finish, the report is rewritten at most this often (and at the end)


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


def plan_runs(exp: ExperimentOptions) -> list[Run]:
    """Every training, the most telling first: per student (the sweep student first) the full pool's first seed,
    every seed and arm at the budget nearest 0.68 % (where the targets are read), then seed by seed the other
    budgets outwards from it (a whole budget curve before a second seed), the full pool's other seeds last, and
    last the full pool under each recipe arm on it (``{arm: full_pool, sr_train: ...}``), seed by seed."""
    runs = []
    seeds = exp.seeds
    set_arms = exp.arms_on_sets()
    pool_arms = [a for a in exp.arms if a not in set_arms]
    for student in sorted(exp.students, key=lambda s: s != exp.sweep_student):
        budgets = exp.budgets_percent if student == exp.sweep_student else exp.student_budgets_percent
        first, *others = sorted(budgets, key=lambda b: abs(math.log(b / 0.68)))
        runs.append(Run(student, FULL_POOL, None, seeds[0]))
        runs += [Run(student, arm, first, seed) for seed in seeds for arm in set_arms]
        runs += [Run(student, arm, b, seed) for seed in seeds for b in others for arm in set_arms]
        runs += [Run(student, FULL_POOL, None, seed) for seed in seeds[1:]]
        runs += [Run(student, arm, None, seed) for seed in seeds for arm in pool_arms]
    return runs


def student_options(run: Run, sr: TrainingRecipe, lmdb: Path, exp: ExperimentOptions, work: Path,
                    num_gpu: int) -> dict:
    """The BasicSR options of ``run``'s SR training: the student on the HR LMDB ``lmdb`` (LR made on the fly), Adam
    and a multi-step schedule from ``sr`` (its ``sr_train``), checkpoints every ``eval_every`` iterations."""
    size = len(read_meta_keys(lmdb))
    enlarge = max(1, math.ceil(200 * sr.batch_size / size))  # an epoch of at least 200 iterations
    return {
        'name': run.name, 'model_type': 'SRModel', 'scale': exp.scale, 'num_gpu': num_gpu,
        'manual_seed': run.seed,
        'datasets': {'train': {
            'name': run.name, 'type': 'HROnlyDataset', 'dataroot_gt': str(lmdb), 'io_backend': {'type': 'lmdb'},
            'gt_size': sr.gt_size, 'use_hflip': True, 'use_rot': True, 'num_worker_per_gpu': 0,
            'batch_size_per_gpu': sr.batch_size, 'dataset_enlarge_ratio': enlarge, 'prefetch_mode': None,
            **sr.augment}},
        'network_g': exp.students[run.student]['network_g'],
        'path': {'experiments_root': str(work / 'experiments'), 'pretrain_network_g': None,
                 'strict_load_g': True, 'resume_state': None},
        'train': {'ema_decay': sr.ema_decay,
                  'optim_g': {'type': 'Adam', 'lr': sr.lr, 'weight_decay': 0, 'betas': [0.9, 0.99]},
                  'scheduler': {'type': 'MultiStepLR', 'gamma': 0.5,
                                'milestones': [round(f * sr.total_iter) for f in sr.milestones_fraction]},
                  'total_iter': sr.total_iter, 'warmup_iter': -1,
                  'pixel_opt': {'type': 'L1Loss', 'loss_weight': 1.0, 'reduction': 'mean'}},
        'logger': {'print_freq': 500, 'save_checkpoint_freq': sr.eval_every, 'use_tb_logger': False,
                   'wandb': {'project': None, 'resume_id': None}},
        'dist_params': {'backend': None, 'port': 29500}}


class Experiment:
    """The state of one experiment on disk and the steps that advance it."""

    def __init__(self, exp: ExperimentOptions, root: Path, num_gpu: int = 0):
        self.exp, self.root, self.num_gpu = exp, root, num_gpu
        self.eval_device = torch.device('cuda' if num_gpu else 'cpu')  # where students are evaluated
        self.cpu_device = f'cpu: {exp.threads} thread{"s" if exp.threads != 1 else ""}'
        self.device = f'cuda: {torch.cuda.get_device_name(0)}' if num_gpu else self.cpu_device
        self.work = root / 'experiments' / exp.name
        self.results = root / 'results' / exp.name
        self.scale = exp.scale
        self.times = JsonStore(self.work / 'stage_times.json')
        self.train_dir = self.val_dir = None
        self.data_lock = data.data_lock(self.work)
        self.report_lock = FileLock(self.work / 'locks' / 'report.lock')

    # --- data ------------------------------------------------------------------------------------------------
    def prepare_data(self) -> None:
        val, fp = self.exp.validation, self.exp.full_pool
        with self.data_lock:
            start, built = time.perf_counter(), not (self.work / 'data' / FULL_POOL / 'HR.lmdb').is_dir()
            self.train_dir, self.val_dir = data.split_pool(self.root / self.exp.pool, self.work,
                                                           val.holdout_images, val.crop_size, self.scale)
            data.full_pool_lmdb(self.train_dir, self.work, fp.crop_size, fp.step, self.scale)
            if built:  # timed only where this call made it
                self.times = JsonStore(self.times.path)
                self.times.put('prepare: pool split + full-pool LMDB',
                               {'seconds': time.perf_counter() - start, 'device': self.cpu_device})

    def lmdb(self, run: Run) -> Path:
        if run.budget is None:
            return self.work / 'data' / FULL_POOL / 'HR.lmdb'
        return self.work / 'data' / f'{self.exp.set_arm(run.arm)}_{run.budget:g}pct' / 'HR.lmdb'

    def data_settings(self, run: Run) -> dict:
        if run.budget is None:
            return {'pool': str((self.root / self.exp.pool).resolve()),
                    'validation': dataclasses.asdict(self.exp.validation),
                    'full_pool': dataclasses.asdict(self.exp.full_pool)}
        arm = self.exp.set_arm(run.arm)
        options = data.distill_options(self.exp, self.train_dir, arm, run.budget)
        if not self.exp.uses_generator(arm):
            options.pop('finetune', None)  # fine-tuning the generator longer redoes none of this set's runs
        return options

    # --- students --------------------------------------------------------------------------------------------
    def settings(self, run: Run) -> dict:
        """Everything a run's result depends on (a stored result with other settings is never reused); paths inside
        the experiment's root are written relative to it, so a moved or copied repository keeps its runs."""
        # max_iter is left out: raising it continues the runs the old cap cut off (see ``unfinished``)
        sr = {k: v for k, v in dataclasses.asdict(self.exp.recipe(run.arm)).items()
              if k != 'max_iter' and not (k == 'augment' and not v)}
        settings = {'network_g': self.exp.students[run.student]['network_g'], 'sr_train': sr,
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

    def checkpoint(self, run_name: str, iteration: int) -> Path:
        """The student checkpoint of ``run_name`` saved at ``iteration`` (a multiple of ``eval_every``, or the
        last iteration: ``net_g_latest``)."""
        name = f'net_g_{iteration}.pth' if iteration % self.exp.sr_train.eval_every == 0 else 'net_g_latest.pth'
        return self.work / 'experiments' / run_name / 'models' / name

    def train(self, run: Run) -> None:
        """BasicSR training of ``run`` in this process, in the stretches of ``next_target`` (one training that goes
        on after each), the validation PSNR measured after each. The seconds and iterations of every stretch are
        recorded; a run that was stopped resumes from its last checkpoint, and a stretch trained before the stop
        but not timed is recorded untimed."""
        sr = self.exp.sr_train
        opt_file = self.work / 'runs' / f'{run.name}.yml'
        opt_file.parent.mkdir(parents=True, exist_ok=True)
        options = student_options(run, self.exp.recipe(run.arm), self.lmdb(run), self.exp, self.work, self.num_gpu)
        atomic_write_text(opt_file, yaml.safe_dump(options))
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
                for it in range(sr.eval_every, target + 1, sr.eval_every):
                    if curve.get(str(it)) is None:
                        net = load_student(self.exp.students[run.student]['network_g'],
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
        sr = self.exp.sr_train
        curve = {it: psnr for it, psnr in curve.items() if int(it) <= done}
        if done < sr.total_iter:
            if done and self.stalled(curve):
                return None
            return min(done + (sr.eval_every if sr.patience_evals else sr.total_iter), sr.total_iter)
        rule = self.exp.convergence
        if done < sr.max_iter and convergence_gain(curve, rule.window_fraction) >= rule.min_gain_db:
            return min(done + sr.eval_every, sr.max_iter)
        return None

    def unfinished(self, run: Run) -> bool:
        """Whether a recorded run would train further under these options (``max_iter`` raised since)."""
        result = json.loads(self.result_path(run).read_text())
        return self.next_target(result['last_iter'], result['val_curve']) is not None

    def stalled(self, curve: dict) -> bool:
        """Whether the last ``patience_evals`` validation points all fall short of the best before them by the
        convergence threshold."""
        patience = self.exp.sr_train.patience_evals
        values = [curve[k] for k in sorted(curve, key=int)]
        if not patience or len(values) <= patience:
            return False
        return max(values[-patience:]) < max(values[:-patience]) + self.exp.convergence.min_gain_db

    def store(self, run: Run, kind: str) -> JsonStore:
        return JsonStore(self.work / 'runs' / f'{run.name}.{kind}.json')

    def measure(self, run: Run) -> dict:
        """The validation curve, and test PSNR/SSIM of the best checkpoint (by validation) and the last."""
        curve = {int(k): v for k, v in self.store(run, 'curve').data.items()}
        spans = self.store(run, 'time').data.values()
        best, last = best_on_validation(curve), max(curve)
        net_opt = self.exp.students[run.student]['network_g']

        def test(it: int) -> dict:
            net = load_student(net_opt, self.checkpoint(run.name, it), self.eval_device)
            return {Path(s).name: evaluate(net, self.root / s, self.scale) for s in self.exp.test_sets}
        return {'run': run.name, 'student': run.student, 'arm': run.arm, 'budget': run.budget, 'seed': run.seed,
                'val_curve': curve, 'best_iter': best, 'last_iter': last, 'test_best': test(best),
                'test_last': test(last), 'stopped_early': last < self.exp.sr_train.total_iter,
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
                data.distilled_set(self.exp, self.work, self.train_dir, self.exp.set_arm(run.arm), run.budget)
            self.train(run)
            write_manifest(self.result_path(run), self.measure(run))
            return True
        finally:
            lock.release()

    def stored_results(self, runs: list[Run]) -> list[dict]:
        """The finished runs' results (those recorded before devices were recorded ran on this CPU setting)."""
        return [{'device': self.cpu_device, **json.loads(self.result_path(r).read_text())}
                for r in runs if self.result_path(r).is_file()]

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


def check_worker(exp: ExperimentOptions, num_gpu: int, runs: list[str] | None) -> None:
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


def run_experiment(exp: ExperimentOptions, root: Path, train: bool = True, report: bool = True, num_gpu: int = 0,
                   runs: list[str] | None = None) -> Path | None:
    """Advance the experiment as far as it goes and return the report's path. ``train`` False: only report what
    is finished; ``report`` False: train only (no report); ``num_gpu`` 1: BasicSR trains on the GPU (the device
    is recorded with every run, and students are evaluated there too); ``runs``: train only the runs matching these
    name patterns, in their order."""
    from .report import write_report

    check_worker(exp, num_gpu, runs)
    torch.set_num_threads(int(exp.threads))
    for var in ('OMP_NUM_THREADS', 'MKL_NUM_THREADS'):
        os.environ[var] = str(exp.threads)
    log_basicsr_to_files_only()
    experiment = Experiment(exp, root, num_gpu)
    planned = plan_runs(exp)
    experiment.prepare_data()
    experiment.check_stored_settings(planned)
    if train:
        written = time.monotonic()
        for run in tqdm(select_runs(planned, runs), desc=f'{exp.name}: runs', unit='run'):
            if experiment.run_one(run) and report and time.monotonic() - written >= REPORT_REFRESH_SECONDS:
                with experiment.report_lock:
                    write_report(experiment, planned)  # a readable report while the runs go on
                written = time.monotonic()
    if not report:
        return None
    with experiment.report_lock:
        return write_report(experiment, planned)
