"""LR crops with a known blur kernel (``srdistill.core.blur_synthesis``) for training the kernel estimator."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from basicsr.data.transforms import augment
from basicsr.utils import get_root_logger, img2tensor
from basicsr.utils.registry import DATASET_REGISTRY
from torch.utils import data

from srdistill.core.blur_synthesis import BlurSynthesis
from srdistill.core.degradations import check_scale
from srdistill.core.errors import SRDistillError
from srdistill.core.imageio import image_size
from srdistill.core.kernel_predictor import coords_from_params

from .hr_source import HRImageSource


def _pair(opt: dict, key: str, default: tuple) -> tuple:
    value = opt.get(key, default)
    if not isinstance(value, (list, tuple)) or len(value) != 2 or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in value) or not 0 < value[0] <= value[1]:
        raise SRDistillError(f'option {key}: expected [low, high] with 0 < low <= high, got {value!r}')
    return tuple(value)


def usable_photos(paths: list[str], min_side: int) -> list[int]:
    """Indices of the photographs whose header says they are at least ``min_side`` px a side; each other one is
    named in one log line (unreadable or too small) and left out."""
    logger, usable = get_root_logger(), []
    for index, path in enumerate(paths):
        try:
            width, height = image_size(path)
        except SRDistillError as err:
            logger.warning(f'skipped: {err}')
            continue
        if min(width, height) < min_side:
            logger.warning(f'skipped: {path}: {width}x{height} is smaller than the {min_side}px crop')
            continue
        usable.append(index)
    if len(usable) < len(paths):
        logger.warning(f'{len(paths) - len(usable)} of {len(paths)} photographs skipped')
    return usable


@DATASET_REGISTRY.register()
class BlurEstimationDataset(data.Dataset):
    """HR photographs -> ``{'lq', 'kernel_coords', 'kernel_params', 'lq_path'}``.

    Training draws a photograph, a sharpened crop of ``lq_size * scale`` (flipped/rotated when ``use_hflip`` /
    ``use_rot``), a kernel and the degradation anew every time (numpy's generator, seeded by BasicSR per worker).
    Other phases are fixed: ``kernels_per_image`` central crops per photograph, each with its own kernel drawn from a
    generator seeded by its index, so every validation sees the same pairs; they also give the HR crop (``gt``).

    Options: ``dataroot_gt``, ``io_backend``, ``scale`` (2), ``downsample`` (direct), ``lq_size`` (48),
    ``kernel_size`` (15), ``broad_share`` (0.3), ``variance_range`` ([0.2, 5]), ``sharpen`` ([0.5, 1]),
    ``noise_prob`` (0.2), ``noise_max_sigma`` (3, 8-bit levels), ``jpeg_prob`` (0.2), ``jpeg_quality`` ([70, 95]),
    ``kernels_per_image`` (validation, 4), ``made_by``.
    """

    def __init__(self, opt: dict):
        super().__init__()
        self.opt = opt
        scale = check_scale(opt.get('scale', 2), 'datasets.*.scale')
        self.lq_size = int(opt.get('lq_size', 48))
        self.synthesis = BlurSynthesis(
            scale=scale, downsample=opt.get('downsample', 'direct'), kernel_size=int(opt.get('kernel_size', 15)),
            broad_share=float(opt.get('broad_share', 0.3)),
            variance_range=_pair(opt, 'variance_range', (0.2, 5.0)), sharpen=_pair(opt, 'sharpen', (0.5, 1.0)),
            noise_prob=float(opt.get('noise_prob', 0.2)), noise_max_sigma=float(opt.get('noise_max_sigma', 3.)),
            jpeg_prob=float(opt.get('jpeg_prob', 0.2)), jpeg_quality=_pair(opt, 'jpeg_quality', (70, 95)))
        if self.synthesis.sharpen[1] > 1:
            raise SRDistillError(f'option sharpen: factors must be <= 1 (a downscale), got '
                                 f'{list(self.synthesis.sharpen)}')
        self.train = opt.get('phase') == 'train'
        self.per_image = 1 if self.train else int(opt.get('kernels_per_image', 4))
        if (opt.get('io_backend') or {}).get('type', 'disk') != 'disk':
            raise SRDistillError("option io_backend.type: BlurEstimationDataset reads whole photographs from a folder "
                                 "('disk')")
        self.source = HRImageSource(opt['dataroot_gt'], opt.get('io_backend'), opt.get('made_by'))
        self.photos = usable_photos(self.source.paths, self.lq_size * scale)
        if not self.photos:
            raise SRDistillError(f'option dataroot_gt: {opt["dataroot_gt"]} holds no image of at least '
                                 f'{self.lq_size * scale}px a side')

    def __len__(self) -> int:
        return len(self.photos) * self.per_image

    def __getitem__(self, index: int) -> dict:
        photo = self.photos[index // self.per_image]
        rng = np.random.default_rng(np.random.randint(2 ** 31) if self.train else index)
        hr = self.synthesis.sharpened_crop(self.source.read(photo), self.lq_size * self.synthesis.scale, rng,
                                           centre=not self.train)
        if self.train:
            hr = augment(hr, self.opt.get('use_hflip', True), self.opt.get('use_rot', True))
        params = self.synthesis.draw_params(rng)
        lq = self.synthesis.degrade(hr, params, rng)
        item = {'lq': img2tensor(lq, bgr2rgb=True, float32=True),
                'kernel_coords': torch.from_numpy(coords_from_params(*params)).float(),
                'kernel_params': torch.tensor(params, dtype=torch.float64), 'lq_path': self.source.paths[photo]}
        if not self.train:  # the sharpened HR crop, for judging an estimate by the SR it gives
            item['gt'] = img2tensor(np.ascontiguousarray(hr), bgr2rgb=True, float32=True)
        return item
