"""Zero-shot SR of given LR photos with their blur kernels: MZSR's few-step adaptation per image (BasicSR-style
``inference/`` script). Every input is checked before the first adaptation; SR images are always written, metrics
only where an HR image is given."""
from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import numpy as np
import torch
import yaml
from PIL import Image
from tqdm import tqdm

from srdistill.core.atomic_io import atomic_path, atomic_write_text
from srdistill.core.errors import SRDistillError, first_line
from srdistill.core.io_checks import check_output_folder
from srdistill.core.kernel_predictor import estimate_folder_kernels, load_predictor
from srdistill.core.kernels import EVAL_KERNELS as NAMED_KERNELS
from srdistill.core.kernels import eval_kernel
from srdistill.core.mzsr_net import MZSRNet
from srdistill.core.official_psnr import psnr_y8
from srdistill.core.safe_load import UnsafeCheckpointError, load_checkpoint
from srdistill.core.zero_shot import STEP_SCHEDULES, mzsr_adapt, self_ensemble
from srdistill.core.zero_shot_inputs import (ZeroShotInput, kernels_for, lr_image_paths, paired_hr_paths, read_inputs,
                                             to_image)

from .zoo import DEFAULT_MODEL, ZOO, estimate_by_default, shipped_estimator, zoo_model

KERNELGAN_ITERS = 1000  # = KernelGANConfig.max_iters (tested); kernel_estimation is imported only to estimate
DEFAULT_KERNELS = {'direct': 'gd2.0', 'bicubic': 'gb1.3'}  # the centres of the meta-training kernels
ESTIMATORS = ('estimate', 'estimate-kernelgan')


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument('input_path', nargs='?', metavar='INPUT', help='an LR image or a folder of them (or --input)')
    p.add_argument('--input', help='an LR image or a folder of LR images (any size)')
    p.add_argument('--kernel', default=None,
                   help="one kernel file for all images (.mat, .npy, .txt), a folder of <LR stem>.mat|.npy|.txt, "
                        "'estimate' (each image's kernel predicted from the image itself by the shipped learned "
                        "estimator, or --estimator FILE; saved in OUTPUT/kernels), 'estimate-kernelgan' "
                        "(KernelGAN-style, trained on each image, minutes per image), or "
                        f"a named kernel of the paper ({', '.join(NAMED_KERNELS)}). Default: 'estimate' for a shipped "
                        "model whose estimator beat the fixed kernel on validation (directx2), else gd2.0 (gb1.3 for "
                        "a bicubic-subsampling model)")
    p.add_argument('--estimate-iters', type=int, default=KERNELGAN_ITERS,
                   help='KernelGAN iterations per image with --kernel estimate-kernelgan')
    p.add_argument('--estimator', default=None,
                   help='a learned kernel-estimator file for --kernel estimate (default: the shipped one)')
    p.add_argument('--output', required=True, help='folder for the SR images and results.json')
    p.add_argument('--steps', type=int, default=10, help='adaptation steps per image (default 10; the paper: 1 or 10)')
    p.add_argument('--model', default=DEFAULT_MODEL,
                   help=f'a shipped model ({", ".join(ZOO)}; default {DEFAULT_MODEL}) or a BasicSR .pth file')
    p.add_argument('--scale', type=int, default=None, help="default: the shipped model's, else 2")
    p.add_argument('--downsample', choices=('direct', 'bicubic'), default=None,
                   help="how the LR was made from the blurred image (default: the shipped model's, else direct)")
    p.add_argument('--schedule', choices=sorted(STEP_SCHEDULES), default=None,
                   help="step sizes (default: a shipped model's, those its checkpoint was chosen with; else "
                        "direct_x2, bicubic_x2 or direct_x4 from --downsample/--scale)")
    p.add_argument('--gt', default=None, help='optional folder of HR images (same stems, or see --filename-tmpl)')
    p.add_argument('--filename-tmpl', default='{}', help="LR stem = tmpl.format(HR stem), e.g. '{}x2'")
    p.add_argument('--ensemble', action='store_true',
                   help="ZSSR's test-time self-ensemble: the median of the adapted network's outputs on the 4 "
                        "rotations x mirror of each LR (8 inferences per image)")
    p.add_argument('--threads', type=int, default=None, help='torch CPU threads (default: torch decides)')
    return p.parse_args(argv)


def trained_scale(model_path: Path) -> int | None:
    """The ``scale`` of the options BasicSR copied into the experiment folder (``<exp>/*.yml``), if there is one."""
    for options in sorted(model_path.resolve().parent.parent.glob('*.yml')):
        try:
            scale = (yaml.safe_load(options.read_text()) or {}).get('scale')
        except (yaml.YAMLError, OSError, AttributeError):
            continue
        if isinstance(scale, int):
            return scale
    return None


