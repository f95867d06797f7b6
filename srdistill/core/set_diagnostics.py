"""Coverage-aware selection and the diagnostics of a distilled set, in a feature space of patches.

* ``k_center_greedy``: pick patches that cover the candidates (each new pick is the candidate farthest from all
  picks so far), starting from the most informative one;
* ``coverage``: mean distance from every reference (pool) feature to its nearest kept feature (lower = covers more);
* ``diversity``: mean pairwise distance among the kept features (higher = more diverse);
* ``gradient_energy``: mean Sobel gradient magnitude of a patch (the selection's notion of detail).
"""
from __future__ import annotations

import cv2
import numpy as np


def pairwise_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Euclidean distances between the rows of ``a`` (n x d) and ``b`` (m x d)."""
    squared = (a * a).sum(1)[:, None] + (b * b).sum(1)[None] - 2 * a @ b.T
    return np.sqrt(np.maximum(squared, 0))


def k_center_greedy(features: np.ndarray, count: int) -> list[int]:
    """``count`` row indices of ``features`` chosen by greedy k-center, the first being row 0 (callers order rows
    most informative first). Asking for more than there are rows repeats the order from the start."""
    if len(features) == 0 or count <= 0:
        return []
    picks = [0]
    nearest = pairwise_distances(features, features[:1])[:, 0]
    while len(picks) < min(count, len(features)):
        nxt = int(np.argmax(nearest))
        picks.append(nxt)
        nearest = np.minimum(nearest, pairwise_distances(features, features[nxt:nxt + 1])[:, 0])
    return [picks[i % len(picks)] for i in range(count)]


def coverage(reference: np.ndarray, kept: np.ndarray, chunk: int = 4096) -> float:
    """Mean distance from each reference feature to its nearest kept feature."""
    nearest = [pairwise_distances(reference[i:i + chunk], kept).min(1) for i in range(0, len(reference), chunk)]
    return float(np.concatenate(nearest).mean())


def diversity(kept: np.ndarray) -> float:
    """Mean distance between distinct kept features (0 for fewer than two)."""
    if len(kept) < 2:
        return 0.
    d = pairwise_distances(kept, kept)
    return float(d.sum() / (len(kept) * (len(kept) - 1)))


def gradient_energy(patch: np.ndarray) -> float:
    """Mean Sobel gradient magnitude of the grey version of a float BGR [0, 1] patch."""
    grey = cv2.cvtColor(patch.astype(np.float32), cv2.COLOR_BGR2GRAY)
    gx, gy = cv2.Sobel(grey, cv2.CV_32F, 1, 0), cv2.Sobel(grey, cv2.CV_32F, 0, 1)
    return float(np.sqrt(gx ** 2 + gy ** 2).mean())
