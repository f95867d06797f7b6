"""The plugin's BasicSR training pipeline: BasicSR's builders (options helpers, datasets, loaders, models, loggers,
validation, checkpoints) driven by a loop of the plugin's own, with ``basicsr/train.py``'s flags (``-opt``,
``--launcher``, ``--auto_resume``, ``--debug``, ``--force_yml``). What it does beyond BasicSR's, each a visible step:

* the training sampler is ``datasets.train.sampler: {type: ...}`` from ``SAMPLER_REGISTRY`` (BasicSR's
  ``EnlargedSampler`` by default);
* ``--force_yml`` is applied before the generators are seeded (so ``manual_seed=N`` takes effect), and the options
  are checked against the schema before any work;
* resuming works on CPU-only machines and from any working folder (``engine/resume.py``);
* checkpoints are complete or absent, and a failed write stops the run (``engine/checkpoint_io.py``);
* ``--launcher pytorch|slurm`` works on CPUs with gloo (``engine/distributed.py``), and a distributed run ends by
  logging how far any rank's weights are from rank 0's;
* :class:`Trainer` trains to N iterations, validates and goes on in one process, and keeps the validation curve and
  the seconds of each stretch in ``<experiments_root>/training.json``.

Nothing of BasicSR or torch is replaced at run time: a user's own ``train.py`` that calls BasicSR's pipeline gets
the plugin's registered types and BasicSR's behaviour.
"""
from __future__ import annotations

import argparse
import datetime
import json
import logging
import math
import random
import shutil
import time
from pathlib import Path
from typing import Iterator

import torch
import torch.distributed as dist
from basicsr.data import build_dataloader, build_dataset
from basicsr.data.prefetch_dataloader import CPUPrefetcher, CUDAPrefetcher
from basicsr.utils import (AvgTimer, MessageLogger, get_env_info, get_root_logger, get_time_str, init_tb_logger,
                           init_wandb_logger, make_exp_dirs, mkdir_and_rename, set_random_seed)
from basicsr.utils.dist_util import get_dist_info
from basicsr.utils.options import copy_opt_file, dict2str

from srdistill.core.atomic_io import atomic_write_text
from srdistill.core.errors import SRDistillError
from srdistill.core.options_file import apply_force_yml, read_options
from srdistill_plugin.samplers import build_sampler

from . import distributed
from .checkpoint_io import build_model_from_files, save_checkpoint
from .option_schema import check_basicsr_options
from .resume import load_resume_state, resume_training, write_network_record

LAUNCHERS = ('none', 'pytorch', 'slurm')


def argument_parser() -> argparse.ArgumentParser:
    """``basicsr/train.py``'s flags."""
    parser = argparse.ArgumentParser(prog='srdistill-train', description='BasicSR training with the plugin\'s types.')
    parser.add_argument('-opt', required=True, help='path to the options YAML file')
    parser.add_argument('--launcher', choices=LAUNCHERS, default='none', help='job launcher (torchrun: pytorch)')
    parser.add_argument('--auto_resume', action='store_true', help='resume from the newest training state')
    parser.add_argument('--debug', action='store_true', help='a debug_<name> run: frequent logs and checkpoints')
    parser.add_argument('--local_rank', type=int, default=0, help='set by old launchers; the environment decides')
    parser.add_argument('--force_yml', nargs='+', default=None, metavar='KEY:SUB=VALUE',
                        help='override options, e.g. train:total_iter=1000')
    return parser


def parse_train_options(root_path: str, argv: list[str] | None = None) -> tuple[dict, argparse.Namespace]:
    """The training options of the command line: the file, ``--force_yml`` applied, the ranks started, paths
    resolved under ``root_path``, checked, and the generators seeded with ``manual_seed`` + rank."""
    args = argument_parser().parse_args(argv)
    opt = read_options(args.opt)
    apply_force_yml(opt, args.force_yml or [])
    opt['dist'] = args.launcher != 'none'
    if opt['dist']:
        params = opt.get('dist_params') or {}
        distributed.init_dist(args.launcher, backend=params.get('backend'), port=params.get('port'))
    else:
        print('Disable distributed.', flush=True)
    opt['rank'], opt['world_size'] = get_dist_info()
    if opt.get('manual_seed') is None:
        opt['manual_seed'] = random.randint(1, 10000)
    opt.update(auto_resume=args.auto_resume, is_train=True, root_path=root_path)
    if args.debug and not opt['name'].startswith('debug'):
        opt['name'] = 'debug_' + opt['name']
    if opt.get('num_gpu') == 'auto':
        opt['num_gpu'] = torch.cuda.device_count()
    resolve_training_paths(opt, root_path)
    check_train_options(opt)
    set_random_seed(opt['manual_seed'] + opt['rank'])
    return opt, args


