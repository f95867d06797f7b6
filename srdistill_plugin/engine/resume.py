"""Resuming a BasicSR training: the newest readable state (on whatever device this machine has, from any working
folder), only for the network and scale it was written for, optionally at the options' learning rates."""
from __future__ import annotations

import json
import pickle
import warnings
from pathlib import Path

import torch
from basicsr.models.base_model import BaseModel
from basicsr.utils import check_resume, get_root_logger

from srdistill.core.atomic_io import atomic_write_text
from srdistill.core.errors import SRDistillError, first_line
from srdistill.core.safe_load import UnsafeCheckpointError, load_checkpoint


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


def optimizer_options(train: dict) -> list[tuple[str, dict]]:
    """The ``train.optim_*`` options in the order they are written (BasicSR builds its optimizers in that order)."""
    return [(name, value) for name, value in train.items() if name.startswith('optim_') and isinstance(value, dict)]


def resume_training(model: BaseModel, resume_state: dict) -> None:
    """``model.resume_training`` (BasicSR's); with ``train.resume_lr: options`` each optimizer then takes the learning
    rate of its ``train.optim_*`` option (its schedulers' base rates too), logged."""
    model.resume_training(resume_state)
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
