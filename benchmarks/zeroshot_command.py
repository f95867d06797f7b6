"""The zero-shot command as a user runs it: ``srdistill-zeroshot`` on a 256x256 LR photograph the project ships
(Set5's img_001, 512x512, MATLAB-bicubic downscaled), with each shipped model, 1 and 10 steps, the default
kernel. Records the command's wall time (process start to SR image written) and the adaptation time it reports, each
run beside a bare ``python -c "import torch"`` timed just before it, ``--repeats`` times (the median ratio is
reported: on a shared machine single timings scatter by a third). Then
the shipped x2 models' quality on the paper's protocol through the same command (``--gt``): Set5 degraded by g^d_2.0
(directx2) and g^b_1.3 (bicubicx2), MZSR(1) and MZSR(10), each also with the x8 self-ensemble (``--ensemble``).

    python -m benchmarks.zeroshot_command [--threads 2] [--repeats 3]

Writes benchmarks/results/zeroshot_command_cpu.{json,md}.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

import cv2

from benchmarks.common import PAPER_BICUBIC_SET5, PAPER_MZSR1_SET5, ROOT, pin_threads, write_results
from srdistill.core.degradations import bicubic_downscale
from srdistill.core.imageio import read_image, to_uint8
from srdistill.zero_shot.zoo import ZOO, estimate_by_default

SIDE = 256


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--threads', type=int, default=2)
    p.add_argument('--repeats', type=int, default=3, help='timed pairs per row (the median ratio is reported)')
    return p.parse_args()


def main() -> None:
    args = parse_args()
    env_info = pin_threads(args.threads)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        hr = read_image(ROOT / 'datasets' / 'Set5' / 'HR' / 'img_001.png')
        lr = bicubic_downscale(hr, 2)
        y, x = (lr.shape[0] - SIDE) // 2, (lr.shape[1] - SIDE) // 2
        photo = Path(tmp) / 'photo.png'
        cv2.imwrite(str(photo), to_uint8(lr[max(y, 0):y + SIDE, max(x, 0):x + SIDE]))
        size = read_image(photo).shape[:2]
        env = {**os.environ, 'OMP_NUM_THREADS': str(args.threads)}
        for model in ZOO:
            # the default kernel, and for a model whose default is the estimate also its fixed kernel
            kernels = [None] + (['gd2.0'] if estimate_by_default(model) else [])
            for kernel, steps in [(k, s) for k in kernels for s in (1, 10)]:
                runs = []
                for repeat in range(args.repeats):
                    out = Path(tmp) / f'{model}_{steps}_{kernel}_{repeat}'
                    torch_s = wall_seconds(['python', '-c', 'import torch'], env, tmp)  # the same moment's baseline
                    wall = wall_seconds(['srdistill-zeroshot', str(photo), '--output', str(out), '--model', model,
                                         '--steps', str(steps), '--threads', str(args.threads),
                                         *(['--kernel', kernel] if kernel else [])], env, tmp)
                    summary = json.loads((out / 'results.json').read_text())
                    runs.append({'wall_s': wall, 'import_torch_s': torch_s, 'ratio': wall / torch_s,
                                 'kernel_s': summary['kernel_time_s'], 'adapt_s': summary['mean_adapt_time_s'],
                                 'infer_s': summary['images'][0]['infer_time_s']})
                    print(model, kernel, steps, runs[-1], flush=True)
                median = sorted(runs, key=lambda r: r['ratio'])[len(runs) // 2]  # the run with the median ratio
                rows.append({'model': model, 'steps': steps, 'kernel': kernel_mode(summary['kernel'], kernel),
                             **median, 'ratio_range': [min(r['ratio'] for r in runs), max(r['ratio'] for r in runs)],
                             'runs': runs})
        quality = set5_quality(Path(tmp), env)
    table = ('| model | kernel | steps | command wall time (s) | `python -c "import torch"` just before (s) | '
             f'ratio (median of {args.repeats}) | ratio range | kernel (s) | adaptation (s) | inference + PNG (s) | '
             'the rest: start-up, imports, load (s) |\n|---|---|---|---|---|---|---|---|---|---|---|\n' + '\n'.join(
                 f'| {r["model"]} | {r["kernel"]} | {r["steps"]} | {r["wall_s"]:.1f} | {r["import_torch_s"]:.1f} | '
                 f'{r["ratio"]:.2f} | {r["ratio_range"][0]:.2f}–{r["ratio_range"][1]:.2f} | {r["kernel_s"]:.2f} | '
                 f'{r["adapt_s"]:.2f} | {r["infer_s"]:.2f} | '
                 f'{r["wall_s"] - r["kernel_s"] - r["adapt_s"] - r["infer_s"]:.2f} |' for r in rows))
    quality_table = ('| model | Set5 kernel | bicubic (paper) | MZSR(1) | MZSR(10) | MZSR(1), x8 ensemble | '
                     'MZSR(10), x8 ensemble | paper MZSR(1) |\n|---|---|---|---|---|---|---|---|\n'
                     + '\n'.join(f'| {m} | {k} | {PAPER_BICUBIC_SET5[k]:.2f} | {q["1"]:.2f} | {q["10"]:.2f} | '
                                  f'{q["1_ensemble"]:.2f} | {q["10_ensemble"]:.2f} | {PAPER_MZSR1_SET5[k]:.2f} |'
                                  for (m, k), q in quality.items()))
    markdown = (f'# srdistill-zeroshot on a {size[1]}x{size[0]} LR photograph (cpu)\n\nThe shipped weights, the '
                f'default kernel (where that is the learned estimate, also the fixed g^d_2.0), Set5 img_001 downscaled '
                f'x2 (MATLAB bicubic). Wall time: the whole command (Python start, imports, model load, kernel '
                f'estimate, adaptation, inference, PNG write), each beside a bare `python -c "import torch"` timed just '
                f'before it (the ratio), {args.repeats} times per row; the row shows the run with the median ratio. '
                f'Threads: '
                f'{env_info["torch_threads"]} on {env_info["device"]}.\n\n{table}\n\n## The shipped x2 models on the '
                f'paper\'s protocol (Set5, PSNR on 8-bit Y, border 2, through the same command with --gt)\n\n'
                f'{quality_table}\n\nHow the weights were trained: `srdistill/zero_shot/weights/zoo.json`.\n')
    write_results('zeroshot_command_cpu', {'env': env_info, 'lr_size': list(size), 'repeats': args.repeats,
                                           'rows': rows,
                                           'quality': {f'{m}/{k}': q for (m, k), q in quality.items()}}, markdown)


def kernel_mode(source: str, given: str | None) -> str:
    """How a run's kernel was had: given, the learned estimate, or the model's fixed default (from results.json)."""
    if given:
        return f'{given} (given)'
    return 'estimate (default)' if Path(source).name == 'kernels' else f'{Path(source).stem[len("kernel_"):]} (default)'


def wall_seconds(cmd: list[str], env: dict, cwd: str) -> float:
    """Wall time of one process, start to exit."""
    start = time.perf_counter()
    subprocess.run(cmd, check=True, env=env, cwd=cwd)
    return time.perf_counter() - start


def set5_quality(tmp: Path, env: dict) -> dict:
    """Mean PSNR of MZSR(1) and MZSR(10) over Set5 degraded as the paper degrades it, per shipped x2 model."""
    import torch

    from srdistill.core.degradations import mod_crop
    from srdistill.core.imageio import list_images
    from srdistill_plugin.zero_shot.protocol import official_lr

    quality = {}
    for model, kernel in (('directx2', 'gd2.0'), ('bicubicx2', 'gb1.3')):
        lr_dir, hr_dir = tmp / f'set5_{kernel}' / 'LR', tmp / f'set5_{kernel}' / 'HR'
        lr_dir.mkdir(parents=True)
        hr_dir.mkdir()
        for path in list_images(ROOT / 'datasets' / 'Set5' / 'HR'):
            hr = mod_crop(read_image(path), 2)
            lr = official_lr(torch.from_numpy(hr[:, :, ::-1].copy()).permute(2, 0, 1)[None], kernel, 2)[0]
            cv2.imwrite(str(hr_dir / path.name), to_uint8(hr))
            cv2.imwrite(str(lr_dir / path.name), to_uint8(lr[0].permute(1, 2, 0).numpy()[:, :, ::-1]))
        quality[(model, kernel)] = {}
        for steps, ensemble in ((1, False), (10, False), (1, True), (10, True)):
            name = f'{steps}{"_ensemble" if ensemble else ""}'
            out = tmp / f'q_{model}_{name}'
            subprocess.run(['srdistill-zeroshot', '--input', str(lr_dir), '--gt', str(hr_dir), '--output', str(out),
                            '--model', model, '--kernel', kernel, '--steps', str(steps),
                            *(['--ensemble'] if ensemble else [])], check=True, env=env)
            quality[(model, kernel)][name] = json.loads((out / 'results.json').read_text())['mean_psnr_y8']
            print(model, kernel, name, quality[(model, kernel)][name], flush=True)
    return quality


if __name__ == '__main__':
    main()