def resolve_training_paths(opt: dict, root_path: str) -> None:
    """As BasicSR does: each dataset's phase and scale, ``~`` expanded, the run's folders under
    ``path.experiments_root`` (default ``<root>/experiments``) ``/<name>``, and the debug frequencies."""
    for phase, dataset in (opt.get('datasets') or {}).items():
        dataset['phase'] = phase.split('_')[0]
        if 'scale' in opt:
            dataset['scale'] = opt['scale']
        for key in ('dataroot_gt', 'dataroot_lq'):
            if dataset.get(key) is not None:
                dataset[key] = str(Path(dataset[key]).expanduser())
    paths = opt.setdefault('path', {})
    for key, value in paths.items():
        if value is not None and ('resume_state' in key or 'pretrain_network' in key):
            paths[key] = str(Path(value).expanduser())
    root = Path(paths.get('experiments_root') or Path(root_path) / 'experiments') / opt['name']
    paths.update(experiments_root=str(root), models=str(root / 'models'), log=str(root),
                 training_states=str(root / 'training_states'), visualization=str(root / 'visualization'))
    if 'debug' in opt['name']:
        if 'val' in opt:
            opt['val']['val_freq'] = 8
        opt['logger'].update(print_freq=1, save_checkpoint_freq=8)


def check_train_options(opt: dict) -> None:
    """Parsed training options against the BasicSR schema (keys, kinds, ranges, registered types), then the cosine
    schedule's periods against ``train.total_iter``."""
    check_basicsr_options(opt)
    check_cosine_periods(opt.get('train') or {})


def check_cosine_periods(train: dict) -> None:
    """BasicSR's ``CosineAnnealingRestartLR`` fails with a TypeError at the first iteration past its periods: a
    ``train.total_iter`` beyond them (e.g. raised by ``--force_yml`` to continue a run) is named at start."""
    scheduler = train.get('scheduler') or {}
    if scheduler.get('type') != 'CosineAnnealingRestartLR' or not isinstance(train.get('total_iter'), int):
        return
    periods = scheduler.get('periods') or []
    if sum(periods) < train['total_iter']:
        raise SRDistillError(f'option train.scheduler.periods: {periods} end at iteration {sum(periods)}, before '
                             f'train.total_iter {train["total_iter"]} (BasicSR\'s cosine schedule stops there)')


def create_loaders(opt: dict, logger: logging.Logger) -> tuple:
    """The training loader (its sampler from ``datasets.train.sampler``) and one loader per ``val*`` dataset."""
    train_loader = sampler = None
    val_loaders = []
    for phase, dataset_opt in opt['datasets'].items():
        if phase == 'train':
            enlarge = dataset_opt.get('dataset_enlarge_ratio', 1)
            train_set = build_dataset(dataset_opt)
            sampler = build_sampler(dataset_opt.get('sampler'), train_set, opt['world_size'], opt['rank'], enlarge)
            train_loader = build_dataloader(train_set, dataset_opt, num_gpu=opt['num_gpu'], dist=opt['dist'],
                                            sampler=sampler, seed=opt['manual_seed'])
            per_epoch = math.ceil(len(train_set) * enlarge / (dataset_opt['batch_size_per_gpu'] * opt['world_size']))
            total = int(opt['train']['total_iter'])
            logger.info('Training statistics:'
                        f'\n\tNumber of train images: {len(train_set)}'
                        f'\n\tDataset enlarge ratio: {enlarge}'
                        f'\n\tBatch size per gpu: {dataset_opt["batch_size_per_gpu"]}'
                        f'\n\tWorld size (gpu number): {opt["world_size"]}'
                        f'\n\tRequire iter number per epoch: {per_epoch}'
                        f'\n\tTotal epochs: {math.ceil(total / per_epoch)}; iters: {total}.')
        elif phase.split('_')[0] == 'val':
            val_set = build_dataset(dataset_opt)
            val_loaders.append(build_dataloader(val_set, dataset_opt, num_gpu=opt['num_gpu'], dist=opt['dist'],
                                                sampler=None, seed=opt['manual_seed']))
            logger.info(f'Number of val images/folders in {dataset_opt["name"]}: {len(val_set)}')
        else:
            raise SRDistillError(f'option datasets.{phase}: expected train or val* (BasicSR\'s phases)')
    return train_loader, sampler, val_loaders


