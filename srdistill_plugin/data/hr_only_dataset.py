"""HR-only dataset: reads HR images (LMDB or folder) and makes the LR input on the fly by MATLAB bicubic."""
from __future__ import annotations

import random
from pathlib import Path

import numpy as np
from basicsr.data.transforms import augment
from basicsr.utils import img2tensor
from basicsr.utils.registry import DATASET_REGISTRY
from torch.utils import data

from srdistill.core.degradations import bicubic_downscale, check_scale, mod_crop
from srdistill.core.errors import SRDistillError

from .hr_source import HRImageSource, random_crop

CLASS_INFO = 'class_info.txt'
FLAT_PATCH_TRIES = 20


def log_gradient_energy(img: np.ndarray) -> float:
    """``log(mean(dx^2 + dy^2) + 1e-10)`` of a [0, 1] image over all channels, the differences taken from the
    top-left ``(h-1) x (w-1)`` pixels: the statistic by which the official MZSR pretraining data drops flat patches
    (kept when it is >= -6)."""
    img = img.astype(np.float64)
    dy = img[:-1, :-1] - img[1:, :-1]
    dx = img[:-1, :-1] - img[:-1, 1:]
    return float(np.log(np.mean(dy ** 2 + dx ** 2) + 1e-10))


def read_key_subset(path: Path, keys: list[str]) -> list[int]:
    """Indices into ``keys`` of the keys listed in ``path`` (first word of each line, BasicSR's meta_info style)."""
    if not path.is_file():
        raise SRDistillError(f'option meta_info_file: {path} does not exist')
    wanted = [line.split()[0] for line in path.read_text().splitlines() if line.strip()]
    index = {k: i for i, k in enumerate(keys)}
    missing = [k for k in wanted if k not in index]
    if missing or not wanted:
        detail = f'{len(missing)} of its keys are not in the data, e.g. {missing[0]!r}' if missing else 'no keys'
        raise SRDistillError(f'option meta_info_file: {path}: {detail}')
    return [index[k] for k in wanted]


def read_class_info(path: Path, keys: list[str]) -> list[int]:
    """``key class_id`` lines -> one class id per key (in ``keys`` order)."""
    table = dict(line.split()[:2] for line in path.read_text().splitlines() if line.strip())
    missing = [k for k in keys if k not in table]
    if missing:
        raise SRDistillError(f'{path}: no class for {len(missing)} keys, e.g. {missing[0]}')
    return [int(table[k]) for k in keys]


def check_augmentations(opt: dict, prefix: str = '') -> tuple[float, dict | None]:
    """``(rgb_permute probability, mixup options or None)``, checked (one line naming ``<prefix><option>``)."""
    def probability(value, option: str) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
            raise SRDistillError(f'option {option}: expected a probability in [0, 1], got {value!r}')
        return float(value)

    rgb = probability(opt.get('rgb_permute', 0), f'{prefix}rgb_permute')
    mixup = opt.get('mixup')
    if not mixup:
        return rgb, None
    if not isinstance(mixup, dict) or set(mixup) - {'prob', 'alpha'}:
        raise SRDistillError(f'option {prefix}mixup: expected {{prob: [0, 1], alpha: > 0}}, got {mixup!r}')
    alpha = mixup.get('alpha', 1.2)
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or alpha <= 0:
        raise SRDistillError(f'option {prefix}mixup.alpha: expected a number > 0, got {alpha!r}')
    return rgb, {'prob': probability(mixup.get('prob', 1.0), f'{prefix}mixup.prob'), 'alpha': float(alpha)}


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
        rgb_permute: probability of shuffling the HR crop's colour channels (training; 0: off).
        mixup: ``{prob, alpha}``: with probability ``prob`` the HR crop is mixed with another item's,
            ``lam * a + (1 - lam) * b`` with ``lam ~ Beta(alpha, alpha)`` (training; the LR is made from the mix, so
            the pair stays consistent).
        made_by: the command that makes ``dataroot_gt``, named when it is missing.
        meta_info_file: optional text file of keys (first word per line): only those images are used (e.g. a
            training / held-out split of one LMDB).
        min_log_gradient: optional flat-crop filter (training): a crop whose :func:`log_gradient_energy` is below
            it is drawn again (up to 20 times, then kept); the official MZSR pretraining data uses -6.
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
        self.source = HRImageSource(self.root, opt.get('io_backend'), opt.get('made_by'))
        self.indices = list(range(len(self.source)))
        if opt.get('meta_info_file'):
            self.indices = read_key_subset(Path(opt['meta_info_file']), self.source.keys)
        self.keys = [self.source.keys[i] for i in self.indices]
        self.paths = [self.source.paths[i] for i in self.indices]
        self.min_log_gradient = opt.get('min_log_gradient')
        if self.min_log_gradient is not None and (isinstance(self.min_log_gradient, bool)
                                                  or not isinstance(self.min_log_gradient, (int, float))):
            raise SRDistillError(f'option min_log_gradient: expected a number, got {self.min_log_gradient!r}')
        class_info = Path(opt['class_info']) if opt.get('class_info') else self.root / CLASS_INFO
        self.class_ids = read_class_info(class_info, self.keys) if class_info.is_file() else None
        self.rgb_permute, self.mixup = check_augmentations(opt)

    def training_crop(self, index: int) -> np.ndarray:
        img = self.source.read(self.indices[index])
        gt = random_crop(img, self.gt_size, self.paths[index])
        if self.min_log_gradient is not None:
            for _ in range(FLAT_PATCH_TRIES):
                if log_gradient_energy(gt) >= self.min_log_gradient:
                    break
                gt = random_crop(img, self.gt_size, self.paths[index])
        gt = augment(gt, self.opt.get('use_hflip', True), self.opt.get('use_rot', True))
        if self.rgb_permute and random.random() < self.rgb_permute:
            gt = gt[:, :, random.sample(range(3), 3)]
        return gt

    def __getitem__(self, index: int) -> dict:
        if self.train:
            gt = self.training_crop(index)
            if self.mixup and random.random() < self.mixup['prob']:
                lam = random.betavariate(self.mixup['alpha'], self.mixup['alpha'])
                gt = lam * gt + (1 - lam) * self.training_crop(random.randrange(len(self)))
        else:
            gt = self.source.read(self.indices[index])
        gt = np.ascontiguousarray(mod_crop(gt, self.scale))
        lq = bicubic_downscale(gt, self.scale)
        lq, gt = img2tensor([lq, gt], bgr2rgb=True, float32=True)
        return {'lq': lq, 'gt': gt, 'lq_path': self.paths[index], 'gt_path': self.paths[index]}

    def __len__(self) -> int:
        return len(self.keys)
