"""BasicSR's train pipeline with three additions, applied only for the duration of the call:

* ``datasets.train.sampler: {type: ..., ...}`` picks the training sampler from ``SAMPLER_REGISTRY``
  (BasicSR hard-codes ``EnlargedSampler``, which stays the default);
* resuming works on CPU-only machines and from ``--auto_resume`` in any working directory (BasicSR's
  ``load_resume_state`` calls ``torch.cuda.current_device()`` and looks under a cwd-relative ``experiments/``);
* ``--force_yml manual_seed=N`` takes effect (BasicSR seeds the random generators before it applies
  ``--force_yml``, so the override was logged but not used);
* checkpoints are written atomically and a failed write stops the run (``core/checkpoint_io.py``);
* ``--launcher pytorch|slurm`` works on CPU-only machines with gloo (``engine/distributed.py``), and a
  distributed run ends by checking that every rank holds rank 0's weights (logged);
* ``train.resume_lr: options`` resumes with the learning rates of the ``train.optim_*`` options instead of the
  state's (BasicSR restores the state's), so a run can be continued with a new learning rate (default ``state``).
"""
from __future__ import annotations

import json
import pickle
import shutil
import time
import warnings
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Iterator

import basicsr.train as basicsr_train
import basicsr.utils.options as basicsr_options
import torch
import torch.distributed as dist
from basicsr.models.base_model import BaseModel
from basicsr.utils import check_resume, get_root_logger, set_random_seed
from basicsr.utils.options import parse_options

from srdistill.core.atomic_io import atomic_write_text
from srdistill_plugin.engine.checkpoint_io import atomic_checkpoints
from srdistill.core.errors import SRDistillError, first_line
from srdistill.core.safe_load import UnsafeCheckpointError, load_checkpoint
from srdistill_plugin.samplers import build_sampler

from .option_schema import check_basicsr_options

from . import distributed


def sampler_from_dataset_options(dataset, num_replicas: int, rank: int, dataset_enlarge_ratio: int = 1):
    """Drop-in for BasicSR's ``EnlargedSampler(...)`` call: reads ``sampler`` from the dataset's own options."""
    sampler_opt = getattr(dataset, 'opt', {}).get('sampler')
    return build_sampler(sampler_opt, dataset, num_replicas, rank, dataset_enlarge_ratio)


def training_states_newest_first(opt: dict) -> list[Path]:
    """The ``<iter>.state`` files of this experiment's ``training_states`` folder, newest first."""
    folder = Path(opt['path']['training_states'])
    states = [p for p in folder.glob('*.state') if p.stem.isdigit()] if folder.is_dir() else []
    return sorted(states, key=lambda p: int(p.stem), reverse=True)


NETWORK_RECORD = 'network.json'


def network_record(opt: dict) -> dict:
    """What a resume state is only valid for: the scale and the ``network_g`` options."""
    return {'scale': opt.get('scale'), 'network_g': opt.get('network_g')}


def check_resume_network(opt: dict, state_path: str | Path) -> None:
    """A resume state written by another network or scale -> one line (its weights would load into a different
    model, or silently into the same weights at another scale)."""
    record = Path(opt['path']['experiments_root']) / NETWORK_RECORD
    if not record.is_file():
        return
    before, now = json.loads(record.read_text()), json.loads(json.dumps(network_record(opt)))
    for key in ('scale', 'network_g'):
        if before.get(key) != now[key]:
            raise SRDistillError(f'option path.resume_state: {state_path} was written for {key} {before.get(key)!r}, '
                                 f'these options have {now[key]!r} (start a new experiment name instead)')


def write_network_record(opt: dict) -> None:
    """Record the scale and network of this run beside its training states (see :func:`check_resume_network`)."""
    if opt.get('rank', 0) == 0 and opt.get('is_train'):
        atomic_write_text(Path(opt['path']['experiments_root']) / NETWORK_RECORD,
                          json.dumps(network_record(opt), indent=2))


def load_resume_state(opt: dict) -> dict | None:
    """BasicSR's resume-state loading, on whatever device is available.

    With ``--auto_resume`` a state file that cannot be read (a run killed while saving it) is skipped with a
    warning and the next older one is used.
    """
    device = torch.device('cuda', torch.cuda.current_device()) if opt['num_gpu'] else torch.device('cpu')
    explicit = opt['path'].get('resume_state')
    candidates = training_states_newest_first(opt) if opt['auto_resume'] else [explicit] if explicit else []
    for path in candidates:
        try:
            state = load_checkpoint(path, map_location=device)
        except UnsafeCheckpointError as err:
            raise SRDistillError(f'option path.resume_state: {err}') from err
        except (RuntimeError, EOFError, OSError, pickle.UnpicklingError) as err:
            if not opt['auto_resume']:
                raise SRDistillError(f'option path.resume_state: cannot read {path} ({first_line(err)})') from err
            warnings.warn(f'skipping unreadable training state {path}: {first_line(err)}')
            continue
        check_resume_network(opt, path)
        opt['path']['resume_state'] = str(path)
        check_resume(opt, state['iter'])
        return state
    return None


_basicsr_resume_training = BaseModel.resume_training


def optimizer_options(train: dict) -> list[tuple[str, dict]]:
    """The ``train.optim_*`` options in the order they are written (BasicSR builds its optimizers in that order)."""
    return [(name, value) for name, value in train.items() if name.startswith('optim_') and isinstance(value, dict)]


