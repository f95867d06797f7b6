"""The distillation's options that would fail late or silently, checked when a run starts (before any stage)."""
from __future__ import annotations

from numbers import Integral, Real

import torch

from srdistill_plugin.core.errors import SRDistillError
from srdistill_plugin.core.precision import check_amp

SYNTH_MODES = ('sdedit', 'noise', 'selected_real', 'selected_noise', 'random_real', 'coverage')


def _number(value) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool)


def _integer(section: dict, key: str, option: str, default: int, low: int = 1, high: int | None = None) -> int:
    value = section.get(key, default)
    if not isinstance(value, Integral) or isinstance(value, bool) or value < low or (high is not None and value > high):
        allowed = f'an integer in [{low}, {high}]' if high is not None else f'an integer >= {low}'
        raise SRDistillError(f'option {option}: expected {allowed}, got {value!r}')
    return int(value)


def synthesis_mode(syn: dict) -> str:
    mode = syn.get('mode', 'sdedit')
    if mode not in SYNTH_MODES:
        raise SRDistillError(f'option synthesize.mode: expected one of {SYNTH_MODES}, got {mode!r}')
    return mode


def noise_sigma(syn: dict) -> float:
    """``synthesize.noise_sigma``: the std of the Gaussian noise of ``selected_noise`` (8-bit levels)."""
    sigma = syn.get('noise_sigma', 0)
    if not _number(sigma) or sigma < 0:
        raise SRDistillError(f'option synthesize.noise_sigma: expected a number >= 0 (8-bit levels), got {sigma!r}')
    return float(sigma)


def strength(syn: dict) -> float:
    """``synthesize.strength``: the fraction of the diffusion time SDEdit noises a seed patch to, in (0, 1]."""
    value = syn.get('strength', 0.3)
    if not _number(value) or not 0 < value <= 1:
        raise SRDistillError(f'option synthesize.strength: expected a number in (0, 1] (the fraction of the '
                             f'diffusion time a seed patch is noised to), got {value!r}')
    return float(value)


def synthesis_device(opt: dict) -> torch.device:
    """``num_gpu`` as BasicSR reads it: 0 runs on the CPU, ``auto`` or >= 1 on the first CUDA device."""
    num_gpu = opt.get('num_gpu', 0)
    if num_gpu == 'auto':
        return torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    if not isinstance(num_gpu, Integral) or isinstance(num_gpu, bool) or num_gpu < 0:
        raise SRDistillError(f"option num_gpu: expected an integer >= 0 or 'auto', got {num_gpu!r}")
    if num_gpu and not torch.cuda.is_available():
        raise SRDistillError(f'option num_gpu: {num_gpu} GPU(s) asked for, but torch sees no CUDA device '
                             '(set num_gpu: 0 to run on the CPU)')
    return torch.device('cuda' if num_gpu else 'cpu')


def check_distill_options(opt: dict) -> None:
    """Every synthesis and fine-tuning option that is read after hours of work, checked now."""
    syn = opt.get('synthesize') or {}
    synthesis_mode(syn)
    noise_sigma(syn)
    strength(syn)
    _integer(syn, 'steps', 'synthesize.steps', 10)
    _integer(syn, 'batch', 'synthesize.batch', 16)
    check_amp(syn.get('amp'), 'synthesize.amp')
    synthesis_device(opt)
    ft = opt.get('finetune') or {}
    timesteps = _integer(ft.get('diffusion') or {}, 'num_train_timesteps', 'finetune.diffusion.num_train_timesteps',
                         1000)
    train = ft.get('train') or {}
    _integer(train.get('diffusion') or {}, 'max_timestep', 'finetune.train.diffusion.max_timestep', timesteps,
             high=timesteps)
    check_amp(train.get('amp'), 'finetune.train.amp')
