"""Estimate the blur kernel of every LR image in a folder (KernelGAN-style, from each image alone) and save it as
``.npy`` + ``.mat`` + a preview PNG: the input that MZSR/ZSSR need for a real photo."""
from __future__ import annotations

import argparse
from pathlib import Path

import torch

from srdistill.core.kernel_estimation import KernelGANConfig, estimate_kernels


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
