"""Every grid patch of the pool (not only the selected ones): what the pool-wide synthesis modes draw from."""
from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from tqdm import tqdm

from srdistill.core.imageio import read_image
from srdistill.core.patch_selection import SelectionOptions, informativeness, score_patches
from srdistill.core.representative import sr_patch_features, standardize


class PoolGrid:
    """The ``select.patch_size`` windows at ``select.stride`` of every pool image, with their informativeness
    (the selection's score, larger = more informative), their image's pseudo-class and, when asked for, their
    standardized SR features (``core.representative.sr_patch_features``) or those of ``patch_features``."""

    def __init__(self, images: Sequence[str], image_classes: Sequence[int], opts: SelectionOptions,
                 features: str | None = None, patch_features: Callable[[np.ndarray], np.ndarray] | None = None):
        self.images, self.size = list(images), opts.patch_size
        columns: dict[str, list] = {'image': [], 'y': [], 'x': [], 'info': [], 'features': []}
        for index, path in enumerate(tqdm(self.images, desc='pool grid: scoring patches', unit='img')):
            img = read_image(path, min_size=opts.patch_size)
            scores, ys, xs = score_patches(img, opts)
            columns['image'].append(np.full(len(scores), index))
            columns['y'].append(ys)
            columns['x'].append(xs)
            columns['info'].append(informativeness(scores, opts.score))
            if features == 'sr_stats':
                columns['features'].append(sr_patch_features(img, opts.patch_size, opts.stride, opts.scale)[0])
            elif features is not None:
                columns['features'].append(np.stack([patch_features(img[y:y + self.size, x:x + self.size])
                                                     for y, x in zip(ys, xs)]))
        self.image, self.ys, self.xs, self.info = (np.concatenate(columns[k]) for k in ('image', 'y', 'x', 'info'))
        self.class_ids = np.asarray(image_classes)[self.image]
        self.features = standardize(np.concatenate(columns['features'])) if features else None
        self._cached: tuple[int, np.ndarray] | None = None

    def __len__(self) -> int:
        return len(self.image)

    def class_sizes(self, num_classes: int) -> list[int]:
        return np.bincount(self.class_ids, minlength=num_classes).tolist()

    def ranked(self, members: np.ndarray) -> np.ndarray:
        """``members`` from most to least informative."""
        return members[np.argsort(-self.info[members], kind='stable')]

    def patch(self, index: int) -> np.ndarray:
        """Patch ``index`` as float32 BGR [0, 1] (the last image read is kept: ask image by image)."""
        image = int(self.image[index])
        if self._cached is None or self._cached[0] != image:
            self._cached = (image, read_image(self.images[image]))
        y, x = self.ys[index], self.xs[index]
        return self._cached[1][y:y + self.size, x:x + self.size].astype(np.float32)
