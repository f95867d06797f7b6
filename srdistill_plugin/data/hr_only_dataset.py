"""HR-only dataset: reads HR images (LMDB or folder) and makes the LR input on the fly by MATLAB bicubic."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from basicsr.data.transforms import augment
from basicsr.utils import img2tensor
from basicsr.utils.registry import DATASET_REGISTRY
from torch.utils import data

from srdistill_plugin.core.degradations import bicubic_downscale, check_scale, mod_crop
from srdistill_plugin.core.errors import SRDistillError

from .hr_source import HRImageSource, random_crop

CLASS_INFO = 'class_info.txt'


def read_class_info(path: Path, keys: list[str]) -> list[int]:
    """``key class_id`` lines -> one class id per key (in ``keys`` order)."""
    table = dict(line.split()[:2] for line in path.read_text().splitlines() if line.strip())
    missing = [k for k in keys if k not in table]
    if missing:
        raise SRDistillError(f'{path}: no class for {len(missing)} keys, e.g. {missing[0]}')
    return [int(table[k]) for k in keys]


@DATASET_REGISTRY.register()
class HROnlyDataset(data.Dataset):
    """HR images only; LR = bicubic ``1/scale`` of the (cropped, augmented) HR, quantized to 8 bits.

    Options (BasicSR style):
        dataroot_gt: an LMDB folder (``io_backend.type: lmdb``) or an image folder (``disk``).
        io_backend: ``{type: lmdb}`` or ``{type: disk}``.
        scale: 2, 3 or 4.  gt_size: HR crop size for training (a multiple of scale).
        use_hflip, use_rot: augmentation in training.  phase: 'train' crops; other phases use whole mod-cropped images.
        class_info: optional ``key class_id`` file (default: ``class_info.txt`` inside dataroot_gt if present);
            gives ``class_ids`` for :class:`ClassBalancedSampler`.
    """

    def __init__(self, opt: dict):
        super().__init__()
        self.opt = opt
        self.scale = check_scale(opt.get('scale'), 'datasets.*.scale')
        self.root = Path(opt['dataroot_gt'])
        self.train = opt.get('phase') == 'train'
        if self.train:
            self.gt_size = int(opt.get('gt_size', 0))
            if self.gt_size <= 0 or self.gt_size % self.scale:
                raise SRDistillError(f'option gt_size: must be a positive multiple of scale {self.scale}, '
                                     f'got {opt.get("gt_size")!r}')
        self.source = HRImageSource(self.root, opt.get('io_backend'))
        self.keys, self.paths = self.source.keys, self.source.paths
        class_info = Path(opt['class_info']) if opt.get('class_info') else self.root / CLASS_INFO
        self.class_ids = read_class_info(class_info, self.keys) if class_info.is_file() else None

    def __getitem__(self, index: int) -> dict:
        gt = self.source.read(index)
        if self.train:
            gt = random_crop(gt, self.gt_size, self.paths[index])
            gt = augment(gt, self.opt.get('use_hflip', True), self.opt.get('use_rot', True))
        gt = np.ascontiguousarray(mod_crop(gt, self.scale))
        lq = bicubic_downscale(gt, self.scale)
        lq, gt = img2tensor([lq, gt], bgr2rgb=True, float32=True)
        return {'lq': lq, 'gt': gt, 'lq_path': self.paths[index], 'gt_path': self.paths[index]}

    def __len__(self) -> int:
        return len(self.keys)
