"""The inputs of real zero-shot SR: given LR photographs, each with its blur kernel and, optionally, its HR image.

Every check here is cheap (file headers, kernel files) and runs before any adaptation; ``read_inputs`` then decodes
every image, so a truncated file stops the run before the first SR image is written.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .degradations import mod_crop
from .errors import SRDistillError
from .imageio import image_size, list_images, read_image
from .kernels import find_kernel, load_kernel


def to_tensor(img: np.ndarray) -> torch.Tensor:
    """float32 BGR HWC [0, 1] -> RGB CHW tensor."""
    return torch.from_numpy(np.ascontiguousarray(img[:, :, ::-1].transpose(2, 0, 1))).float()


def to_image(tensor: torch.Tensor) -> np.ndarray:
    """(1,) 3 x H x W RGB tensor in [0, 1] -> uint8 BGR HWC, rounded (what saving a PNG keeps)."""
    img = tensor.detach().squeeze(0).float().clamp(0, 1).cpu().numpy().transpose(1, 2, 0)[:, :, ::-1]
    return (img * 255.).round().astype(np.uint8)


def lr_image_paths(path: str | Path) -> list[Path]:
    """One LR photograph, or every image of a folder."""
    path = Path(path)
    return [path] if path.is_file() else list_images(path)


def paired_hr_paths(lq_paths: list[Path], gt_dir: str | Path | None, tmpl: str, scale: int) -> list[Path | None]:
    """The HR image of every LR image (``None`` without ``gt_dir``): the LR stem is ``tmpl.format(<HR stem>)``, and
    the mod-cropped HR must be the LR's size times ``scale``."""
    if not gt_dir:
        return [None] * len(lq_paths)
    try:
        by_lr_stem = {tmpl.format(p.stem): p for p in list_images(gt_dir)}
    except (IndexError, KeyError, ValueError) as err:
        raise SRDistillError(f"option filename_tmpl: {tmpl!r} is not a template with one '{{}}' ({err})") from err
    paired = []
    for lq_path in lq_paths:
        if lq_path.stem not in by_lr_stem:
            raise SRDistillError(f'{lq_path}: no HR image for it in {gt_dir} (filename_tmpl {tmpl!r})')
        gt_path = by_lr_stem[lq_path.stem]
        (lw, lh), (gw, gh) = image_size(lq_path), image_size(gt_path)
        if (gw - gw % scale, gh - gh % scale) != (lw * scale, lh * scale):
            raise SRDistillError(f'{gt_path}: HR is {gw}x{gh}, but LR {lq_path.name} is {lw}x{lh} and scale '
                                 f'{scale} needs {lw * scale}x{lh * scale}')
        paired.append(gt_path)
    return paired


def kernels_for(lq_paths: list[Path], kernel_file: str | Path | None = None,
                kernel_dir: str | Path | None = None) -> list[torch.Tensor]:
    """Each LR image's kernel: one ``kernel_file`` for all, or ``<kernel_dir>/<LR stem>.mat|.npy|.txt``; a kernel
    larger than its image is refused."""
    if bool(kernel_file) == bool(kernel_dir):
        raise SRDistillError('give exactly one of kernel_file, kernel_dir')
    if kernel_dir and not Path(kernel_dir).is_dir():
        raise SRDistillError(f'option kernel_dir: {kernel_dir} is not a folder')
    shared = torch.from_numpy(load_kernel(kernel_file)) if kernel_file else None
    kernels = [shared if shared is not None else torch.from_numpy(load_kernel(find_kernel(kernel_dir, p.stem)))
               for p in lq_paths]
    for path, kernel in zip(lq_paths, kernels):
        lw, lh = image_size(path)
        kh, kw = kernel.shape
        if kh > lh or kw > lw:
            raise SRDistillError(f'{path}: the {kw}x{kh} kernel is larger than the {lw}x{lh} image')
    return kernels


@dataclass
class ZeroShotInput:
    """One decoded LR photograph (RGB CHW), its mod-cropped HR image if one was given, and its kernel (set once
    the kernels are read or estimated)."""
    lq_path: Path
    lq: torch.Tensor
    gt: torch.Tensor | None = None
    kernel: torch.Tensor | None = None


def read_inputs(lq_paths: list[Path], gt_paths: list[Path | None], scale: int) -> list[ZeroShotInput]:
    """Decode every LR (and HR) image now: one that cannot be read stops the run before any estimation or
    adaptation."""
    return [ZeroShotInput(lq_path, to_tensor(read_image(lq_path)),
                          None if gt_path is None else to_tensor(mod_crop(read_image(gt_path), scale)))
            for lq_path, gt_path in zip(lq_paths, gt_paths)]
