"""The ``categorize`` stage's work: the features the pseudo-classes are found in, the clustering of the kept
patches (by image, or patch by patch as the SRDD code does), and the class of every pool image."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
from tqdm import tqdm

from srdistill.core.features import HUB_PREFIX, ClipImageEncoder, cluster, colour_texture_descriptor
from srdistill.core.imageio import read_image
from srdistill.core.set_diagnostics import pairwise_distances

from .options import CategorizeOptions

Extract = Callable[[np.ndarray], np.ndarray]


def grouping_features(options: CategorizeOptions, root: Path) -> tuple[str, str, Extract]:
    """``(mode, description, extract)`` of ``categorize.features``: CLIP image features when CLIP weights are named
    (a local file or a hub name), else the colour-texture descriptor, named as NOT CLIP features."""
    pretrained, model, config = options.clip_pretrained, options.clip_model, options.clip_model_config
    if options.features == 'clip' or (options.features == 'auto' and (pretrained or model.startswith(HUB_PREFIX))):
        if pretrained and (root / str(pretrained)).is_file():
            pretrained = root / pretrained
        encoder = ClipImageEncoder(model, pretrained, model_config=str(root / config) if config else None)
        return 'clip', encoder.description, encoder
    return ('colour_texture', 'colour-texture descriptor (HSV histogram + gradient statistics; no CLIP '
            'weights given, so NOT CLIP features)', colour_texture_descriptor)


def kept_patch_features(selection: dict, extract: Extract) -> np.ndarray:
    """``extract`` of every kept patch of the select manifest, rows in its order (each image decoded once)."""
    size, patches = selection['options']['patch_size'], selection['patches']
    rows: list = [None] * len(patches)
    by_image = sorted(range(len(patches)), key=lambda k: patches[k][0])
    current, img = None, None
    for k in tqdm(by_image, desc='categorize: features', unit='patch'):
        image_index, y, x = patches[k][:3]
        if image_index != current:
            current, img = image_index, read_image(selection['images'][image_index])
        rows[k] = extract(img[y:y + size, x:x + size])
    return np.stack(rows)


def group_patches(selection: dict, extract: Extract, num_classes: int, seed: int,
                  by: str) -> tuple[np.ndarray, list[int], list[int], str]:
    """``(features, class of every kept patch, class of every pool image (-1: none), what was clustered)``:
    k-means over the features of the images that have a kept patch (``by: image``), or of every kept patch on its
    own (``by: patch``, the official code's; then no image has a class)."""
    if by == 'patch':
        features = kept_patch_features(selection, extract)
        patch_classes = cluster(features, num_classes, seed).tolist()
        return features, patch_classes, [-1] * len(selection['images']), f'{len(patch_classes)} patches'
    used = sorted({p[0] for p in selection['patches']})
    features = np.stack([extract(read_image(selection['images'][i]))
                         for i in tqdm(used, desc='categorize: features', unit='img')])
    image_classes = [-1] * len(selection['images'])
    for i, c in zip(used, cluster(features, num_classes, seed)):
        image_classes[i] = int(c)
    return features, [image_classes[p[0]] for p in selection['patches']], image_classes, f'{len(used)} images'


def pool_image_classes(categories: dict, features: np.ndarray, images: list[str], extract: Extract) -> list[int]:
    """The pseudo-class of every pool image: the categorize stage's (``categories``, its manifest, with the image
    ``features`` it clustered), and for the images it did not see (no selected patch) the class of the nearest
    centroid in the same feature space."""
    classes = np.array(categories['image_classes'])
    unseen = np.flatnonzero(classes < 0)
    if len(unseen):
        labels = classes[classes >= 0]  # the rows of the saved features, in image order
        centroids = np.stack([features[labels == c].mean(0) for c in range(categories['num_classes'])])
        for i in tqdm(unseen, desc='synthesize: classes of unselected images', unit='img'):
            classes[i] = int(np.argmin(pairwise_distances(extract(read_image(images[i]))[None], centroids)))
    return classes.tolist()
