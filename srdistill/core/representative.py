"""Representative selection of pool patches: an SR feature space of every grid patch, and kernel herding.

``sr_patch_features`` describes each ``patch_size`` window of an image (at ``stride``) by what an SR network meets
in it: the energy of the bicubic round-trip residual at the SR scale, three difference-of-Gaussians bands, the
gradient energy with its dominant orientation weighted by coherence (the patch's structure tensor), and colour
(mean Lab, std of L). Everything is a box mean of a per-pixel map, so one image costs a few filters.

``kernel_herding`` picks rows whose empirical distribution matches a reference sample's (greedy minimisation of the
maximum mean discrepancy under a Gaussian kernel): each pick maximises its mean similarity to the reference minus
its mean similarity to the picks so far.
"""
from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from .degradations import bicubic_downscale, bicubic_upscale, mod_crop
from .patch_selection import box_means
from .set_diagnostics import pairwise_distances

SR_FEATURE_NAMES = ('log bicubic residual', 'log DoG band 0-1', 'log DoG band 1-2', 'log DoG band 2-4',
                    'log gradient energy', 'orientation cos2', 'orientation sin2', 'L mean', 'a mean', 'b mean',
                    'L std')
EPS = 1e-6


def sr_patch_features(img: np.ndarray, patch_size: int, stride: int, scale: int
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(features n x 11, ys, xs)`` of every ``patch_size`` window of a float BGR [0, 1] image (the same grid as
    ``patch_selection.score_patches``)."""
    img = mod_crop(img, scale).astype(np.float32)
    grey = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
    rebuilt = cv2.cvtColor(bicubic_upscale(bicubic_downscale(img, scale, False), scale).astype(np.float32),
                           cv2.COLOR_BGR2GRAY)
    blurred = [grey] + [cv2.GaussianBlur(grey, (0, 0), sigma) for sigma in (1, 2, 4)]
    gx, gy = cv2.Sobel(grey, cv2.CV_32F, 1, 0), cv2.Sobel(grey, cv2.CV_32F, 0, 1)
    lab = cv2.cvtColor(img, cv2.COLOR_BGR2Lab) / np.float32(100)
    maps = [(grey - rebuilt) ** 2] + [(fine - coarse) ** 2 for fine, coarse in zip(blurred, blurred[1:])]
    maps += [gx * gx, gy * gy, gx * gy, lab[..., 0], lab[..., 1], lab[..., 2], lab[..., 0] ** 2]
    means = []
    for m in maps:
        values, ys, xs = box_means(m, patch_size, stride)
        means.append(values.ravel())
    residual, *bands, gxx, gyy, gxy, lum, a, b, lum2 = means
    energy = gxx + gyy + EPS
    features = np.stack([np.log(residual + EPS), *(np.log(band + EPS) for band in bands), np.log(energy),
                         (gxx - gyy) / energy, 2 * gxy / energy, lum, a, b, np.sqrt(np.maximum(lum2 - lum ** 2, 0))],
                        axis=1)
    return features.astype(np.float32), ys, xs


def standardize(features: np.ndarray) -> np.ndarray:
    """Zero mean, unit variance per column (a constant column stays 0)."""
    std = features.std(0)
    return ((features - features.mean(0)) / np.where(std > 0, std, 1)).astype(np.float32)


def median_bandwidth(features: np.ndarray, sample: int = 1000, seed: int = 0) -> float:
    """The median distance between distinct rows of a random sample (the usual Gaussian-kernel bandwidth)."""
    rows = features[np.random.default_rng(seed).permutation(len(features))[:sample]]
    d = pairwise_distances(rows, rows)[np.triu_indices(len(rows), 1)]
    return float(np.median(d)) if d.size and np.median(d) > 0 else 1.


def kernel_herding(features: np.ndarray, count: int, reference: np.ndarray | None = None,
                   preselected: Sequence[int] = (), bandwidth: float | None = None, chunk: int = 2048) -> list[int]:
    """``count`` row indices of ``features`` (``preselected`` first, then herded) whose distribution matches
    ``reference`` (default: ``features`` themselves) under a Gaussian kernel. A row is picked twice only once
    every row has been picked."""
    if count <= 0 or len(features) == 0:
        return []
    reference = features if reference is None else reference
    bandwidth = bandwidth or median_bandwidth(reference)
    gamma = 1 / (2 * bandwidth ** 2)

    def similarity(rows: np.ndarray, to: np.ndarray) -> np.ndarray:
        return np.exp(-gamma * pairwise_distances(rows, to) ** 2)

    attraction = np.concatenate([similarity(features[i:i + chunk], reference).mean(1)
                                 for i in range(0, len(features), chunk)])
    repulsion = np.zeros(len(features))
    taken = np.zeros(len(features), bool)
    picks: list[int] = []
    for i in list(preselected)[:count]:
        picks.append(int(i))
        taken[i] = True
        repulsion += similarity(features, features[i:i + 1])[:, 0]
    while len(picks) < count:
        if taken.all():
            taken[:] = False
        score = attraction - repulsion / (len(picks) + 1)
        score[taken] = -np.inf
        nxt = int(np.argmax(score))
        picks.append(nxt)
        taken[nxt] = True
        repulsion += similarity(features, features[nxt:nxt + 1])[:, 0]
    return picks


def proportional_split(total: int, sizes: Sequence[int]) -> list[int]:
    """``total`` split over classes in proportion to ``sizes`` (largest remainder; an empty class gets 0)."""
    sizes = np.asarray(sizes, dtype=np.float64)
    if sizes.sum() <= 0:
        return [0] * len(sizes)
    exact = total * sizes / sizes.sum()
    shares = np.floor(exact).astype(int)
    for c in np.argsort(-(exact - shares), kind='stable')[:total - shares.sum()]:
        shares[c] += 1
    return shares.tolist()