def resolve_model(args: argparse.Namespace) -> argparse.Namespace:
    """``--model``: a file, or a shipped model whose scale and subsampling fill in ``--scale`` / ``--downsample``
    (given ones must agree). The input comes from ``--input`` or the positional path."""
    if bool(args.input) == bool(args.input_path):
        raise SRDistillError('give the LR image(s) once: as INPUT or as --input')
    args.input = args.input or args.input_path
    if Path(args.model).is_file() or args.model not in ZOO:
        args.scale, args.downsample = args.scale or 2, args.downsample or 'direct'
        args.kernel = args.kernel or DEFAULT_KERNELS[args.downsample]
        return args
    name, (path, model) = args.model, zoo_model(args.model)
    for option, given, trained in (('--scale', args.scale, model.scale), ('--downsample', args.downsample,
                                                                            model.downsample)):
        if given is not None and given != trained:
            raise SRDistillError(f'option {option}: the shipped {args.model} model is for {trained}, got {given}')
    args.model, args.scale, args.downsample = str(path), model.scale, model.downsample
    args.schedule = args.schedule or model.schedule
    args.kernel = args.kernel or ('estimate' if estimate_by_default(name) else DEFAULT_KERNELS[model.downsample])
    return args


def load_model(path: str, scale: int) -> MZSRNet:
    """The meta-learned MZSRNet at ``path`` (a BasicSR ``net_g_*.pth``), checked against ``scale``."""
    path = Path(path)
    if not path.is_file():
        raise SRDistillError(f'{path}: model file does not exist (give --model, or meta-train one with '
                             f'tools/train.py -opt options/mzsr_meta_x2_cpu.yml)')
    trained = trained_scale(path)
    if trained is not None and trained != scale:
        raise SRDistillError(f'{path}: this model was trained for scale {trained}, not --scale {scale}')
    try:
        state = load_checkpoint(path)
        net = MZSRNet(upscale=scale)
        net.load_state_dict(state.get('params', state))
    except UnsafeCheckpointError:
        raise
    except Exception as err:  # truncated file, another network's weights, ...
        raise SRDistillError(f'{path}: not a loadable MZSRNet checkpoint ({first_line(err)})') from err
    return net.eval()


def write_png(path: Path, img: np.ndarray) -> None:
    """Write a uint8 BGR image as a PNG under its partial name and rename it, so no half-written file stands under
    ``path`` (Pillow at OpenCV's default compression, level 1: the command never imports OpenCV)."""
    with atomic_path(path) as tmp:
        try:
            Image.fromarray(np.ascontiguousarray(img[:, :, ::-1])).save(tmp, format='PNG', compress_level=1)
        except (OSError, ValueError) as err:
            raise SRDistillError(f'{path}: could not write the image ({first_line(err)})') from err


def estimated_kernels(args: argparse.Namespace, inputs: list[ZeroShotInput], kernel_dir: Path) -> list[torch.Tensor]:
    """Each image's kernel estimated from the image itself into ``kernel_dir``: by the learned estimator
    (``--kernel estimate``), or KernelGAN-style (``estimate-kernelgan``; kernels already there from the same settings
    are reused)."""
    lq_paths = [item.lq_path for item in inputs]
    if args.kernel == 'estimate-kernelgan':
        from srdistill.core.kernel_estimation import KernelGANConfig, estimate_kernels

        estimate_kernels(args.input, kernel_dir, args.scale, KernelGANConfig(max_iters=args.estimate_iters))
        return kernels_for(lq_paths, kernel_dir=kernel_dir)
    source = Path(args.estimator) if args.estimator else shipped_estimator()
    net, settings, _ = load_predictor(source)
    if (settings.scale, settings.downsample) != (args.scale, args.downsample):
        raise SRDistillError(f'{source}: the learned estimator is for x{settings.scale} {settings.downsample} '
                             f'subsampling, this run is x{args.scale} {args.downsample} '
                             '(use --kernel estimate-kernelgan)')
    estimate_folder_kernels([(item.lq_path.stem, item.lq) for item in inputs], kernel_dir, net, settings,
                            log=tqdm.write)
    return kernels_for(lq_paths, kernel_dir=kernel_dir)


