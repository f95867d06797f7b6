"""MZSR data: meta-training tasks (one random blur kernel each) and kernel-degraded test images."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from basicsr.data.transforms import augment
from basicsr.utils import img2tensor
from basicsr.utils.registry import DATASET_REGISTRY
from torch.utils import data

from srdistill_plugin.core.degradations import check_scale, mod_crop
from srdistill_plugin.core.errors import SRDistillError
from srdistill_plugin.core.kernels import degrade, eval_kernel, load_kernel, random_mzsr_kernel

from .hr_source import HRImageSource, random_crop


@DATASET_REGISTRY.register()
class MZSRTaskDataset(data.Dataset):
    """Each item is one meta-learning task: a random anisotropic Gaussian kernel and ``num_patches`` HR patches.

    ``support_lq``/``support_gt`` = (son, LR) and ``query_lq``/``query_gt`` = (LR, HR), where LR = HR blurred by
    the kernel and subsampled by ``scale`` (direct), and son = LR degraded the same way (float, no noise).

    Options: dataroot_gt, io_backend, scale, gt_size (HR patch; a multiple of scale**2), num_patches (8),
    kernel_size (15), tasks_per_epoch (length of an epoch), use_hflip, use_rot.
    """

    def __init__(self, opt: dict):
        super().__init__()
        self.opt = opt
        self.scale = check_scale(opt.get('scale'), 'datasets.train.scale')
        self.gt_size = int(opt.get('gt_size', 64))
        if self.gt_size % self.scale ** 2:
            raise SRDistillError(f'option gt_size: {self.gt_size} must be a multiple of scale**2 = {self.scale ** 2}')
        self.num_patches = int(opt.get('num_patches', 8))
        self.kernel_size = int(opt.get('kernel_size', 15))
        if self.gt_size // self.scale ** 2 <= self.kernel_size // 2:
            raise SRDistillError(f'option gt_size: {self.gt_size} is too small for kernel_size {self.kernel_size} '
                                 f'(the son must be larger than half the kernel)')
        self.source = HRImageSource(opt['dataroot_gt'], opt.get('io_backend'))
        self.length = int(opt.get('tasks_per_epoch', 1000))

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict:
        picks = np.random.randint(len(self.source), size=self.num_patches)
        patches = [augment(random_crop(self.source.read(i), self.gt_size, self.source.paths[i]),
                           self.opt.get('use_hflip', True), self.opt.get('use_rot', True)) for i in picks]
        hr = torch.stack(img2tensor([np.ascontiguousarray(p) for p in patches], bgr2rgb=True, float32=True))
        kernel = torch.from_numpy(random_mzsr_kernel(np.random.default_rng(np.random.randint(2**31)), self.scale,
                                                     self.kernel_size))
        lr = degrade(hr, kernel, self.scale)
        son = degrade(lr, kernel, self.scale)
        return {'support_lq': son, 'support_gt': lr, 'query_lq': lr, 'query_gt': hr, 'kernel': kernel}


@DATASET_REGISTRY.register()
class KernelDegradedDataset(data.Dataset):
    """Test images for zero-shot SR: LR = HR degraded by a known kernel; the kernel travels with the item.

    Options: dataroot_gt, io_backend, scale, and one of
      ``kernel: gd2.0`` (a named evaluation kernel: gd0.2, gd2.0, gdani, gb1.3),
      ``kernel_file: path`` (one kernel for all images; ``.npy`` or text), or
      ``kernel_dir: folder`` (``<image stem>.npy`` or ``.txt`` per image);
    ``downsample: direct|bicubic`` (named kernels set it), ``kernel_size`` (15).
    """

    def __init__(self, opt: dict):
        super().__init__()
        self.opt = opt
        self.scale = check_scale(opt.get('scale'), 'datasets.*.scale')
        self.kernel_size = int(opt.get('kernel_size', 15))
        self.source = HRImageSource(opt['dataroot_gt'], opt.get('io_backend'))
        self.downsample = opt.get('downsample', 'direct')
        given = [k for k in ('kernel', 'kernel_file', 'kernel_dir') if opt.get(k)]
        if len(given) != 1:
            raise SRDistillError(f'dataset {opt.get("name")}: give exactly one of kernel, kernel_file, kernel_dir '
                                 f'(got {given or "none"})')
        self.shared_kernel = None
        if opt.get('kernel'):
            kernel, self.downsample = eval_kernel(opt['kernel'], self.kernel_size)
            self.shared_kernel = torch.from_numpy(kernel)
        elif opt.get('kernel_file'):
            self.shared_kernel = torch.from_numpy(load_kernel(opt['kernel_file'], self.kernel_size))

    def kernel_for(self, index: int) -> torch.Tensor:
        if self.shared_kernel is not None:
            return self.shared_kernel
        stem = Path(self.source.paths[index]).stem
        candidates = [Path(self.opt['kernel_dir']) / f'{stem}{ext}' for ext in ('.npy', '.txt')]
        found = next((p for p in candidates if p.is_file()), candidates[0])
        return torch.from_numpy(load_kernel(found, self.kernel_size))

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, index: int) -> dict:
        hr = img2tensor(mod_crop(self.source.read(index), self.scale), bgr2rgb=True, float32=True)
        kernel = self.kernel_for(index)
        lr = degrade(hr[None], kernel, self.scale, self.downsample)[0].clamp(0, 1)
        return {'lq': lr, 'gt': hr, 'kernel': kernel, 'downsample': self.downsample, 'lq_path': self.source.paths[index],
                'gt_path': self.source.paths[index]}
