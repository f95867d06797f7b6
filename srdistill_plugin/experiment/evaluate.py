"""Measurements of a distillation experiment: a student checkpoint on paired benchmark folders (PSNR/SSIM on Y,
crop border = scale, as BasicSR's test pipeline computes them) and the diagnostics of a distilled set."""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np
import torch
from basicsr.archs import build_network
from basicsr.utils import img2tensor, tensor2img

from srdistill.core.degradations import bicubic_upscale
from srdistill.core.errors import SRDistillError, first_line
from srdistill.core.features import colour_texture_descriptor
from srdistill.core.imageio import list_images, read_image
from srdistill.core.json_store import JsonStore
from srdistill.core.manifest import read_manifest
from srdistill.core.safe_load import load_checkpoint
from srdistill.core.set_diagnostics import coverage, diversity, gradient_energy
from srdistill_plugin.data.hr_source import HRImageSource
from srdistill_plugin.data.hr_only_dataset import read_class_info
from srdistill_plugin.metrics.y_channel import y_psnr, y_ssim

from .options import ExperimentOptions


@lru_cache(maxsize=8)
def paired_set(folder: str, scale: int) -> tuple[tuple[str, np.ndarray, np.ndarray], ...]:
    """``(name, LR, HR)`` uint8 BGR pairs of ``folder/HR`` and ``folder/LR_bicubic/X<scale>/<name>x<scale>.*``;
    HR cropped to ``scale`` x the LR size, as BasicSR's ``PairedImageDataset`` does."""
    pairs = []
    for hr_path in list_images(Path(folder) / 'HR'):
        lr_dir = Path(folder) / 'LR_bicubic' / f'X{scale}'
        lr_path = next(iter(sorted(lr_dir.glob(f'{hr_path.stem}x{scale}.*'))), None)
        if lr_path is None:
            raise SRDistillError(f'{lr_dir}: no LR image {hr_path.stem}x{scale}.* for {hr_path}')
        lr, hr = (cv2.imread(str(p), cv2.IMREAD_COLOR) for p in (lr_path, hr_path))
        pairs.append((hr_path.stem, lr, hr[:lr.shape[0] * scale, :lr.shape[1] * scale]))
    return tuple(pairs)


def load_student(network_opt: dict, checkpoint: Path, device: torch.device | str = 'cpu') -> torch.nn.Module:
    """A BasicSR network with the EMA weights of ``checkpoint`` when it has them, on ``device``."""
    net = build_network(dict(network_opt))
    try:
        state = load_checkpoint(checkpoint)
    except (OSError, RuntimeError, EOFError) as err:
        raise SRDistillError(f'{checkpoint}: cannot read the checkpoint ({first_line(err)})') from err
    net.load_state_dict(state.get('params_ema', state.get('params', state)))
    net.pad_multiple = int(network_opt.get('window_size', 1))  # window attention (SwinIR) needs padded inputs
    return net.eval().to(device)


@torch.no_grad()
def super_resolve(net: torch.nn.Module | None, lr: np.ndarray, scale: int) -> np.ndarray:
    """uint8 BGR SR image of a uint8 BGR LR image (``net`` None: MATLAB bicubic)."""
    if net is None:
        return (bicubic_upscale(lr.astype(np.float32) / 255., scale) * 255.).round().astype(np.uint8)
    x = img2tensor(lr.astype(np.float32) / 255., bgr2rgb=True, float32=True)[None].to(next(net.parameters()).device)
    h, w = x.shape[2:]
    multiple = getattr(net, 'pad_multiple', 1)
    pad_h, pad_w = -h % multiple, -w % multiple  # mirrored, as BasicSR's SwinIRModel.test pads
    x = torch.cat([x, torch.flip(x, [2])], 2)[:, :, :h + pad_h] if pad_h else x
    x = torch.cat([x, torch.flip(x, [3])], 3)[:, :, :, :w + pad_w] if pad_w else x
    out = net(x)[:, :, :h * scale, :w * scale]
    return tensor2img(out, rgb2bgr=True)


def evaluate(net: torch.nn.Module | None, folder: str | Path, scale: int, ssim: bool = True) -> dict:
    """Mean PSNR (and SSIM) on Y over the pairs of ``folder``, border ``scale`` cropped."""
    psnr, ssim_values = [], []
    for _, lr, hr in paired_set(str(folder), scale):
        sr = super_resolve(net, lr, scale)
        psnr.append(y_psnr(sr, hr, scale, 'basicsr'))
        if ssim:
            ssim_values.append(y_ssim(sr, hr, scale))
    return {'psnr': float(np.mean(psnr)), **({'ssim': float(np.mean(ssim_values))} if ssim else {})}


def pool_reference_patches(pool: Path, count: int, size: int, seed: int) -> list[np.ndarray]:
    """``count`` uniformly random ``size`` patches of the pool's photographs (float BGR)."""
    rng = np.random.default_rng(seed)
    paths = list_images(pool)
    picks = np.bincount(rng.integers(len(paths), size=count), minlength=len(paths))
    patches = []
    for path, n in zip(paths, picks):
        if n:
            img = read_image(path, min_size=size)
            for _ in range(n):
                y, x = rng.integers(img.shape[0] - size + 1), rng.integers(img.shape[1] - size + 1)
                patches.append(img[y:y + size, x:x + size])
    return patches


def set_diagnostics(lmdb: Path, reference_features: np.ndarray) -> dict:
    """Patches per class, coverage of the reference (pool) patches, diversity, and gradient energies, in the
    colour-texture descriptor space."""
    source = HRImageSource(lmdb, {'type': 'lmdb'})
    images = [source.read(i) for i in range(len(source))]
    features = np.stack([colour_texture_descriptor(img) for img in images])
    class_file = lmdb / 'class_info.txt'
    classes = read_class_info(class_file, source.keys) if class_file.is_file() else [0] * len(images)
    return {'num_patches': len(images), 'patches_per_class': np.bincount(classes).tolist(),
            'coverage': coverage(reference_features, features), 'diversity': diversity(features),
            'gradient_energy': [gradient_energy(img) for img in images]}


def distilled_set_diagnostics(exp: ExperimentOptions, work: Path, train_dir: Path, arms: list[str]) -> dict:
    """Per distilled set of ``arms`` made so far: its diagnostics (cached in ``work/diagnostics.json``), and under
    ``pool`` the gradient energies of 1,000 random pool patches (their features the coverage reference)."""
    store = JsonStore(work / 'diagnostics.json')
    ref_file = work / 'pool_reference_features.npy'
    if store.get('pool') is None or not ref_file.is_file():
        patch = exp.distill.get('select', {}).get('patch_size', 64)
        reference = pool_reference_patches(train_dir, 1000, patch, seed=0)
        np.save(ref_file, np.stack([colour_texture_descriptor(p) for p in reference]))
        store.put('pool', {'gradient_energy': [gradient_energy(p) for p in reference]})
    ref_features = np.load(ref_file)
    for arm in arms:
        for b in exp.budgets_percent:
            key, lmdb = f'{arm}_{b:g}pct', work / 'data' / f'{arm}_{b:g}pct' / 'HR.lmdb'
            if store.get(key) is None and lmdb.is_dir():
                synth = read_manifest(lmdb.parent / 'manifest.json')
                store.put(key, {**set_diagnostics(lmdb, ref_features), 'arm': arm, 'budget': b,
                                'seed_residual_std': synth.get('seed_residual_std'),
                                'feature_description': synth.get('feature_description')})
    return store.data
