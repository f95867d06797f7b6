"""A DDP-aware sampler that draws every pseudo-class equally often."""
from __future__ import annotations

import math

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from srdistill_plugin.core.errors import SRDistillError

from .registry import SAMPLER_REGISTRY


@SAMPLER_REGISTRY.register()
class ClassBalancedSampler(Sampler):
    """Class first (uniformly), then an image of that class (uniformly), with replacement.

    The dataset must expose ``class_ids`` (one int per item). Each epoch draws
    ``ceil(len(dataset) * ratio / num_replicas)`` indices per rank -- the same epoch length as BasicSR's
    ``EnlargedSampler`` -- from one permutation shared by all ranks (seeded by ``seed + epoch``; call
    ``set_epoch`` as BasicSR's train loop does), each rank taking its own stride.
    """

    def __init__(self, dataset: Dataset, num_replicas: int, rank: int, ratio: int = 1, seed: int = 0):
        class_ids = getattr(dataset, 'class_ids', None)
        if class_ids is None or len(class_ids) != len(dataset):
            raise SRDistillError(f'ClassBalancedSampler: dataset {type(dataset).__name__} has no class_ids '
                                 '(give the dataset a class_info file)')
        self.class_ids = np.asarray(class_ids, dtype=np.int64)
        self.classes = np.unique(self.class_ids)
        self.members = [np.flatnonzero(self.class_ids == c) for c in self.classes]
        self.num_replicas, self.rank, self.seed = num_replicas, rank, seed
        self.num_samples = math.ceil(len(dataset) * ratio / num_replicas)
        self.total_size = self.num_samples * num_replicas
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed + self.epoch)
        picked_classes = torch.randint(len(self.classes), (self.total_size,), generator=g).numpy()
        offsets = torch.rand(self.total_size, generator=g).numpy()
        indices = [int(self.members[c][int(o * len(self.members[c]))]) for c, o in zip(picked_classes, offsets)]
        return iter(indices[self.rank:self.total_size:self.num_replicas])

    def __len__(self) -> int:
        return self.num_samples
