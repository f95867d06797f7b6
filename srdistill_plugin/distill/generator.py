"""The distillation's generator: the pretrained models it starts from, the BasicSR options of its fine-tuning (the
``finetune`` stage) and the fine-tuned network loaded for sampling."""
from __future__ import annotations

import copy
from pathlib import Path

import torch
import yaml
from basicsr.archs import build_network
from diffusers import DDIMScheduler, DDPMScheduler

from srdistill.core.errors import SRDistillError
from srdistill.core.hub import diffusers_config
from srdistill.core.safe_load import load_checkpoint
from srdistill_plugin.engine.option_schema import check_basicsr_options
from srdistill_plugin.models.diffusion_distill_model import schedule_options


def check_model_folders(opt: dict, root: Path) -> None:
    """The pretrained models named in ``finetune.network_g`` must be local diffusers folders or hub ids (their
    configs are read now, from the hub's cache when offline, so a missing model stops the run at start)."""
    network = (opt.get('finetune') or {}).get('network_g') or {}
    configs = {}
    for key in ('vae_dir', 'decode_vae_dir', 'denoiser_dir'):
        if network.get(key):
            local = root / network[key]
            configs[key] = diffusers_config(str(local) if local.exists() else network[key],
                                            f'finetune.network_g.{key}')
    denoiser = configs.get('denoiser_dir', {}).get('_class_name')
    if network.get('difffit') and denoiser != 'Transformer2DModel':
        raise SRDistillError(f'option finetune.network_g.difffit: DiffFit fine-tunes a DiT (transformer blocks '
                             f'with scales); the denoiser is {denoiser or network.get("type", "the pixel UNet")}')


def extends_finetune(ours: dict, done_with: dict | None) -> bool:
    """Whether ``done_with`` (the options a finished finetune stage ran with) differs from ``ours`` only by a
    larger ``finetune.train.total_iter``: then the fine-tuning continues from its last checkpoint."""
    if not done_with:
        return False
    theirs = copy.deepcopy(done_with)
    try:
        old_iter, new_iter = (int(o['finetune']['train']['total_iter']) for o in (theirs, ours))
    except (KeyError, TypeError, ValueError):
        return False
    theirs['finetune']['train']['total_iter'] = ours['finetune']['train']['total_iter']
    return new_iter > old_iter and theirs == ours


def finetune_processes(opt: dict) -> int:
    """``finetune.num_processes`` (1): more starts the BasicSR run through torchrun (one process per GPU, or CPU
    processes with gloo)."""
    value = (opt.get('finetune') or {}).get('num_processes', 1)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise SRDistillError(f'option finetune.num_processes: expected a positive integer, got {value!r}')
    return value


def finetune_options(opt: dict, stage_dir: Path, exp_dir: Path, num_classes: int, patch: int) -> dict:
    """The BasicSR options of the fine-tuning: the ``finetune`` section over the defaults, training on the selected
    patches of ``stage_dir`` with ``num_classes`` pseudo-classes of ``patch`` pixels."""
    ft = copy.deepcopy(opt.get('finetune', {}))
    ft.pop('num_processes', None)
    options = {'name': f'{opt["name"]}_finetune', 'model_type': 'DiffusionDistillModel',
               'num_gpu': opt.get('num_gpu', 0), 'manual_seed': int(opt.get('manual_seed', 0)),
               'diffusion': ft.pop('diffusion', {}),
               'datasets': {'train': {'name': 'selected_patches', 'type': 'SelectedPatchDataset',
                                      'stage_dir': str(stage_dir), 'num_worker_per_gpu': 0,
                                      'prefetch_mode': None, 'dataset_enlarge_ratio': 1,
                                      **ft.pop('dataset', {'batch_size_per_gpu': 16})}},
               'network_g': {'type': 'ClassConditionalUNet', 'sample_size': patch,
                             'num_classes': num_classes, **ft.pop('network_g', {})},
               'path': {'experiments_root': str(exp_dir), 'pretrain_network_g': None,
                        'resume_state': None, **ft.pop('path', {})},
               'logger': {'print_freq': 50, 'save_checkpoint_freq': 200, 'use_tb_logger': True,
                          'wandb': {'project': None}, **ft.pop('logger', {})}}
    options['train'] = ft.pop('train', None)
    if ft:
        raise SRDistillError(f'option finetune: unknown keys {sorted(ft)}')
    return options


def check_finetune_options(options: dict) -> None:
    """The fine-tuning's BasicSR options (``finetune_options``), checked at start."""
    if not isinstance(options['train'], dict):
        raise SRDistillError(f'option finetune.train: expected the BasicSR train options of the fine-tuning '
                             f'(optim_g, scheduler, total_iter, ...), got {options["train"]!r}')
    try:
        check_basicsr_options(options)
    except SRDistillError as err:
        raise SRDistillError(f'finetune (the BasicSR options of the fine-tuning): {err}') from err


def load_generator(finetuned: dict, sampler: str, device: torch.device):
    """``(network, scheduler)`` of a finished ``finetune`` stage (its manifest ``finetuned``): the weights (EMA when
    kept) on ``device``, and a DDIM or DDPM (``sampler``) scheduler with the training's noise schedule."""
    checkpoint = load_checkpoint(finetuned['checkpoint'])
    ft_opt = yaml.safe_load(Path(finetuned['options']).read_text())
    net = build_network(ft_opt['network_g'])
    net.load_state_dict(checkpoint.get('params_ema', checkpoint['params']))
    net.to(device)
    latent = hasattr(net, 'encode')  # latents are not bounded to [-1, 1]
    scheduler_class = DDPMScheduler if sampler == 'ddpm' else DDIMScheduler
    scheduler = scheduler_class(**schedule_options(ft_opt.get('diffusion', {})), clip_sample=not latent)
    return net.eval(), scheduler
