"""MMagic transforms: load from a BasicSR LMDB, make LR on the fly (MATLAB bicubic, or blur kernel + subsampling)."""
from __future__ import annotations

import cv2
import lmdb
import numpy as np
import torch
from mmagic.registry import TRANSFORMS
from mmcv.transforms import BaseTransform

from srdistill.core.degradations import bicubic_downscale, check_scale, mod_crop
from srdistill.core.errors import SRDistillError
from srdistill.core.imageio import to_float_bgr
from srdistill.core.kernels import EVAL_KERNEL_SIZE, degrade, eval_kernel, random_mzsr_kernel


@TRANSFORMS.register_module()
class LoadImageFromLMDB(BaseTransform):
    """``results[key]`` = the image stored under ``results['key']`` in ``results['lmdb_path']`` (uint8 HWC, RGB by
    default, greyscale/16-bit/alpha converted as everywhere in srdistill)."""

    def __init__(self, key: str = 'gt', channel_order: str = 'rgb'):
        self.key, self.channel_order = key, channel_order
        self._envs: dict[str, lmdb.Environment] = {}

    def transform(self, results: dict) -> dict:
        path = results['lmdb_path']
        if path not in self._envs:
            self._envs[path] = lmdb.open(path, readonly=True, lock=False, readahead=False)
        with self._envs[path].begin(write=False) as txn:
            raw = txn.get(results['key'].encode('ascii'))
        if raw is None:
            raise SRDistillError(f'{path}: key {results["key"]!r} is listed in meta_info.txt but missing')
        img = cv2.imdecode(np.frombuffer(raw, np.uint8), cv2.IMREAD_UNCHANGED)
        img = np.round(to_float_bgr(img, f'{path}/{results["key"]}') * 255).astype(np.uint8)
        results[self.key] = img[:, :, ::-1].copy() if self.channel_order == 'rgb' else img
        results[f'ori_{self.key}_shape'] = img.shape
        results[f'{self.key}_channel_order'], results[f'{self.key}_color_type'] = self.channel_order, 'color'
        return results


def copy_colour_info(results: dict, src: str, dst: str) -> None:
    """Tell MMagic's data preprocessor and metrics that ``dst`` has ``src``'s channel order (else: BGR assumed)."""
    results[f'{dst}_channel_order'] = results.get(f'{src}_channel_order', 'rgb')
    results[f'{dst}_color_type'] = results.get(f'{src}_color_type', 'color')


@TRANSFORMS.register_module()
class BicubicDegradation(BaseTransform):
    """``results[out_key]`` = MATLAB-bicubic ``1/scale`` of ``results[key]`` (mod-cropped first), 8-bit rounded."""

    def __init__(self, scale: int, key: str = 'gt', out_key: str = 'img'):
        self.scale, self.key, self.out_key = check_scale(scale, 'BicubicDegradation.scale'), key, out_key

    def transform(self, results: dict) -> dict:
        gt = mod_crop(results[self.key], self.scale)
        results[self.key] = np.ascontiguousarray(gt)
        lr = bicubic_downscale(gt.astype(np.float32) / 255., self.scale)
        results[self.out_key] = np.round(lr * 255).astype(np.uint8)
        results['scale'] = self.scale
        copy_colour_info(results, self.key, self.out_key)
        return results


@TRANSFORMS.register_module()
class BlurKernelDegradation(BaseTransform):
    """``results[out_key]`` = ``results[key]`` blurred by a kernel and subsampled (MZSR's degradation), float32 in
    [0, 255]; the kernel is kept in ``results['kernel']``. ``kernel``: a named evaluation kernel on the paper's
    convention (gd0.2, gd2.0, gdani, gb1.3; 21x21 by default; the LR is rounded to 8 bits as the official inputs are)
    or ``'random'`` (a meta-training task kernel, 15x15 by default, float LR, seeded by numpy's global RNG)."""

    def __init__(self, scale: int, kernel: str = 'gd2.0', kernel_size: int | None = None, key: str = 'gt',
                 out_key: str = 'img'):
        self.scale, self.kernel = check_scale(scale, 'BlurKernelDegradation.scale'), kernel
        self.kernel_size = kernel_size or (15 if kernel == 'random' else EVAL_KERNEL_SIZE)
        self.key, self.out_key = key, out_key
        if kernel != 'random':
            eval_kernel(kernel, self.kernel_size)  # validates the name now, not at the first sample

    def transform(self, results: dict) -> dict:
        if self.kernel == 'random':
            kernel = random_mzsr_kernel(np.random.default_rng(np.random.randint(2 ** 31)), self.scale, self.kernel_size)
            downsample = 'direct'
        else:
            kernel, downsample = eval_kernel(self.kernel, self.kernel_size)
        gt = np.ascontiguousarray(mod_crop(results[self.key], self.scale))
        hr = torch.from_numpy(gt.astype(np.float32)).permute(2, 0, 1)[None] / 255.
        lr = degrade(hr, torch.from_numpy(kernel), self.scale, downsample).clamp(0, 1)[0] * 255.
        lr = lr if self.kernel == 'random' else lr.round()
        results[self.key], results[self.out_key] = gt, lr.permute(1, 2, 0).numpy().astype(np.float32)
        results['kernel'], results['downsample'], results['scale'] = kernel, downsample, self.scale
        copy_colour_info(results, self.key, self.out_key)
        return results
