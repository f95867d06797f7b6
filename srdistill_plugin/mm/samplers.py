"""MMEngine data sampler: every pseudo-class drawn equally often (the same core as the BasicSR sampler)."""
from __future__ import annotations

import math

from mmagic.registry import DATA_SAMPLERS
from mmengine.dist import get_dist_info, sync_random_seed
from torch.utils.data import Dataset, Sampler

from srdistill_plugin.core.class_balance import class_balanced_indices, class_members


@DATA_SAMPLERS.register_module(name='ClassBalancedSampler')
class MMClassBalancedSampler(Sampler):
    """MMEngine-style (``dataset, seed``; rank and world size from the process group; ``set_epoch`` by
    ``DistSamplerSeedHook``). An epoch has ``ceil(len(dataset) / world_size)`` indices per rank."""

    def __init__(self, dataset: Dataset, seed: int | None = None):
        self.members = class_members(getattr(dataset, 'class_ids', None))
        self.rank, self.world_size = get_dist_info()
        self.seed = sync_random_seed() if seed is None else seed
        self.num_samples = math.ceil(len(dataset) / self.world_size)
        self.total_size = self.num_samples * self.world_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        indices = class_balanced_indices(self.members, self.total_size, self.seed + self.epoch)
        return iter(indices[self.rank:self.total_size:self.world_size])

    def __len__(self) -> int:
        return self.num_samples