def main(argv: list[str] | None = None) -> dict:
    args = resolve_model(parse_args(argv))
    for option, value, low in (('--threads', args.threads, 1), ('--estimate-iters', args.estimate_iters, 1)):
        if value is not None and value < low:
            raise SRDistillError(f'option {option}: expected an integer >= {low}, got {value}')
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.scale not in (2, 3, 4):
        raise SRDistillError(f'option --scale: expected 2, 3 or 4, got {args.scale}')
    if args.steps < 0:
        raise SRDistillError(f'option --steps: must be >= 0, got {args.steps}')
    out = Path(args.output)
    made = not out.exists()
    try:
        return super_resolve(args, out)
    except BaseException:
        if made and out.is_dir():  # a failed run leaves no folder of its own behind
            shutil.rmtree(out, ignore_errors=True)
        raise


def super_resolve(args: argparse.Namespace, out: Path) -> dict:
    """Check every input, then adapt and super-resolve each LR image into ``out``; the summary written last."""
    net = load_model(args.model, args.scale)  # what can fail quickly fails before any estimation or adaptation
    lq_paths = lr_image_paths(args.input)
    gt_paths = paired_hr_paths(lq_paths, args.gt, args.filename_tmpl, args.scale)
    check_output_folder(out)
    inputs = read_inputs(lq_paths, gt_paths, args.scale)  # every image decoded before estimation or adaptation
    kernel_start = time.perf_counter()
    if args.kernel in NAMED_KERNELS:
        kernel_source = out / f'kernel_{args.kernel}.npy'
        np.save(kernel_source, eval_kernel(args.kernel)[0])
        kernels = kernels_for(lq_paths, kernel_file=kernel_source)
    elif args.kernel in ESTIMATORS:
        kernel_source = out / 'kernels'
        kernels = estimated_kernels(args, inputs, kernel_source)
    else:
        kernel_source = Path(args.kernel)
        kernels = kernels_for(lq_paths, **{'kernel_dir' if kernel_source.is_dir() else 'kernel_file': kernel_source})
    kernel_seconds = time.perf_counter() - kernel_start
    for item, kernel in zip(inputs, kernels):
        item.kernel = kernel
    schedule = args.schedule or ('bicubic_x2' if args.downsample == 'bicubic' else f'direct_x{args.scale}')
    if schedule not in STEP_SCHEDULES:
        raise SRDistillError(f'no official step sizes for scale {args.scale}; give --schedule')
    rows = []
    bar = tqdm(inputs, desc=f'MZSR({args.steps}) x{args.scale}', unit='img')
    for item in bar:
        adapted, seconds = mzsr_adapt(net, item.lq[None], item.kernel, args.scale, args.steps, args.downsample,
                                      schedule=schedule, progress=item.lq_path.stem)
        infer_start = time.perf_counter()
        with torch.no_grad():  # channels-last convolutions: 15-20 % faster forward on the CPU (slower backward)
            adapted = adapted.to(memory_format=torch.channels_last)
            lq = item.lq[None].contiguous(memory_format=torch.channels_last)
            grid_shift = args.scale - 1 if args.downsample == 'direct' else 0  # direct: HR pixels 0, s, 2s, ...
            sr = to_image(self_ensemble(adapted, lq, grid_shift) if args.ensemble else adapted(lq))
        name = item.lq_path.stem
        write_png(out / f'{name}_MZSR{args.steps}.png', sr)
        row = {'image': name, 'adapt_time_s': round(seconds, 4),
               'infer_time_s': round(time.perf_counter() - infer_start, 4)}  # the PNG write included
        if item.gt is not None:
            row['psnr_y8'] = round(psnr_y8(sr, to_image(item.gt), crop_border=args.scale), 4)
        rows.append(row)
        bar.set_postfix(adapt=f'{seconds:.2f}s', **({'psnr': f"{row['psnr_y8']:.2f}"} if 'psnr_y8' in row else {}))
    summary = {'model': str(args.model), 'kernel': str(kernel_source), 'steps': args.steps, 'scale': args.scale,
               'schedule': schedule, 'downsample': args.downsample, 'ensemble': args.ensemble, 'images': rows,
               'kernel_time_s': round(kernel_seconds, 4),  # all images' kernels: read, drawn or estimated
               'mean_adapt_time_s': float(np.mean([r['adapt_time_s'] for r in rows]))}
    if rows and all('psnr_y8' in r for r in rows):
        summary['mean_psnr_y8'] = float(np.mean([r['psnr_y8'] for r in rows]))
    atomic_write_text(out / 'results.json', json.dumps(summary, indent=2))
    print(f"{len(rows)} images -> {out} (mean adaptation {summary['mean_adapt_time_s']:.2f} s"
          + (f", PSNR-Y {summary['mean_psnr_y8']:.2f} dB" if 'mean_psnr_y8' in summary else '') + ')')
    return summary
