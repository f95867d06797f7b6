"""HR-only dataset: reads HR images (LMDB or folder) and makes the LR input on the fly by MATLAB bicubic."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from basicsr.data.transforms import augment
from basicsr.utils import FileClient, imfrombytes, img2tensor
from basicsr.utils.registry import DATASET_REGISTRY
from torch.utils import data

from srdistill_plugin.core.degradations import bicubic_downscale, check_scale, mod_crop
from srdistill_plugin.core.errors import SRDistillError
from srdistill_plugin.core.imageio import list_images, to_float_bgr
from srdistill_plugin.core.lmdb_io import read_meta_keys

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
        self.io_opt = dict(opt.get('io_backend', {'type': 'disk'}))
        self.train = opt.get('phase') == 'train'
        if self.train:
            self.gt_size = int(opt.get('gt_size', 0))
            if self.gt_size <= 0 or self.gt_size % self.scale:
                raise SRDistillError(f'option gt_size: must be a positive multiple of scale {self.scale}, '
                                     f'got {opt.get("gt_size")!r}')
        if self.io_opt['type'] == 'lmdb':
            self.keys = read_meta_keys(self.root)
            self.io_opt['db_paths'], self.io_opt['client_keys'] = [str(self.root)], ['gt']
            self.paths = [f'{self.root}/{k}' for k in self.keys]
        elif self.io_opt['type'] == 'disk':
            files = list_images(self.root)
            self.keys, self.paths = [p.stem for p in files], [str(p) for p in files]
        else:
            raise SRDistillError(f"option io_backend.type: expected 'lmdb' or 'disk', got {self.io_opt['type']!r}")
        class_info = Path(opt['class_info']) if opt.get('class_info') else self.root / CLASS_INFO
        self.class_ids = read_class_info(class_info, self.keys) if class_info.is_file() else None
        self.file_client = None

    def _read_gt(self, index: int) -> np.ndarray:
        if self.file_client is None:
            backend = dict(self.io_opt)
            self.file_client = FileClient(backend.pop('type'), **backend)
        key = self.keys[index] if self.io_opt['type'] == 'lmdb' else self.paths[index]
        try:
            raw = self.file_client.get(key, 'gt')
        except Exception as err:  # lmdb returns None for a missing key, which BasicSR then fails on
            raise SRDistillError(f'{self.root}: cannot read key {key!r} ({err})') from err
        if raw is None:
            raise SRDistillError(f'{self.root}: key {key!r} is listed in meta_info.txt but missing from the LMDB')
        img = imfrombytes(raw, flag='unchanged', float32=False)
        if img is None:
            raise SRDistillError(f'{self.paths[index]}: cannot decode image')
        return to_float_bgr(img, self.paths[index])

    def _random_crop(self, img: np.ndarray, index: int) -> np.ndarray:
        h, w = img.shape[:2]
        if min(h, w) < self.gt_size:
            raise SRDistillError(f'{self.paths[index]}: {w}x{h} is smaller than gt_size {self.gt_size}')
        top, left = np.random.randint(0, h - self.gt_size + 1), np.random.randint(0, w - self.gt_size + 1)
        return img[top:top + self.gt_size, left:left + self.gt_size]

    def __getitem__(self, index: int) -> dict:
        gt = self._read_gt(index)
        if self.train:
            gt = self._random_crop(gt, index)
            gt = augment(gt, self.opt.get('use_hflip', True), self.opt.get('use_rot', True))
        gt = np.ascontiguousarray(mod_crop(gt, self.scale))
        lq = bicubic_downscale(gt, self.scale)
        lq, gt = img2tensor([lq, gt], bgr2rgb=True, float32=True)
        return {'lq': lq, 'gt': gt, 'lq_path': self.paths[index], 'gt_path': self.paths[index]}

    def __len__(self) -> int:
        return len(self.keys)
