"""The schema of a BasicSR train/test options file (MZSR's and the distillation's fine-tuning included), checked once
the options are parsed and before anything is built.

Checked: BasicSR's documented keys and the plugin's own (their kinds and ranges), every ``type`` against its registry,
and the keys of networks, losses, optimizers, schedulers and samplers against the signature of what they build.
Unknown keys are errors for the model types this schema documents (``STRICT_MODELS``); a user's own model or dataset
type may read keys the plugin does not know, so those pass (the keys the schema knows are still checked).
"""
from __future__ import annotations

import dataclasses
import difflib
import inspect

import torch
from basicsr.utils.registry import ARCH_REGISTRY, DATASET_REGISTRY, LOSS_REGISTRY, METRIC_REGISTRY, MODEL_REGISTRY

from srdistill.core.errors import SRDistillError
from srdistill.core.option_schema import (ANY, COUNT, FLAG, FRACTION, INTEGER, LIST, NON_NEGATIVE, NON_NEGATIVE_INT,
                                          NUMBER, OPEN, POSITIVE, TEXT, Section, Value, check_options)
from srdistill.core.kernels import EVAL_KERNELS
from srdistill.core.zssr import ZSSRConfig
from srdistill_plugin.samplers import SAMPLER_REGISTRY

STRICT_MODELS = ('SRModel', 'SwinIRModel', 'MZSRModel', 'DiffusionDistillModel', 'KernelPredictorModel')
OPTIMIZERS = {name: getattr(torch.optim, name) for name in ('Adam', 'AdamW', 'Adamax', 'SGD', 'ASGD', 'RMSprop',
                                                             'Rprop')}
SCHEDULERS = ('MultiStepLR', 'MultiStepRestartLR', 'CosineAnnealingRestartLR')
DOWNSAMPLE = Value(choices=('direct', 'bicubic'))
KERNEL_SOURCE = {'kernel': TEXT, 'kernel_file': TEXT, 'kernel_dir': TEXT}

LOADER = {'name': TEXT, 'type': TEXT, 'phase': TEXT, 'scale': COUNT, 'io_backend': Section(
              {'type': Value(choices=('disk', 'lmdb', 'memcached', 'petrel')), 'db_paths': ANY, 'client_keys': ANY},
              open=True),
          'use_shuffle': FLAG, 'num_worker_per_gpu': NON_NEGATIVE_INT, 'batch_size_per_gpu': COUNT,
          'dataset_enlarge_ratio': COUNT, 'prefetch_mode': Value(choices=(None, 'cpu', 'cuda')),
          'pin_memory': FLAG, 'persistent_workers': FLAG, 'num_prefetch_queue': COUNT,
          'sampler': Section({'type': TEXT}, open=True), 'made_by': TEXT}
FLIPS = {'use_hflip': FLAG, 'use_rot': FLAG}
NORMALISE = {'mean': LIST, 'std': LIST, 'color': Value(choices=('y', ))}
DATASET_KEYS = {
    'PairedImageDataset': {'dataroot_gt': TEXT, 'dataroot_lq': TEXT, 'meta_info_file': TEXT, 'filename_tmpl': TEXT,
                           'gt_size': COUNT, **FLIPS, **NORMALISE},
    'SingleImageDataset': {'dataroot_lq': TEXT, 'meta_info_file': TEXT, **NORMALISE},
    'HROnlyDataset': {'dataroot_gt': TEXT, 'meta_info_file': TEXT, 'class_info': TEXT, 'gt_size': COUNT, **FLIPS,
                      'rgb_permute': FRACTION, 'mixup': Section({'prob': FRACTION, 'alpha': POSITIVE}),
                      'min_log_gradient': NUMBER},
    'MZSRTaskDataset': {'dataroot_gt': TEXT, 'gt_size': COUNT, 'num_patches': COUNT,
                        'support': Value(choices=('lr_hr', 'son_lr')), 'downsample': DOWNSAMPLE,
                        'kernel_size': COUNT, 'min_variance': POSITIVE, 'tasks_per_epoch': COUNT, **FLIPS},
    'KernelDegradedDataset': {'dataroot_gt': TEXT, 'downsample': DOWNSAMPLE, 'quantize_lr': FLAG, **KERNEL_SOURCE,
                              'kernel': Value(choices=(None, *EVAL_KERNELS))},
    'ZeroShotLRDataset': {'dataroot_lq': TEXT, 'dataroot_gt': TEXT, 'filename_tmpl': TEXT, 'downsample': DOWNSAMPLE,
                          **KERNEL_SOURCE},
    'SelectedPatchDataset': {'stage_dir': TEXT, **FLIPS},
    'BlurEstimationDataset': {'dataroot_gt': TEXT, 'downsample': DOWNSAMPLE, 'lq_size': COUNT, 'kernel_size': COUNT,
                              'broad_share': FRACTION, 'variance_range': LIST, 'sharpen': LIST,
                              'noise_prob': FRACTION, 'noise_max_sigma': NON_NEGATIVE, 'jpeg_prob': FRACTION,
                              'jpeg_quality': LIST, 'kernels_per_image': COUNT, **FLIPS},
}