def prefetcher_for(opt: dict, loader):
    """BasicSR's CPU or CUDA prefetcher, as ``datasets.train.prefetch_mode`` says."""
    dataset_opt = opt['datasets']['train']
    mode = dataset_opt.get('prefetch_mode')
    if mode in (None, 'cpu'):
        return CPUPrefetcher(loader)
    if mode == 'cuda' and dataset_opt.get('pin_memory') is True:
        get_root_logger().info('Use cuda prefetch dataloader')
        return CUDAPrefetcher(loader, opt)
    raise SRDistillError(f'option datasets.train.prefetch_mode: {mode!r} needs pin_memory: true' if mode == 'cuda'
                         else f'option datasets.train.prefetch_mode: expected cpu or cuda, got {mode!r}')


def init_tb_loggers(opt: dict):
    """wandb (before tensorboard, as BasicSR syncs them) and tensorboard, as ``logger`` asks; not for debug runs."""
    logger_opt = opt['logger']
    if (logger_opt.get('wandb') or {}).get('project') is not None and 'debug' not in opt['name']:
        if logger_opt.get('use_tb_logger') is not True:
            raise SRDistillError('option logger.wandb: wandb syncs the tensorboard log; set logger.use_tb_logger: true')
        init_wandb_logger(opt)
    if logger_opt.get('use_tb_logger') and 'debug' not in opt['name']:
        return init_tb_logger(log_dir=str(Path(opt['root_path']) / 'tb_logger' / opt['name']))
    return None


def run_folders(opt: dict) -> list[Path]:
    """The folders BasicSR makes for a training run: the experiment's and its tensorboard log's."""
    return [Path(opt['path']['experiments_root']), Path(opt['root_path']) / 'tb_logger' / opt['name']]


def archives(folder: Path) -> set[Path]:
    """The copies of ``folder`` BasicSR archived so far (``<name>_archived_<time>``)."""
    return set(folder.parent.glob(f'{folder.name}_archived_*'))


def note_run_folders(opt: dict) -> dict[Path, tuple[bool, set[Path]]]:
    """Before a run: whether each of its folders exists and which archives of it exist (what it makes is told from
    this, not from file times, which may come from another clock on a network filesystem)."""
    return {folder: (folder.exists(), archives(folder)) for folder in run_folders(opt)}


def remove_unused_run_folders(opt: dict, before: dict[Path, tuple[bool, set[Path]]]) -> None:
    """After a run that failed before its first checkpoint: remove the folders it made and give back the names of
    the ones BasicSR archived when it made them, so a failed start leaves nothing. A run with a checkpoint, and a
    folder that was there before and was not archived (a resumed run's), keep everything."""
    experiment = Path(opt['path']['experiments_root'])
    if opt.get('rank', 0) != 0 or any(experiment.glob('models/*.pth')) or \
            any(experiment.glob('training_states/*.state')):
        return
    for folder, (existed, old_archives) in before.items():
        new_archives = sorted(archives(folder) - old_archives)
        if not folder.is_dir() or (existed and not new_archives):
            continue
        shutil.rmtree(folder)
        if new_archives:
            new_archives[-1].rename(folder)


def log_file(path: Path, mode: str) -> logging.FileHandler:
    """A file handler in BasicSR's log format."""
    handler = logging.FileHandler(path, mode)
    handler.setFormatter(logging.Formatter('%(asctime)s %(levelname)s: %(message)s'))
    handler.setLevel(logging.INFO)
    return handler


