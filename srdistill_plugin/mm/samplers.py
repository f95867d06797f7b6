"""MMEngine data sampler: every pseudo-class drawn equally often (the BasicSR sampler with MMEngine's signature)."""
from __future__ import annotations

from mmagic.registry import DATA_SAMPLERS
from mmengine.dist import get_dist_info, sync_random_seed
from torch.utils.data import Dataset

from srdistill_plugin.samplers.class_balanced_sampler import ClassBalancedSampler


@DATA_SAMPLERS.register_module(name='ClassBalancedSampler')
class MMClassBalancedSampler(ClassBalancedSampler):
    """MMEngine-style arguments (``dataset, seed``); rank and world size come from the process group and
    ``set_epoch`` from ``DistSamplerSeedHook``. An epoch has ``ceil(len(dataset) / world_size)`` indices per rank."""

    def __init__(self, dataset: Dataset, seed: int | None = None):
        rank, world_size = get_dist_info()
        super().__init__(dataset, world_size, rank, 1, sync_random_seed() if seed is None else seed)
