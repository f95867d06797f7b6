"""BasicSR vs MMagic parity: the same LMDB, network size, iterations and seed trained through both frameworks
(tools/train.py with options/swinir_distilled_x4.yml; tools/mm_train.py with configs/swinir_distilled_x4.py),
then Set5 PSNR/SSIM (Y, border 4) and iterations per second side by side.
Writes benchmarks/results/mm_parity_<tag>{.json,.md}.

  python -m benchmarks.mm_parity --lmdb experiments/sunhays80_x4/data/distilled_0.68pct/HR.lmdb --threads 1
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from benchmarks.common import ROOT, pin_threads, run_tool, write_results
from srdistill_plugin.engine.train import read_training_record


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--lmdb', default=str(ROOT / 'experiments' / 'sunhays80_x4' / 'data' / 'distilled_0.68pct' / 'HR.lmdb'),
                   help='an HR LMDB with class_info.txt (a distilled set; default: the one srdistill-experiment makes)')
    p.add_argument('--iters', type=int, default=1500)
    p.add_argument('--threads', type=int, default=2)
    p.add_argument('--work', default=str(ROOT / 'benchmarks' / 'work' / 'parity'))
    p.add_argument('--tag', default='cpu')
    return p.parse_args()


def basicsr_arm(args, work: Path) -> dict:
    name = 'parity_SwinIR_x4_basicsr'
    start = time.perf_counter()
    run_tool('tools/train.py', '-opt', 'options/swinir_distilled_x4.yml', '--auto_resume', '--force_yml', f'name={name}',
             f'datasets:train:dataroot_gt={args.lmdb}', f'path:experiments_root={work}', f'train:total_iter={args.iters}',
             'val:val_freq=1000000', 'logger:use_tb_logger=False', f'logger:save_checkpoint_freq={args.iters}',
             'train:ema_decay=0', f'logger:print_freq={max(args.iters // 20, 1)}',
             # the MMagic config's crops and batch; it has no RGB permutation (the BasicSR options' tiny-set recipe)
             'datasets:train:gt_size=64', 'datasets:train:batch_size_per_gpu=8', 'datasets:train:rgb_permute=0')
    wall = time.perf_counter() - start
    record = read_training_record(work / name)  # the train loop's training.json
    final = record['validation'][max(record['validation'], key=int)]
    metrics = next(iter(final.values()))
    iterations = sum(s['to'] - s['from'] for s in record['stretches'])
    return {'psnr': metrics['psnr'], 'ssim': metrics['ssim'], 'wall_s': wall,
            'it_per_s': iterations / sum(s['seconds'] for s in record['stretches'])}


def mmagic_arm(args, work: Path) -> dict:
    out = work / 'mmagic'
    start = time.perf_counter()
    run_tool('tools/mm_train.py', 'configs/swinir_distilled_x4.py', '--work-dir', str(out), '--cfg-options',
                        f'train_dataloader.dataset.data_root={args.lmdb}', f'train_cfg.max_iters={args.iters}',
                        f'train_cfg.val_interval={args.iters}', f'default_hooks.checkpoint.interval={args.iters}',
                        f'default_hooks.logger.interval={max(args.iters // 20, 1)}')
    wall = time.perf_counter() - start
    scalars = [json.loads(line) for path in sorted(out.glob('*/vis_data/scalars.json'))  # MMEngine's own record
               for line in path.read_text().splitlines() if line.strip()]
    final = [r for r in scalars if 'PSNR' in r][-1]
    iter_time = [r['time'] for r in scalars if 'loss' in r]
    return {'psnr': final['PSNR'], 'ssim': final['SSIM'], 'wall_s': wall,
            'it_per_s': 1 / (sum(iter_time) / len(iter_time))}


def main() -> None:
    args = parse_args()
    env = pin_threads(args.threads)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    arms = {'BasicSR (SwinIR, tools/train.py)': basicsr_arm(args, work),
            'MMagic (SwinIRNet, tools/mm_train.py)': mmagic_arm(args, work)}
    (b, bv), (m, mv) = arms.items()
    lines = ['| framework | Set5 PSNR | Set5 SSIM | it/s | wall (s) |', '|---|---|---|---|---|']
    lines += [f"| {k} | {v['psnr']:.2f} | {v['ssim']:.4f} | {v['it_per_s']:.2f} | {v['wall_s']:.0f} |" for k, v in arms.items()]
    markdown = (f'# BasicSR vs MMagic parity ({args.tag})\n\nSame LMDB ({args.lmdb}), SwinIR x4 (2 stages, 36 channels, '
                f'window 8), {args.iters} iterations, batch 8, Adam 1e-3, seed 0, class-balanced sampling, no EMA. '
                f'Threads: {env["torch_threads"]} on {env["device"]}.\n\n' + '\n'.join(lines) +
                f"\n\nPSNR difference: {mv['psnr'] - bv['psnr']:+.3f} dB. Throughput MMagic / BasicSR: "
                f"{mv['it_per_s'] / bv['it_per_s']:.2f} (iterations per second from each framework's own record: BasicSR's training.json stretches, MMEngine's scalars.json).\n")
    write_results(f'mm_parity_{args.tag}', {'args': vars(args), 'env': env, 'arms': arms,
                                            'psnr_diff_db': mv['psnr'] - bv['psnr'],
                                            'it_per_s_ratio': mv['it_per_s'] / bv['it_per_s']}, markdown)


if __name__ == '__main__':
    main()
