"""The official MZSR pretrained network (converted from ../shared/data/mzsr_official) on the papers' protocol, before
any meta-transfer: Set5 x2 with MATLAB-bicubic LR (its own training degradation), then the four MZSR kernels with
0, 1 and 10 adaptation steps from this start, beside the paper's Set5 bicubic and MZSR(1) columns.

    python -m benchmarks.mzsr_official_start [--prefix PREFIX] [--sets DIR ...] [--threads 1]

Writes benchmarks/results/mzsr_official_start_cpu.{json,md}.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch

from benchmarks.common import PAPER_BICUBIC_SET5, PAPER_MZSR1_SET5, ROOT, SCALE, mean, pin_threads, write_results
from srdistill_plugin.archs.mzsr_arch import MZSRNet
from srdistill.core.kernels import eval_kernel
from srdistill.core.matlab_resize import matlab_resize
from srdistill_plugin.zero_shot.official_weights import official_mzsr_state_dict
from srdistill_plugin.zero_shot.protocol import benchmark_images, mzsr_rows, official_lr
from srdistill_plugin.metrics.y_channel import tensor_psnr


def parse_args() -> argparse.Namespace:
    shared = ROOT.parent / 'shared' / 'data'
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--prefix', default=str(shared / 'mzsr_official' / 'Pretrained'))
    p.add_argument('--sets', nargs='+', default=[str(shared / 'benchmarks' / s) for s in ('Set5', 'Set14')])
    p.add_argument('--threads', type=int, default=1)
    return p.parse_args()


def main() -> None:
    args = parse_args()
    env = pin_threads(args.threads)
    net = MZSRNet(upscale=SCALE)
    net.load_state_dict(official_mzsr_state_dict(args.prefix))
    net.eval()
    summary, lines = {}, []
    for set_dir in map(Path, args.sets):
        images = [hr for _, hr in benchmark_images(set_dir, SCALE)]
        with torch.no_grad():
            rows = [(tensor_psnr(matlab_resize(lr, SCALE), hr, SCALE), tensor_psnr(net(lr), hr, SCALE))
                    for hr in images for lr in [(matlab_resize(hr, 1 / SCALE).clamp(0, 1) * 255).round() / 255]]
        summary[f'{set_dir.name}/bicubic_lr'] = {'bicubic': mean(r[0] for r in rows), 'pretrained': mean(r[1] for r in rows)}
        for kernel_name in PAPER_BICUBIC_SET5:
            schedule = 'bicubic_x2' if eval_kernel(kernel_name)[1] == 'bicubic' else 'direct_x2'
            rows = []
            for hr in images:
                lr, kernel, downsample = official_lr(hr, kernel_name, SCALE)
                with torch.no_grad():
                    row = {'bicubic': tensor_psnr(matlab_resize(lr, SCALE), hr, SCALE)}
                row.update({k: v[0] for k, v in mzsr_rows(net, lr, kernel, downsample, hr, SCALE, (0, 1, 10),
                                                           schedule).items()})
                rows.append(row)
            summary[f'{set_dir.name}/{kernel_name}'] = {k: mean(r[k] for r in rows) for k in rows[0]}
            print(set_dir.name, kernel_name, summary[f'{set_dir.name}/{kernel_name}'], flush=True)
    for key, s in summary.items():
        set_name, case = key.split('/')
        if case == 'bicubic_lr':
            lines.append(f'| {set_name} | MATLAB bicubic LR (training degradation) | {s["bicubic"]:.2f} | | '
                         f'{s["pretrained"]:.2f} | | | |')
            continue
        paper = (f'{PAPER_BICUBIC_SET5[case]:.2f} / {PAPER_MZSR1_SET5[case]:.2f}' if set_name == 'Set5' else '')
        lines.append(f'| {set_name} | {case} | {s["bicubic"]:.2f} | {paper} | {s["mzsr0"]:.2f} | {s["mzsr1"]:.2f} | '
                     f'{s["mzsr10"]:.2f} | {s["mzsr1"] - s["bicubic"]:+.2f} |')
    table = ('| set | LR | bicubic | paper bicubic / MZSR(1) | pretrained (0 steps) | 1 step | 10 steps | '
             '1 step − bicubic |\n|---|---|---|---|---|---|---|---|\n' + '\n'.join(lines))
    markdown = (f'# The official MZSR pretrained network, x2, before meta-transfer (cpu)\n\nWeights: '
                f'`{args.prefix}` (TensorFlow bundle, converted by `scripts/convert_official_mzsr.py`; not shipped). '
                'PSNR on 8-bit-rounded Y, border 2, mean over each set; LR as in `mzsr_adaptation_cpu.md` (the paper\'s '
                'kernels, official subsampling grid, 8-bit). "1 step" / "10 steps": test-time adaptation (son -> LR, '
                'the official step sizes) from this start *without* meta-transfer, i.e. the paper\'s "pretrained + '
                'fine-tuning" reading, not MZSR. The bicubic column reproduces the paper\'s Set5 column, so the '
                f'protocol is the paper\'s. Threads: {env["torch_threads"]} on {env["device"]}.\n\n{table}\n')
    write_results('mzsr_official_start_cpu', {'args': vars(args), 'env': env, 'summary': summary}, markdown)


if __name__ == '__main__':
    main()
