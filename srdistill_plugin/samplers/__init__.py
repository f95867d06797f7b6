"""The plugin's sampler registry: ``datasets.train.sampler: {type: ..., ...}`` picks the training sampler.

BasicSR hard-codes its ``EnlargedSampler``; it stays the default here and is registered under its own name.
"""
from __future__ import annotations

from copy import deepcopy

from basicsr.data.data_sampler import EnlargedSampler
from torch.utils.data import Dataset, Sampler

from srdistill.core.errors import SRDistillError

from .class_balanced_sampler import ClassBalancedSampler
from .registry import SAMPLER_REGISTRY

DEFAULT_SAMPLER = 'EnlargedSampler'


def build_sampler(sampler_opt: dict | None, dataset: Dataset, num_replicas: int, rank: int,
                  dataset_enlarge_ratio: int = 1) -> Sampler:
    """Build a registered sampler; every sampler takes ``(dataset, num_replicas, rank, ratio, **options)``."""
    sampler_opt = deepcopy(sampler_opt) if sampler_opt else {'type': DEFAULT_SAMPLER}
    if not isinstance(sampler_opt, dict) or 'type' not in sampler_opt:
        raise SRDistillError(f'option datasets.train.sampler: expected a dict with a type, got {sampler_opt!r}')
    sampler_type = sampler_opt.pop('type')
    if sampler_type not in SAMPLER_REGISTRY:
        raise SRDistillError(f'option datasets.train.sampler.type: unknown sampler {sampler_type!r}; '
                             f'registered: {sorted(name for name, _ in SAMPLER_REGISTRY)}')
    return SAMPLER_REGISTRY.get(sampler_type)(dataset, num_replicas, rank, dataset_enlarge_ratio, **sampler_opt)


__all__ = ['SAMPLER_REGISTRY', 'build_sampler', 'ClassBalancedSampler', 'EnlargedSampler']