class TrainingRecord:
    """``<experiments_root>/training.json`` (rank 0): the validation metrics per iteration, the seconds of each
    stretch of training (one per checkpoint, and the last to where training stopped) and the learning rates and
    losses of every ``print_freq``, kept across resumes (entries past the resumed iteration are dropped: that run
    died after them)."""

    def __init__(self, opt: dict, start_iter: int):
        self.path = Path(opt['path']['experiments_root']) / 'training.json'
        self.write = opt['rank'] == 0
        data = json.loads(self.path.read_text()) if self.path.is_file() else {}
        self.validation = {it: v for it, v in data.get('validation', {}).items() if int(it) <= start_iter}
        self.stretches = [s for s in data.get('stretches', []) if s['to'] <= start_iter]
        self.log = [entry for entry in data.get('log', []) if entry['iter'] <= start_iter]
        self.device = f'{"cuda" if opt["num_gpu"] else "cpu"}, {opt["world_size"]} rank(s), ' \
                      f'{torch.get_num_threads()} thread(s) each'

    def add_stretch(self, start: int, end: int, seconds: float) -> None:
        if end > start:
            self.stretches.append({'from': start, 'to': end, 'seconds': round(seconds, 3), 'device': self.device})
            self.save()

    def add_log(self, iteration: int, lrs: list[float], losses: dict) -> None:
        """The learning rates and losses BasicSR logs every ``print_freq`` (written with the next checkpoint)."""
        self.log.append({'iter': iteration, 'lr': [float(lr) for lr in lrs],
                         'losses': {name: float(value) for name, value in losses.items()}})

    def add_validation(self, iteration: int, metrics: dict) -> None:
        self.validation[str(iteration)] = metrics
        self.save()

    def save(self) -> None:
        if self.write:
            atomic_write_text(self.path, json.dumps({'validation': self.validation, 'stretches': self.stretches,
                                                     'log': self.log}, indent=1))


def read_training_record(experiment: str | Path) -> dict:
    """The ``training.json`` the plugin's train loop keeps in a BasicSR experiment folder (``TrainingRecord``); one
    line when the folder has none."""
    path = Path(experiment) / 'training.json'
    if not path.is_file():
        raise SRDistillError(f'{path} does not exist (a run trained before the plugin kept it: python '
                             f'scripts/record_from_logs.py {experiment} writes it from the run\'s BasicSR logs)')
    return json.loads(path.read_text())


