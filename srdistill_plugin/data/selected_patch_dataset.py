"""The selected, pseudo-labelled HR patches of a distillation run (what the diffusion model is fine-tuned on)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from basicsr.data.transforms import augment
from basicsr.utils import img2tensor
from basicsr.utils.registry import DATASET_REGISTRY
from torch.utils import data

from srdistill.core.imageio import read_image, to_uint8
from srdistill.core.manifest import read_manifest


@DATASET_REGISTRY.register()
class SelectedPatchDataset(data.Dataset):
    """Items ``{'gt': 3xPxP in [0, 1] (RGB), 'class_id': int}`` from the ``select`` and ``categorize`` manifests.

    Options: ``stage_dir`` (the run's ``stages/`` folder), ``use_hflip``, ``use_rot``. Source images are decoded
    once and kept in memory as uint8.
    """

    def __init__(self, opt: dict):
        super().__init__()
        self.opt = opt
        stage_dir = Path(opt['stage_dir'])
        selection = read_manifest(stage_dir / 'select.json')
        categories = read_manifest(stage_dir / 'categorize.json')
        self.images = selection['images']
        self.patch_size = selection['options']['patch_size']
        self.patches = selection['patches']
        self.class_ids = (categories['patch_classes'] if 'patch_classes' in categories  # clustered per patch
                          else [categories['image_classes'][p[0]] for p in self.patches])
        self.num_classes = categories['num_classes']
        self._cache: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.patches)

    def patch(self, index: int) -> np.ndarray:
        """The ``index``-th selected patch as float32 BGR [0, 1]."""
        image_index, y, x = self.patches[index][:3]
        if image_index not in self._cache:
            self._cache[image_index] = to_uint8(read_image(self.images[image_index]))
        crop = self._cache[image_index][y:y + self.patch_size, x:x + self.patch_size]
        return crop.astype(np.float32) / 255.

    def __getitem__(self, index: int) -> dict:
        img = augment(self.patch(index), self.opt.get('use_hflip', True), self.opt.get('use_rot', True))
        return {'gt': img2tensor(np.ascontiguousarray(img), bgr2rgb=True, float32=True),
                'class_id': torch.tensor(self.class_ids[index])}