ADAPTATION = {'mzsr': {'mode': TEXT, 'steps': NON_NEGATIVE_INT, 'step_sizes': LIST, 'schedule': TEXT},
              'zssr': {'mode': TEXT, 'network': OPEN,
                       **{f.name: ANY for f in dataclasses.fields(ZSSRConfig) if f.name != 'history'}}}
META = Section({'inner_lr': POSITIVE, 'inner_steps': COUNT, 'first_order': FLAG,
                'loss_weights': Value(choices=('annealed', 'uniform')), 'anneal_iters': POSITIVE})
PATH = Section({'resume_state': TEXT, 'weights_made_by': TEXT, 'experiments_root': TEXT, 'models': TEXT,
                'training_states': TEXT, 'log': TEXT, 'visualization': TEXT, 'results_root': TEXT, 'root': TEXT},
               patterns=(('pretrain_network_*', TEXT), ('param_key_*', TEXT), ('strict_load_*', FLAG)))
LOGGER = Section({'print_freq': COUNT, 'save_checkpoint_freq': Value((float, ), low=1), 'use_tb_logger': FLAG,
                  'wandb': Section({'project': TEXT, 'resume_id': TEXT})})
DIST_PARAMS = Section({'backend': Value(choices=(None, 'nccl', 'gloo', 'mpi')), 'port': NON_NEGATIVE_INT})
TOP = {'name': Value((str, ), required=True), 'model_type': TEXT, 'scale': COUNT,
       'num_gpu': Value((int, str)), 'manual_seed': INTEGER, 'find_unused_parameters': FLAG,
       'use_static_graph': FLAG, 'diffusion': OPEN, 'path': PATH, 'logger': LOGGER, 'dist_params': DIST_PARAMS,
       # set by BasicSR's parse_options
       'is_train': FLAG, 'dist': FLAG, 'rank': INTEGER, 'world_size': INTEGER, 'auto_resume': FLAG, 'root_path': TEXT}
PARAM_KEYS = ('params', 'params_ema')


def signature_section(target, skip: tuple[str, ...] = ()) -> Section:
    """The keyword options a class or function takes. A user's own type that takes ``**kwargs`` may read any key;
    BasicSR's and the plugin's (SwinIR, the metrics) swallow unknown keys in ``**kwargs`` unused, so theirs are
    closed."""
    parameters = inspect.signature(target).parameters.values()
    keys = {p.name: ANY for p in parameters if p.name not in ('self', *skip)
            and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}
    ours = target.__module__.startswith(('basicsr.', 'srdistill', 'torch.'))
    return Section({'type': TEXT, **keys}, open=not ours and any(p.kind == p.VAR_KEYWORD for p in parameters))


def registered(registry, node, option: str, what: str, type_key: str = 'type'):
    """The class or function ``node[type_key]`` names in ``registry`` (``option``: where ``node`` is); an unknown
    name -> one line with the nearest registered one."""
    name = node.get(type_key) if isinstance(node, dict) else None
    option = f'{option}.{type_key}' if option else type_key
    if not isinstance(name, str):
        raise SRDistillError(f'option {option}: expected the name of a registered {what}, got {name!r}')
    if name not in registry:
        names = sorted(n for n, _ in registry)
        near = difflib.get_close_matches(name, names, n=1)
        hint = f'did you mean {near[0]!r}?' if near else f'registered: {", ".join(names)}'
        raise SRDistillError(f'option {option}: {name!r} is not a registered {what} ({hint})')
    return registry.get(name)


def optimizer_section(node, option: str) -> Section:
    name = node.get('type') if isinstance(node, dict) else None
    if name not in OPTIMIZERS:
        raise SRDistillError(f'option {option}.type: expected one of {list(OPTIMIZERS)} (BasicSR\'s optimizers), got '
                             f'{name!r}')
    section = signature_section(OPTIMIZERS[name], skip=('params', ))
    return dataclasses.replace(section, keys={**section.keys, 'lr': POSITIVE, 'weight_decay': NON_NEGATIVE})


