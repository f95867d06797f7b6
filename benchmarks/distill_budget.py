"""Distilled data vs random / selected real patches vs the full pool, at the same pixel budget (x4).

Every arm trains the same CPU-sized SwinIR (options/swinir_*_x4.yml) for the same iterations and seed, then is
tested on Set5/Set14 (PSNR/SSIM on Y, border 4). One more arm trains on the distilled set for a tenth of the
iterations (the paper's claim is about SR training time). Writes benchmarks/results/distill_budget_<tag>{.json,.md}.

  python benchmarks/distill_budget.py                          # ../shared pool, ~40 min on 2 cores
  python benchmarks/distill_budget.py --finetune-iters 20000 --sr-iters 20000 --tag gpu     # scaled up

Stages resume: the distillation through its manifests, SR training through --auto_resume, tests are re-run.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import yaml

from benchmarks.common import ROOT, pin_threads, run_tool, write_results
from srdistill_plugin.core.lmdb_io import read_meta_keys
from srdistill_plugin.core.prepare import PrepareOptions, prepare_lmdbs

ARMS = {  # arm -> (distill mode or None for the full pool, SR options file)
    'full_pool': (None, 'options/swinir_full_pool_x4.yml'),
    'random_real': ('random_real', 'options/swinir_random_real_x4.yml'),
    'selected_real': ('selected_real', 'options/swinir_selected_real_x4.yml'),
    'distilled': ('sdedit', 'options/swinir_distilled_x4.yml'),
}


def parse_args() -> argparse.Namespace:
    shared = ROOT.parent / 'shared' / 'data'
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--pool', default=str(shared / 'pool' / 'SunHays80'))
    p.add_argument('--sets', nargs='+', default=[str(shared / 'benchmarks' / s) for s in ('Set5', 'Set14')],
                   help='benchmark folders with HR/ and LR_bicubic/X4/ (imgNNNx4.png)')
    p.add_argument('--budget-percent', type=float, default=0.68, help="distilled pixels as % of the pool's")
    p.add_argument('--num-classes', type=int, default=7)
    p.add_argument('--finetune-iters', type=int, default=600)
    p.add_argument('--sr-iters', type=int, default=1500)
    p.add_argument('--threads', type=int, default=2)
    p.add_argument('--work', default=str(ROOT / 'benchmarks' / 'work' / 'distill'))
    p.add_argument('--tag', default='cpu')
    return p.parse_args()


def distill_options(args, work: Path, mode: str) -> Path:
    opt = yaml.safe_load((ROOT / 'options' / 'distill_x4.yml').read_text())
    opt.update(name=f'bench_{args.tag}_{mode}_x4', pool=args.pool, output=str(work / mode))
    opt['categorize']['num_classes'] = args.num_classes
    opt['finetune']['train']['total_iter'] = args.finetune_iters
    opt['finetune']['logger']['use_tb_logger'] = False
    opt['synthesize'] = {**opt['synthesize'], 'mode': mode, 'budget_percent': args.budget_percent}
    opt['synthesize'].pop('per_class', None)
    path = work / f'distill_{mode}.yml'
    path.write_text(yaml.safe_dump(opt))
    return path


def test_options(args, work: Path, arm: str, weights: Path | None) -> Path:
    """The standard test of ``weights`` (None: the bicubic baseline) on every benchmark set."""
    template_file = 'test_swinir_x4_demo.yml' if weights else 'test_bicubic_x4.yml'
    opt = yaml.safe_load((ROOT / 'options' / 'test' / template_file).read_text())
    opt['name'] = f'bench_{arm}'
    opt['path'].update(pretrain_network_g=str(weights) if weights else None, results_root=str(work / 'results'))
    template = opt['datasets'].pop('test_1')
    for i, folder in enumerate(map(Path, args.sets), start=1):
        opt['datasets'][f'test_{i}'] = {**template, 'name': folder.name, 'dataroot_gt': str(folder / 'HR'),
                                        'dataroot_lq': str(folder / 'LR_bicubic' / 'X4')}
    path = work / f'test_{arm}.yml'
    path.write_text(yaml.safe_dump(opt))
    return path


def evaluate(args, work: Path, arm: str, weights: Path | None) -> dict:
    run_tool('tools/test.py', '-opt', str(test_options(args, work, arm, weights)))
    return json.loads((work / 'results' / f'bench_{arm}' / 'metrics.json').read_text())['results']


def main() -> None:
    args = parse_args()
    env = pin_threads(args.threads)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    pool_lmdb = work / 'pool' / 'HR.lmdb'
    if not pool_lmdb.exists():
        prepare_lmdbs(args.pool, pool_lmdb.parent, PrepareOptions(crop_size=192, step=192, scales=(4, )))

    stage_times, data, results = {}, {}, {}
    for arm, (mode, _) in ARMS.items():
        if mode is None:
            data[arm] = pool_lmdb
            continue
        stage_times[arm] = run_tool('tools/distill.py', '-opt', str(distill_options(args, work, mode)))
        data[arm] = work / mode / 'HR.lmdb'
    runs = {arm: (options, args.sr_iters, data[arm]) for arm, (_, options) in ARMS.items()}
    runs['distilled_tenth_iters'] = (ARMS['distilled'][1], max(args.sr_iters // 10, 1), data['distilled'])
    for arm, (options, iters, lmdb) in runs.items():
        name = f'bench_SwinIR_{arm}'
        train_s = run_tool('tools/train.py', '-opt', options, '--auto_resume', '--force_yml', f'name={name}',
                           f'datasets:train:dataroot_gt={lmdb}', f'path:experiments_root={work / "experiments"}',
                           f'train:total_iter={iters}', 'val:val_freq=1000000', 'logger:use_tb_logger=False',
                           f'logger:save_checkpoint_freq={max(iters // 3, 1)}')
        metrics = evaluate(args, work, arm, work / 'experiments' / name / 'models' / 'net_g_latest.pth')
        keys = read_meta_keys(lmdb)
        results[arm] = {'metrics': metrics, 'sr_iters': iters, 'sr_train_s': train_s, 'num_images': len(keys),
                        'lmdb_mb': sum(f.stat().st_size for f in lmdb.iterdir()) / 2 ** 20}
    results['bicubic'] = {'metrics': evaluate(args, work, 'bicubic', None), 'sr_iters': 0, 'sr_train_s': 0,
                          'num_images': 0, 'lmdb_mb': 0}
    sets = [Path(s).name for s in args.sets]
    head = '| arm | HR images | LMDB (MB) | SR iters | SR train (s) | ' + ' | '.join(f'{s} PSNR / SSIM' for s in sets) + ' |'
    lines = [head, '|---' * (head.count('|') - 1) + '|']
    for arm, r in results.items():
        cells = ' | '.join(f"{r['metrics'][s]['psnr']:.2f} / {r['metrics'][s]['ssim']:.4f}" for s in sets)
        lines.append(f"| {arm} | {r['num_images']} | {r['lmdb_mb']:.1f} | {r['sr_iters']} | {r['sr_train_s']:.0f} | {cells} |")
    gaps = {s: {'distilled_minus_random': results['distilled']['metrics'][s]['psnr'] - results['random_real']['metrics'][s]['psnr'],
                'distilled_minus_full': results['distilled']['metrics'][s]['psnr'] - results['full_pool']['metrics'][s]['psnr'],
                'selected_minus_random': results['selected_real']['metrics'][s]['psnr'] - results['random_real']['metrics'][s]['psnr']}
            for s in sets}
    distill_manifest = json.loads((work / 'sdedit' / 'manifest.json').read_text())
    markdown = (f'# SR data distillation at a {args.budget_percent}% budget, x4 ({args.tag})\n\n'
                f'Pool: {args.pool} ({len(read_meta_keys(pool_lmdb))} sub-images of 192 px). Grouping features: '
                f'{distill_manifest["feature_description"]}. Diffusion: {args.finetune_iters} fine-tuning iterations, '
                f'synthesis mode {distill_manifest["mode"]}. Threads: {env["torch_threads"]} on {env["device"]}.\n\n'
                + '\n'.join(lines) + '\n\nPSNR gaps (dB): ' + '; '.join(
                    f'{s}: distilled − random {g["distilled_minus_random"]:+.2f}, distilled − full '
                    f'{g["distilled_minus_full"]:+.2f}, selected − random {g["selected_minus_random"]:+.2f}'
                    for s, g in gaps.items())
                + '\n\nDistillation stage wall times (s): ' + ', '.join(f'{k} {v:.0f}' for k, v in stage_times.items()) + '\n')
    write_results(f'distill_budget_{args.tag}', {'args': vars(args), 'env': env, 'stage_times_s': stage_times,
                                                 'results': results, 'gaps_db': gaps}, markdown)


if __name__ == '__main__':
    main()
