"""Index streams that draw every class equally often (shared by the BasicSR and MMEngine samplers)."""
from __future__ import annotations

import numpy as np
import torch

from .errors import SRDistillError


def class_members(class_ids) -> list[np.ndarray]:
    """Indices of each class present, in class order; a clear error if ``class_ids`` is missing."""
    if class_ids is None:
        raise SRDistillError('ClassBalancedSampler: the dataset has no class_ids (give it a class_info file)')
    ids = np.asarray(class_ids, dtype=np.int64)
    return [np.flatnonzero(ids == c) for c in np.unique(ids)]


def class_balanced_indices(members: list[np.ndarray], total: int, seed: int) -> list[int]:
    """``total`` indices: a class uniformly at random, then a member of it uniformly (with replacement)."""
    g = torch.Generator().manual_seed(seed)
    classes = torch.randint(len(members), (total, ), generator=g).numpy()
    offsets = torch.rand(total, generator=g).numpy()
    return [int(members[c][int(o * len(members[c]))]) for c, o in zip(classes, offsets)]
