"""MZSR data: meta-training tasks (one random blur kernel each), kernel-degraded test images, and given LR images
with their kernels (real zero-shot use)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from basicsr.data.transforms import augment
from basicsr.utils import img2tensor
from basicsr.utils.registry import DATASET_REGISTRY
from torch.utils import data

from srdistill.core.degradations import check_scale, mod_crop
from srdistill.core.errors import SRDistillError
from srdistill.core.imageio import read_image
from srdistill.core.kernels import degrade, eval_kernel, find_kernel, load_kernel, random_mzsr_kernel
from srdistill.core.zero_shot_inputs import kernels_for, lr_image_paths, paired_hr_paths

from .hr_source import HRImageSource, random_crop

SUPPORT_MODES = ('lr_hr', 'son_lr')
DOWNSAMPLE_MODES = ('direct', 'bicubic')


def _choice(opt: dict, key: str, default: str, allowed: tuple[str, ...], where: str) -> str:
    value = opt.get(key, default)
    if value not in allowed:
        raise SRDistillError(f'option {where}.{key}: expected one of {allowed}, got {value!r}')
    return value


def _to_tensor(img: np.ndarray) -> torch.Tensor:
    return img2tensor(np.ascontiguousarray(img), bgr2rgb=True, float32=True)


@DATASET_REGISTRY.register()
class MZSRTaskDataset(data.Dataset):
    """Each item is one meta-learning task: one random anisotropic Gaussian kernel and its HR/LR patches.

    ``support: lr_hr`` (default, the official data generator): ``2 * num_patches`` HR patches degraded by the task's
    kernel; support = the first ``num_patches`` (LR -> HR), query = the rest (LR -> HR).
    ``support: son_lr`` (an ablation): ``num_patches`` patches; support = (son -> LR), query = (LR -> HR) of the
    same patches, son = LR degraded again.
    LR = HR correlated with the kernel, then ``downsample: direct`` (official grid) or ``bicubic`` (MATLAB), float.

    Options: dataroot_gt, io_backend, scale, gt_size (HR patch, 64 officially), num_patches (8), kernel_size (15),
    min_variance (the smallest kernel eigenvalue, 1 officially), support, downsample, tasks_per_epoch (length of an
    epoch), use_hflip, use_rot.
    """

    def __init__(self, opt: dict):
        super().__init__()
        self.opt = opt
        self.scale = check_scale(opt.get('scale'), 'datasets.train.scale')
        self.support = _choice(opt, 'support', 'lr_hr', SUPPORT_MODES, 'datasets.train')
        self.downsample = _choice(opt, 'downsample', 'direct', DOWNSAMPLE_MODES, 'datasets.train')
        self.gt_size = int(opt.get('gt_size', 64))
        factor = self.scale ** 2 if self.support == 'son_lr' else self.scale
        if self.gt_size % factor:
            raise SRDistillError(f'option gt_size: {self.gt_size} must be a multiple of {factor} '
                                 f'(scale {self.scale}, support {self.support})')
        self.num_patches = int(opt.get('num_patches', 8))
        self.kernel_size = int(opt.get('kernel_size', 15))
        self.min_variance = float(opt.get('min_variance', 1.))
        if not 0 < self.min_variance < 2.5 * self.scale:
            raise SRDistillError(f'option datasets.train.min_variance: expected a number in (0, {2.5 * self.scale:g}) '
                                 f'(the task kernels\' largest variance is 2.5 x scale), got {self.min_variance}')
        smallest = self.gt_size // factor
        if smallest <= self.kernel_size // 2:
            raise SRDistillError(f'option gt_size: {self.gt_size} is too small for kernel_size {self.kernel_size} '
                                 f'(the smallest degraded patch, {smallest} px, must exceed half the kernel)')
        self.source = HRImageSource(opt['dataroot_gt'], opt.get('io_backend'), opt.get('made_by'))
        self.length = int(opt.get('tasks_per_epoch', 1000))

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict:
        count = 2 * self.num_patches if self.support == 'lr_hr' else self.num_patches
        picks = np.random.randint(len(self.source), size=count)
        patches = [augment(random_crop(self.source.read(i), self.gt_size, self.source.paths[i]),
                           self.opt.get('use_hflip', True), self.opt.get('use_rot', True)) for i in picks]
        hr = torch.stack([_to_tensor(p) for p in patches])
        kernel = torch.from_numpy(random_mzsr_kernel(np.random.default_rng(np.random.randint(2**31)), self.scale,
                                                     self.kernel_size, self.min_variance))
        lr = degrade(hr, kernel, self.scale, self.downsample)
        if self.support == 'lr_hr':
            n = self.num_patches
            return {'support_lq': lr[:n], 'support_gt': hr[:n], 'query_lq': lr[n:], 'query_gt': hr[n:],
                    'kernel': kernel}
        son = degrade(lr, kernel, self.scale, self.downsample)
        return {'support_lq': son, 'support_gt': lr, 'query_lq': lr, 'query_gt': hr, 'kernel': kernel}


def _kernel_source(opt: dict, where: str) -> tuple[torch.Tensor | None, str | None]:
    """``(shared kernel, kernel_dir)`` from exactly one of ``kernel_file`` / ``kernel_dir`` (checked now)."""
    given = [k for k in ('kernel_file', 'kernel_dir') if opt.get(k)]
    if len(given) != 1:
        raise SRDistillError(f'dataset {where}: give exactly one of kernel_file, kernel_dir (got {given or "none"})')
    if opt.get('kernel_file'):
        return torch.from_numpy(load_kernel(opt['kernel_file'])), None
    if not Path(opt['kernel_dir']).is_dir():
        raise SRDistillError(f'option kernel_dir: {opt["kernel_dir"]} is not a folder')
    return None, opt['kernel_dir']


@DATASET_REGISTRY.register()
class KernelDegradedDataset(data.Dataset):
    """Test images for zero-shot SR: LR = HR (mod-cropped) degraded by a known kernel and rounded to 8 bits, as the
    official LR inputs are saved; the kernel travels with the item.

    Options: dataroot_gt, io_backend, scale, and one of
      ``kernel: gd2.0`` (a named evaluation kernel on the paper's convention: gd0.2, gd2.0, gdani, gb1.3; 21x21),
      ``kernel_file: path`` (one kernel for all images; ``.mat``, ``.npy`` or text, any odd size), or
      ``kernel_dir: folder`` (``<image stem>.mat|.npy|.txt`` per image);
    ``downsample: direct|bicubic`` (named kernels set it), ``quantize_lr`` (true).
    """

    def __init__(self, opt: dict):
        super().__init__()
        self.opt = opt
        self.scale = check_scale(opt.get('scale'), 'datasets.*.scale')
        self.source = HRImageSource(opt['dataroot_gt'], opt.get('io_backend'), opt.get('made_by'))
        self.downsample = _choice(opt, 'downsample', 'direct', DOWNSAMPLE_MODES, f'datasets.{opt.get("name")}')
        self.shared_kernel, self.kernel_dir = None, None
        if opt.get('kernel'):
            if opt.get('kernel_file') or opt.get('kernel_dir'):
                raise SRDistillError(f'dataset {opt.get("name")}: give one of kernel, kernel_file, kernel_dir')
            kernel, self.downsample = eval_kernel(opt['kernel'])
            self.shared_kernel = torch.from_numpy(kernel)
        else:
            self.shared_kernel, self.kernel_dir = _kernel_source(opt, str(opt.get('name')))
            for key in ([] if self.kernel_dir is None else self.source.keys):
                find_kernel(self.kernel_dir, Path(key).stem)  # every image's kernel exists: fail now, not mid-test

    def kernel_for(self, index: int) -> torch.Tensor:
        if self.shared_kernel is not None:
            return self.shared_kernel
        return torch.from_numpy(load_kernel(find_kernel(self.kernel_dir, Path(self.source.keys[index]).stem)))

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, index: int) -> dict:
        hr = _to_tensor(mod_crop(self.source.read(index), self.scale))
        kernel = self.kernel_for(index)
        lr = degrade(hr[None], kernel, self.scale, self.downsample)[0].clamp(0, 1)
        if self.opt.get('quantize_lr', True):
            lr = (lr * 255).round() / 255
        return {'lq': lr, 'gt': hr, 'kernel': kernel, 'downsample': self.downsample, 'lq_path': self.source.paths[index],
                'gt_path': self.source.paths[index]}


@DATASET_REGISTRY.register()
class ZeroShotLRDataset(data.Dataset):
    """Given LR images (real zero-shot use), each with its blur kernel; HR optional (metrics only where it exists).

    Options: dataroot_lq (folder of LR images, any size), scale, one of ``kernel_file`` (one kernel for all) or
    ``kernel_dir`` (``<LR stem>.mat|.npy|.txt``), ``downsample`` (direct), and optionally ``dataroot_gt`` with
    ``filename_tmpl`` ('{}': the LR stem is ``filename_tmpl.format(<HR stem>)``). Every kernel and every HR size
    (mod-cropped HR = LR x scale) is checked when the dataset is built, before any adaptation starts.
    The dataset reads kernels only: ``tools/estimate_kernel.py`` (or ``srdistill-zeroshot --kernel estimate``)
    estimates them into a folder first.
    """

    def __init__(self, opt: dict):
        super().__init__()
        self.opt = opt
        name = str(opt.get('name'))
        self.scale = check_scale(opt.get('scale'), f'datasets.{name}.scale')
        self.downsample = _choice(opt, 'downsample', 'direct', DOWNSAMPLE_MODES, f'datasets.{name}')
        self.lq_paths = lr_image_paths(opt['dataroot_lq'])  # one photo, or a folder of them
        # HR checks first: they are cheap, the estimation is not
        self.gt_paths = paired_hr_paths(self.lq_paths, opt.get('dataroot_gt'), opt.get('filename_tmpl', '{}'),
                                        self.scale)
        if opt.get('kernel'):  # a dataset reads kernels; estimating them is a step of its own
            raise SRDistillError(f'option datasets.{name}.kernel: give kernel_dir or kernel_file; to estimate the '
                                 'kernels first run python tools/estimate_kernel.py --input LR_DIR --output K_DIR '
                                 '(then kernel_dir: K_DIR), or srdistill-zeroshot --kernel estimate')
        given = [k for k in ('kernel_file', 'kernel_dir') if opt.get(k)]
        if len(given) != 1:
            raise SRDistillError(f'dataset {name}: give exactly one of kernel_file, kernel_dir (got {given or "none"})')
        self.kernels = kernels_for(self.lq_paths, opt.get('kernel_file'), opt.get('kernel_dir'))

    def __len__(self) -> int:
        return len(self.lq_paths)

    def __getitem__(self, index: int) -> dict:
        lq = _to_tensor(read_image(self.lq_paths[index]))
        item = {'lq': lq, 'kernel': self.kernels[index], 'downsample': self.downsample,
                'lq_path': str(self.lq_paths[index])}
        if self.gt_paths[index] is not None:
            item['gt'] = _to_tensor(mod_crop(read_image(self.gt_paths[index]), self.scale))
            item['gt_path'] = str(self.gt_paths[index])
        return item
