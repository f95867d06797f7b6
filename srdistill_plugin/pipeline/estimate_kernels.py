"""Estimate the blur kernel of every LR image in a folder (KernelGAN-style, from each image alone) and save it as
``.npy`` + ``.mat`` + a preview PNG: the input that MZSR/ZSSR need for a real photo."""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from srdistill_plugin.core.errors import SRDistillError
from srdistill_plugin.core.imageio import image_size, list_images, read_image
from srdistill_plugin.core.kernel_estimation import KernelGANConfig, estimate_folder
from srdistill_plugin.core.io_checks import check_output_folder


def read_rgb(path: Path) -> np.ndarray:
    """Float32 RGB [0, 1] (greyscale replicated, 16-bit scaled, alpha dropped)."""
    return np.ascontiguousarray(read_image(path)[:, :, ::-1])


def input_images(source: str | Path, min_size: int) -> list[Path]:
    """The images of a folder (or one file), each checked to be decodable-sized and at least ``min_size`` px."""
    source = Path(source)
    paths = [source] if source.is_file() else list_images(source)
    for path in paths:
        width, height = image_size(path)
        if min(width, height) < min_size:
            raise SRDistillError(f"{path}: image is {width}x{height}, smaller than the estimator's {min_size}px crop")
    return paths


def check_scale(scale: int) -> int:
    if scale not in (2, 4):
        raise SRDistillError(f'option --scale: kernel estimation supports 2 or 4, got {scale}')
    return scale


def estimate_kernels(source: str | Path, out_dir: str | Path, scale: int, cfg: KernelGANConfig) -> dict[str, Path]:
    """Check everything, then estimate (skipping kernels already there from the same settings)."""
    check_scale(scale)
    paths = input_images(source, cfg.crop_size)
    check_output_folder(Path(out_dir))
    return estimate_folder(paths, Path(out_dir), scale, cfg, read_rgb)


def main(argv: list[str] | None = None) -> dict[str, Path]:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument('--input', required=True, help='folder of LR images (or one image)')
    p.add_argument('--output', required=True, help='folder for <stem>.npy, <stem>.mat, <stem>_kernel.png')
    p.add_argument('--scale', type=int, default=2, help='2 or 4 (x4 is derived from the estimated x2 kernel)')
    p.add_argument('--iters', type=int, default=KernelGANConfig.max_iters,
                   help=f'iterations per image (default {KernelGANConfig.max_iters}; the official 3000)')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--threads', type=int, default=None, help='torch CPU threads (default: torch decides)')
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    kernels = estimate_kernels(args.input, args.output, args.scale, KernelGANConfig(max_iters=args.iters, seed=args.seed))
    print(f'{len(kernels)} kernels -> {args.output}')
    return kernels