def resume_training(model: BaseModel, resume_state: dict) -> None:
    """BasicSR's ``resume_training``; with ``train.resume_lr: options`` each optimizer then takes the learning rate of
    its ``train.optim_*`` option (its schedulers' base rates too), logged."""
    _basicsr_resume_training(model, resume_state)
    train = model.opt.get('train') or {}
    if train.get('resume_lr', 'state') != 'options':
        return
    named = optimizer_options(train)
    if len(named) != len(model.optimizers):
        raise SRDistillError(f'option train.resume_lr: options needs one train.optim_* option per optimizer '
                             f'({len(model.optimizers)}), got {[name for name, _ in named]}')
    for index, ((name, value), optimizer) in enumerate(zip(named, model.optimizers)):
        before = optimizer.param_groups[0]['lr']
        for group in optimizer.param_groups:
            group['lr'] = group['initial_lr'] = value['lr']
        for scheduler in model.schedulers[index:index + 1]:
            scheduler.base_lrs = [value['lr']] * len(optimizer.param_groups)
        get_root_logger().info(f'train.resume_lr: options: {name} resumes at lr {value["lr"]:.3e} (the state had '
                               f'{before:.3e})')


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


def parse_options_seeded(root_path: str, is_train: bool = True) -> tuple[dict, object]:
    """BasicSR's ``parse_options`` (its training options checked), then the generators seeded with the final
    ``manual_seed`` (+ rank). With no override this re-seeds with the same seed before anything random happens, so
    results do not change."""
    opt, args = parse_options(root_path, is_train)
    if is_train:
        check_train_options(opt)
    set_random_seed(opt['manual_seed'] + opt['rank'])
    return opt, args


@contextmanager
def plugin_train_hooks(built_models: list | None = None, parsed: list | None = None) -> Iterator[None]:
    """Point ``basicsr.train``'s sampler, resume loading, option parsing and model building, BasicSR's ``init_dist``
    and ``BaseModel.model_to_device`` at the plugin's versions, then restore them. Built models are appended to
    ``built_models``, the parsed options to ``parsed``."""
    build_model = basicsr_train.build_model

    def parse_and_keep(root_path, is_train=True):
        opt, args = parse_options_seeded(root_path, is_train)
        if parsed is not None:
            parsed.append(opt)
        return opt, args

    def build_and_keep(opt):
        write_network_record(opt)
        model = build_model(opt)
        if built_models is not None:
            built_models.append(model)
        return model

    hooks = [(basicsr_train, 'EnlargedSampler', sampler_from_dataset_options),
             (basicsr_train, 'load_resume_state', load_resume_state),
             (basicsr_train, 'parse_options', parse_and_keep),
             (basicsr_train, 'build_model', build_and_keep),
             (basicsr_options, 'init_dist', distributed.init_dist),
             (BaseModel, 'model_to_device', distributed.model_to_device),
             (BaseModel, 'resume_training', resume_training)]
    saved = [getattr(owner, name) for owner, name, _ in hooks]
    for owner, name, hook in hooks:
        setattr(owner, name, hook)
    try:
        yield
    finally:
        for (owner, name, _), original in zip(hooks, saved):
            setattr(owner, name, original)


def run_folders(opt: dict) -> list[Path]:
    """The folders BasicSR makes for a training run: the experiment's and its tensorboard log's."""
    return [Path(opt['path']['experiments_root']), Path(opt['root_path']) / 'tb_logger' / opt['name']]


def archive_time(folder: Path) -> float:
    """When BasicSR archived ``folder`` (``<name>_archived_<%Y%m%d_%H%M%S>``), as a timestamp (0 if unnamed so)."""
    try:
        return datetime.strptime(folder.name.rsplit('_archived_', 1)[1], '%Y%m%d_%H%M%S').timestamp()
    except (IndexError, ValueError):
        return 0.


def remove_unused_run_folders(opt: dict, started: float) -> None:
    """After a run that failed before its first checkpoint: remove the folders it made and give back the names of
    the ones BasicSR archived when it made them (``<name>_archived_<time>``), so a failed start leaves nothing. A run
    with a checkpoint keeps everything."""
    experiment = Path(opt['path']['experiments_root'])
    if opt.get('rank', 0) != 0 or not experiment.is_dir() or experiment.stat().st_mtime < started:
        return
    if any(experiment.glob('models/*.pth')) or any(experiment.glob('training_states/*.state')):
        return
    for folder in run_folders(opt):
        if not folder.is_dir() or folder.stat().st_mtime < started:
            continue
        shutil.rmtree(folder)
        archived = [p for p in folder.parent.glob(f'{folder.name}_archived_*') if archive_time(p) >= started]
        if archived:
            max(archived, key=archive_time).rename(folder)


def train_pipeline(root_path: str) -> None:
    """Run BasicSR's ``train_pipeline`` (options from ``sys.argv``: -opt, --launcher, --auto_resume, ...)."""
    models: list = []
    parsed: list = []
    started = time.time() - 1  # folder times have 1 s resolution on some filesystems
    try:
        with plugin_train_hooks(models, parsed), atomic_checkpoints():
            basicsr_train.train_pipeline(root_path)
    except Exception:  # an error, not an interrupt: a killed run keeps its log
        if parsed:
            remove_unused_run_folders(parsed[-1], started)
        raise
    if dist.is_available() and dist.is_initialized():
        if models:
            spread = distributed.rank_weight_spread(models[-1].get_bare_model(models[-1].net_g))
            get_root_logger().info(f'{dist.get_world_size()} ranks, {dist.get_backend()}: largest difference of '
                                   f'any rank\'s net_g weights from rank 0\'s: {spread:.3g}')
        dist.destroy_process_group()