def scheduler_section(node, option: str) -> Section:
    from basicsr.models import lr_scheduler

    name = node.get('type') if isinstance(node, dict) else None
    if name not in SCHEDULERS:
        raise SRDistillError(f'option {option}.type: expected one of {list(SCHEDULERS)} (BasicSR\'s schedulers), got '
                             f'{name!r}')
    target = lr_scheduler.CosineAnnealingRestartLR if name.startswith('Cosine') else lr_scheduler.MultiStepRestartLR
    return signature_section(target, skip=('optimizer', 'last_epoch'))


def train_section(train: dict, strict: bool) -> Section:
    keys = {'total_iter': COUNT, 'warmup_iter': Value((int, ), low=-1), 'ema_decay': FRACTION,
            'resume_lr': Value(choices=('state', 'options')), 'meta': META, 'amp': ANY,
            'class_dropout_prob': FRACTION, 'diffusion': OPEN, 'net_d_iters': COUNT, 'net_d_init_iters': INTEGER}
    for key, value in train.items():
        if key.startswith('optim_'):
            keys[key] = optimizer_section(value, f'train.{key}')
        elif key == 'scheduler':
            keys[key] = scheduler_section(value, 'train.scheduler')
        elif key.endswith('_opt') and isinstance(value, dict):
            keys[key] = signature_section(registered(LOSS_REGISTRY, value, f'train.{key}', 'loss'))
    return Section(keys, open=not strict)


def val_section(val: dict, strict: bool) -> Section:
    metrics = {}
    for name, metric in (val.get('metrics') or {}).items():
        function = registered(METRIC_REGISTRY, metric, f'val.metrics.{name}', 'metric')
        section = signature_section(function, skip=('img', 'img2'))
        metrics[name] = dataclasses.replace(section, keys={**section.keys, 'better': Value(choices=('higher',
                                                                                                     'lower'))})
    mode = (val.get('adaptation') or {}).get('mode', 'mzsr')
    if mode not in ADAPTATION:
        raise SRDistillError(f'option val.adaptation.mode: expected one of {list(ADAPTATION)}, got {mode!r}')
    return Section({'val_freq': POSITIVE, 'save_img': FLAG, 'suffix': TEXT, 'pbar': FLAG, 'default_kernel': LIST,
                    'metrics': Section(metrics), 'adaptation': Section(ADAPTATION[mode])}, open=not strict)


def dataset_section(dataset, option: str) -> Section:
    cls = registered(DATASET_REGISTRY, dataset, option, 'dataset')
    sampler = (dataset.get('sampler') or {}) if isinstance(dataset, dict) else {}
    loader = dict(LOADER)
    if sampler:
        target = registered(SAMPLER_REGISTRY, sampler, f'{option}.sampler', 'sampler')
        loader['sampler'] = signature_section(target, skip=('dataset', 'num_replicas', 'rank', 'ratio'))
    own = DATASET_KEYS.get(cls.__name__)
    return Section({**loader, **(own or {})}, open=own is None)


def basicsr_schema(opt: dict) -> Section:
    """The schema of ``opt`` (parsed BasicSR options); strict about unknown keys for the documented model types."""
    model_type = opt.get('model_type', 'SRModel')
    registered(MODEL_REGISTRY, {'model_type': model_type}, '', 'model', 'model_type')
    strict = model_type in STRICT_MODELS
    keys = dict(TOP)
    datasets = opt.get('datasets') or {}
    if not isinstance(datasets, dict):
        raise SRDistillError(f'option datasets: expected a mapping of phase -> dataset options, got {datasets!r}')
    keys['datasets'] = Section({phase: dataset_section(d, f'datasets.{phase}') for phase, d in datasets.items()})
    for key, value in opt.items():
        if key.startswith('network_'):
            keys[key] = signature_section(registered(ARCH_REGISTRY, value, key, 'arch'))
    keys['train'] = train_section(opt.get('train') or {}, strict)
    keys['val'] = val_section(opt.get('val') or {}, strict)
    return Section(keys, open=not strict)


def check_basicsr_options(opt: dict) -> None:
    """Check parsed BasicSR options against :func:`basicsr_schema`, then what a schema cannot say: a misspelled
    ``path.param_key_*`` (BasicSR falls back to ``params`` without a word)."""
    check_options(basicsr_schema(opt), opt)
    for key, value in (opt.get('path') or {}).items():
        if key.startswith('param_key_') and value not in PARAM_KEYS:
            near = difflib.get_close_matches(str(value), PARAM_KEYS, n=1, cutoff=0.7)
            if near:
                raise SRDistillError(f'option path.{key}: {value!r} is not a key BasicSR writes (did you mean '
                                     f'{near[0]!r}?)')
