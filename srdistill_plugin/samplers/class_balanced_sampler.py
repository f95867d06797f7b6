"""A DDP-aware sampler that draws every pseudo-class equally often."""
from __future__ import annotations

import math

from torch.utils.data import Dataset, Sampler

from srdistill.core.class_balance import class_balanced_indices, class_members

from .registry import SAMPLER_REGISTRY


@SAMPLER_REGISTRY.register()
class ClassBalancedSampler(Sampler):
    """Class first (uniformly), then an image of that class (uniformly), with replacement.

    The dataset must expose ``class_ids`` (one int per item). Each epoch draws
    ``ceil(len(dataset) * ratio / num_replicas)`` indices per rank -- the same epoch length as BasicSR's
    ``EnlargedSampler`` -- from one stream shared by all ranks (seeded by ``seed + epoch``; call ``set_epoch``
    as BasicSR's train loop does), each rank taking its own stride.
    """

    def __init__(self, dataset: Dataset, num_replicas: int, rank: int, ratio: int = 1, seed: int = 0):
        class_ids = getattr(dataset, 'class_ids', None)
        self.members = class_members(class_ids if class_ids is None or len(class_ids) == len(dataset) else None)
        self.num_replicas, self.rank, self.seed = num_replicas, rank, seed
        self.num_samples = math.ceil(len(dataset) * ratio / num_replicas)
        self.total_size = self.num_samples * num_replicas
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        indices = class_balanced_indices(self.members, self.total_size, self.seed + self.epoch)
        return iter(indices[self.rank:self.total_size:self.num_replicas])

    def __len__(self) -> int:
        return self.num_samples