class Trainer:
    """One BasicSR training run in this process: set up (folders, logs, loaders, model, resume), then
    :meth:`train_to` as often as wanted (each continues where the last stopped), :meth:`validate`, :meth:`finish`;
    :meth:`close` detaches its log files (several runs may train one after another in one process). The log goes
    to BasicSR's ``train_<name>_<time>.log`` and to ``also_log_to`` (appended) where given."""

    def __init__(self, opt: dict, opt_file: str, also_log_to: Path | None = None):
        self.opt = opt
        resume_state = load_resume_state(opt)
        if resume_state is None:
            make_exp_dirs(opt)
            if opt['logger'].get('use_tb_logger') and 'debug' not in opt['name'] and opt['rank'] == 0:
                mkdir_and_rename(str(Path(opt['root_path']) / 'tb_logger' / opt['name']))
        copy_opt_file(opt_file, opt['path']['experiments_root'])
        self.logger = get_root_logger(logger_name='basicsr', log_level=logging.INFO)
        if opt['rank'] == 0:  # BasicSR sets the level only where it opens a log file itself
            self.logger.setLevel(logging.INFO)
        self.log_files = []
        if opt['rank'] == 0:
            self.log_files.append(log_file(Path(opt['path']['log']) / f'train_{opt["name"]}_{get_time_str()}.log', 'w'))
        if also_log_to:
            self.log_files.append(log_file(also_log_to, 'a'))
        for handler in self.log_files:
            self.logger.addHandler(handler)
        self.logger.info(get_env_info())
        self.logger.info(dict2str(opt))
        self.tb_logger = init_tb_loggers(opt)
        self.train_loader, self.sampler, self.val_loaders = create_loaders(opt, self.logger)
        write_network_record(opt)
        self.model = distributed.build_model_on_ranks(opt, build_model_from_files)
        self.epoch = self.current_iter = 0
        if resume_state:
            resume_training(self.model, resume_state)
            self.epoch, self.current_iter = resume_state['epoch'], resume_state['iter']
            self.logger.info(f'Resuming training from epoch: {self.epoch}, iter: {self.current_iter}.')
        self.record = TrainingRecord(opt, self.current_iter)
        self.msg_logger = MessageLogger(opt, self.current_iter, self.tb_logger)
        self.batches = self.epochs_of_batches(prefetcher_for(opt, self.train_loader))
        self.data_timer, self.iter_timer = AvgTimer(), AvgTimer()
        self.started = time.time()
        self.logger.info(f'Start training from epoch: {self.epoch}, iter: {self.current_iter}')

    def epochs_of_batches(self, prefetcher) -> Iterator[tuple[int, dict]]:
        """``(epoch, batch)`` from the current epoch on, the sampler told each new epoch."""
        epoch = self.epoch
        while True:
            self.sampler.set_epoch(epoch)
            prefetcher.reset()
            batch = prefetcher.next()
            while batch is not None:
                yield epoch, batch
                batch = prefetcher.next()
            epoch += 1

    def train_to(self, total_iter: int) -> None:
        """Train until iteration ``total_iter``, logging every ``logger.print_freq``, saving a checkpoint every
        ``logger.save_checkpoint_freq`` and validating every ``val.val_freq`` iterations."""
        opt, model = self.opt, self.model
        start_iter, start = self.current_iter, time.perf_counter()  # the stretch since the last checkpoint
        while self.current_iter < total_iter:
            self.data_timer.start()
            self.iter_timer.start()
            self.epoch, batch = next(self.batches)
            self.data_timer.record()
            self.current_iter += 1
            model.update_learning_rate(self.current_iter, warmup_iter=opt['train'].get('warmup_iter', -1))
            model.feed_data(batch)
            model.optimize_parameters(self.current_iter)
            self.iter_timer.record()
            if self.current_iter == 1:
                self.msg_logger.reset_start_time()
            if self.current_iter % opt['logger']['print_freq'] == 0:
                lrs, losses = model.get_current_learning_rate(), model.get_current_log()
                self.msg_logger({'epoch': self.epoch, 'iter': self.current_iter, 'lrs': lrs,
                                 'time': self.iter_timer.get_avg_time(), 'data_time': self.data_timer.get_avg_time(),
                                 **losses})
                self.record.add_log(self.current_iter, lrs, losses)
            if self.current_iter % opt['logger']['save_checkpoint_freq'] == 0:
                self.logger.info('Saving models and training states.')
                save_checkpoint(model, self.epoch, self.current_iter)
                self.record.add_stretch(start_iter, self.current_iter, time.perf_counter() - start)  # as resumable
                start_iter, start = self.current_iter, time.perf_counter()
            if opt.get('val') is not None and self.current_iter % opt['val']['val_freq'] == 0:
                self.validate()
        self.record.add_stretch(start_iter, self.current_iter, time.perf_counter() - start)

    def validate(self) -> dict[str, dict[str, float]]:
        """BasicSR's validation on every ``val*`` dataset; ``{dataset: {metric: value}}``, also recorded."""
        if len(self.val_loaders) > 1:
            self.logger.warning('Multiple validation datasets are *only* supported by SRModel.')
        results = {}
        for loader in self.val_loaders:
            self.model.validation(loader, self.current_iter, self.tb_logger, self.opt['val'].get('save_img', False))
            metrics = getattr(self.model, 'metric_results', None) or {}
            results[loader.dataset.opt['name']] = {name: float(value) for name, value in metrics.items()}
        self.record.add_validation(self.current_iter, results)
        return results

    def finish(self) -> None:
        """Save the latest weights, validate them, close the loggers and, after a distributed run, log the largest
        difference of any rank's ``net_g`` from rank 0's."""
        consumed = datetime.timedelta(seconds=int(time.time() - self.started))
        self.logger.info(f'End of training. Time consumed: {consumed}')
        self.logger.info('Save the latest model.')
        save_checkpoint(self.model, -1, -1)
        if self.opt.get('val') is not None:
            self.validate()
        if dist.is_available() and dist.is_initialized():
            spread = distributed.rank_weight_spread(self.model.get_bare_model(self.model.net_g))
            self.logger.info(f'{dist.get_world_size()} ranks, {dist.get_backend()}: largest difference of any '
                             f'rank\'s net_g weights from rank 0\'s: {spread:.3g}')

    def close(self) -> None:
        """Close the tensorboard log and detach this run's log files from BasicSR's logger."""
        if self.tb_logger:
            self.tb_logger.close()
            self.tb_logger = None
        for handler in self.log_files:
            self.logger.removeHandler(handler)
            handler.close()
        self.log_files = []


def train_pipeline(root_path: str, argv: list[str] | None = None) -> None:
    """Train as ``basicsr/train.py`` does, with the plugin's steps (options from ``argv``, default ``sys.argv``).
    A run that fails before its first checkpoint leaves no folders behind."""
    opt, args = parse_train_options(root_path, argv)
    torch.backends.cudnn.benchmark = True
    before = note_run_folders(opt)
    trainer, completed = None, False
    try:
        trainer = Trainer(opt, args.opt)
        trainer.train_to(int(opt['train']['total_iter']))
        trainer.finish()
        completed = True
    except Exception:  # an error, not an interrupt: a killed run keeps its log
        remove_unused_run_folders(opt, before)
        raise
    finally:
        if trainer is not None:
            trainer.close()
        trainer = None  # the DDP-wrapped networks go before their process group
        distributed.close_process_group(completed)
