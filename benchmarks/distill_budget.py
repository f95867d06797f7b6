"""Distilled data vs random / selected real patches vs the full pool, at the same pixel budget (x4).

Every arm trains the same CPU-sized SwinIR (options/swinir_*_x4.yml) for the same iterations, once per seed, then is
tested on Set5/Set14 (PSNR/SSIM on Y, border 4). The ablation arm ``selected_noise`` takes the distilled set's seed
patches plus Gaussian noise of the same strength as the diffusion re-synthesis changed them (no diffusion model). The
checkpoints at 1/3 and 2/3 of training give PSNR-vs-iteration curves, from which the full pool's time to reach the
distilled set's quality is read; one more arm trains on the distilled set for a tenth of the iterations.
Writes benchmarks/results/distill_budget_<tag>{.json,.md} and each set's preview grid.

  python benchmarks/distill_budget.py                          # ../shared pool, ~2 h on 2 cores (30 min of it the 10x full-pool run)
  python benchmarks/distill_budget.py --finetune-iters 20000 --sr-iters 20000 --tag gpu     # scaled up

Stages resume: the distillation through its manifests, SR training through --auto_resume (its first wall time is
kept in the work folder), tests are re-run.
"""
from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import yaml

from benchmarks.common import RESULTS, ROOT, ResultCache, mean, pin_threads, run_tool, write_results
from srdistill_plugin.core.lmdb_io import read_meta_keys
from srdistill_plugin.core.prepare import PrepareOptions, prepare_lmdbs

ARMS = {  # arm -> (distill mode or None for the full pool, SR options file)
    'full_pool': (None, 'options/swinir_full_pool_x4.yml'),
    'random_real': ('random_real', 'options/swinir_random_real_x4.yml'),
    'selected_real': ('selected_real', 'options/swinir_selected_real_x4.yml'),
    'distilled': ('sdedit', 'options/swinir_distilled_x4.yml'),
    'selected_noise': ('selected_noise', 'options/swinir_selected_noise_x4.yml'),  # after 'distilled': its sigma
}


def parse_args() -> argparse.Namespace:
    shared = ROOT.parent / 'shared' / 'data'
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--pool', default=str(shared / 'pool' / 'SunHays80'))
    p.add_argument('--sets', nargs='+', default=[str(shared / 'benchmarks' / s) for s in ('Set5', 'Set14')],
                   help='benchmark folders with HR/ and LR_bicubic/X4/ (imgNNNx4.png)')
    p.add_argument('--budget-percent', type=float, default=0.68, help="distilled pixels as % of the pool's")
    p.add_argument('--num-classes', type=int, default=7)
    p.add_argument('--finetune-iters', type=int, default=1200)
    p.add_argument('--sr-iters', type=int, default=1500)
    p.add_argument('--seeds', type=int, nargs='+', default=[0, 1], help='SR training seeds (results are averaged)')
    p.add_argument('--full-pool-long-iters', type=int, default=None,
                   help='one more full-pool run (first seed) this long; default 10 x --sr-iters, 0: none')
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
    if mode == 'selected_noise':  # as strong a perturbation as the diffusion re-synthesis made
        sdedit = json.loads((work / 'sdedit' / 'manifest.json').read_text())
        opt['synthesize']['noise_sigma'] = round(sdedit['seed_residual_std'], 2)
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


def train(args, work: Path, first_times: ResultCache, run: str, options: str, iters: int, lmdb: Path,
          seed: int) -> dict:
    """One SwinIR training (resumable); its wall time is that of the run that finished it, and says if resumed."""
    name = f'bench_SwinIR_{run}'
    resumed = (work / 'experiments' / name / 'training_states').is_dir()
    overrides = [f'name={name}', f'manual_seed={seed}', f'datasets:train:dataroot_gt={lmdb}',
                 f'path:experiments_root={work / "experiments"}', f'train:total_iter={iters}', 'val:val_freq=1000000',
                 'logger:use_tb_logger=False', f'logger:save_checkpoint_freq={max(iters // 3, 1)}']
    train_opt = yaml.safe_load((ROOT / options).read_text())
    if train_opt['datasets']['train']['sampler']['type'] == 'ClassBalancedSampler':
        overrides.append(f'datasets:train:sampler:seed={seed}')
    # The learning-rate steps keep their place relative to --sr-iters in shorter and longer runs.
    milestones = [max(round(m * iters / args.sr_iters), 1) for m in train_opt['train']['scheduler']['milestones']]
    overrides.append(f'train:scheduler:milestones={milestones}'.replace(' ', ''))
    seconds = run_tool('tools/train.py', '-opt', options, '--auto_resume', '--force_yml', *overrides)
    if first_times.get(name) is None:
        first_times.put(name, {'seconds': seconds, 'resumed': resumed})
    return first_times.get(name)


def psnr_curve(args, work: Path, run: str, iters: int) -> dict:
    """PSNR of the 1/3 and 2/3 checkpoints and the final network, per benchmark set."""
    models = work / 'experiments' / f'bench_SwinIR_{run}' / 'models'
    points = sorted({iters // 3 * k for k in (1, 2)} - {0, iters})
    curve = {it: evaluate(args, work, f'{run}_it{it}', models / f'net_g_{it}.pth') for it in points}
    curve[iters] = evaluate(args, work, run, models / 'net_g_latest.pth')
    return {it: {s: m['psnr'] for s, m in metrics.items()} for it, metrics in curve.items()}


def iterations_to_reach(curve: dict, target: float, set_name: str) -> float | None:
    """The first iteration at which ``curve`` reaches ``target`` dB, linear between checkpoints (at most the first
    checkpoint's iteration if that one already does), or None if it never does."""
    points = sorted((int(it), psnr[set_name]) for it, psnr in curve.items())
    if points[0][1] >= target:
        return float(points[0][0])
    for (i0, p0), (i1, p1) in zip(points, points[1:]):
        if p1 >= target:
            return i0 + (i1 - i0) * (target - p0) / (p1 - p0)
    return None


def markdown_table(results: dict, sets: list[str], seeds: list[int]) -> list[str]:
    head = ('| arm | HR images | LMDB (MB) | SR iters | SR train (s) | '
            + ' | '.join(f'{s} PSNR / SSIM (seeds: ' + ', '.join(f'{x}' for x in seeds) + ')' for s in sets) + ' |')
    lines = [head, '|---' * (head.count('|') - 1) + '|']
    for arm, r in results.items():
        cells = ' | '.join(f"**{r['psnr'][s]:.2f}** / {r['ssim'][s]:.4f} ("
                           + ', '.join(f'{m[s]["psnr"]:.2f}' for m in r['per_seed']) + ')' for s in sets)
        train_s = ', '.join(f"{t['seconds']:.0f}{'*' if t['resumed'] else ''}" for t in r['sr_train'])
        lines.append(f"| {arm} | {r['num_images']} | {r['lmdb_mb']:.1f} | {r['sr_iters']} | {train_s} | {cells} |")
    return lines


def main() -> None:
    args = parse_args()
    env = pin_threads(args.threads)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    pool_lmdb = work / 'pool' / 'HR.lmdb'
    if not pool_lmdb.exists():
        prepare_lmdbs(args.pool, pool_lmdb.parent, PrepareOptions(crop_size=192, step=192, scales=(4, )))
    first_times = ResultCache(work / 'sr_train_times.json')

    stage_times, data, results, curves = {}, {}, {}, {}
    for arm, (mode, _) in ARMS.items():
        if mode is None:
            data[arm] = pool_lmdb
            continue
        stage_times[arm] = run_tool('tools/distill.py', '-opt', str(distill_options(args, work, mode)))
        data[arm] = work / mode / 'HR.lmdb'
        RESULTS.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(work / mode / 'preview.png', RESULTS / f'distill_budget_{args.tag}_preview_{mode}.png')
    runs = {arm: (options, args.sr_iters, data[arm], args.seeds) for arm, (_, options) in ARMS.items()}
    runs['distilled_tenth_iters'] = (ARMS['distilled'][1], max(args.sr_iters // 10, 1), data['distilled'], args.seeds)
    long_iters = 10 * args.sr_iters if args.full_pool_long_iters is None else args.full_pool_long_iters
    if long_iters:  # the paper's comparison: the full pool trained ~10x longer than the distilled set
        runs['full_pool_long'] = (ARMS['full_pool'][1], long_iters, pool_lmdb, args.seeds[:1])
    for arm, (options, iters, lmdb, seeds) in runs.items():
        per_seed, train_s = [], []
        for seed in seeds:
            train_s.append(train(args, work, first_times, f'{arm}_s{seed}', options, iters, lmdb, seed))
            if seed == args.seeds[0]:
                curves[arm] = psnr_curve(args, work, f'{arm}_s{seed}', iters)
                metrics = json.loads((work / 'results' / f'bench_{arm}_s{seed}' / 'metrics.json').read_text())['results']
            else:
                metrics = evaluate(args, work, f'{arm}_s{seed}', work / 'experiments' / f'bench_SwinIR_{arm}_s{seed}'
                                   / 'models' / 'net_g_latest.pth')
            per_seed.append(metrics)
        results[arm] = {'per_seed': per_seed, 'sr_iters': iters, 'sr_train': train_s, 'num_images': len(read_meta_keys(lmdb)),
                        'lmdb_mb': sum(f.stat().st_size for f in lmdb.iterdir()) / 2 ** 20}
    bicubic = evaluate(args, work, 'bicubic', None)
    results['bicubic'] = {'per_seed': [bicubic], 'sr_iters': 0, 'sr_train': [], 'num_images': 0, 'lmdb_mb': 0}
    sets = [Path(s).name for s in args.sets]
    for r in results.values():
        r['psnr'] = {s: mean(m[s]['psnr'] for m in r['per_seed']) for s in sets}
        r['ssim'] = {s: mean(m[s]['ssim'] for m in r['per_seed']) for s in sets}

    def gap(a: str, b: str, s: str) -> float:
        return results[a]['psnr'][s] - results[b]['psnr'][s]
    gaps = {s: {'distilled_minus_random': gap('distilled', 'random_real', s),
                'distilled_minus_full': gap('distilled', 'full_pool', s),
                'distilled_minus_selected_noise': gap('distilled', 'selected_noise', s),
                'selected_minus_random': gap('selected_real', 'random_real', s)} for s in sets}
    full_s_per_iter = mean(t['seconds'] / args.sr_iters for t in results['full_pool']['sr_train'])
    distilled_s = mean(t['seconds'] for t in results['distilled']['sr_train'])
    # After --sr-iters the long full-pool run's checkpoints (same seed, its own stretched schedule) extend the curve.
    full_curve = {**curves['full_pool'], **{it: p for it, p in curves.get('full_pool_long', {}).items() if it > args.sr_iters}}
    to_quality = {}
    for s in sets:
        reach = iterations_to_reach(full_curve, curves['distilled'][args.sr_iters][s], s)
        to_quality[s] = {'full_pool_iters': reach,
                         'iter_ratio_distilled_to_full': None if reach is None else args.sr_iters / reach,
                         'time_ratio_distilled_to_full': None if reach is None else distilled_s / (reach * full_s_per_iter)}
    sdedit = json.loads((work / 'sdedit' / 'manifest.json').read_text())
    markdown = (f'# SR data distillation at a {args.budget_percent}% budget, x4 ({args.tag})\n\n'
                f'Pool: {args.pool} ({len(read_meta_keys(pool_lmdb))} sub-images of 192 px). Grouping features: '
                f'{sdedit["feature_description"]}. Diffusion: {args.finetune_iters} fine-tuning iterations, synthesis '
                f'mode {sdedit["mode"]}; std of (distilled - seed patch) {sdedit["seed_residual_std"]:.2f} levels, which '
                f'is the noise of selected_noise. SR: the same SwinIR, {args.sr_iters} iterations, seeds {args.seeds}; '
                f'bold = mean over seeds, per-seed PSNR in brackets; * = a training time measured on a resumed run. '
                f'Threads: {env["torch_threads"]} on {env["device"]}.\n\n' + '\n'.join(markdown_table(results, sets, args.seeds))
                + '\n\nPSNR gaps of the means (dB): ' + '; '.join(
                    f'{s}: distilled − random {g["distilled_minus_random"]:+.2f}, distilled − full '
                    f'{g["distilled_minus_full"]:+.2f}, distilled − selected_noise {g["distilled_minus_selected_noise"]:+.2f}, '
                    f'selected − random {g["selected_minus_random"]:+.2f}' for s, g in gaps.items())
                + f'\n\nPSNR vs SR iteration (seed {args.seeds[0]}): ' + '; '.join(
                    f'{arm} ' + ', '.join(f'{it}: ' + '/'.join(f'{v:.2f}' for v in psnr.values()) for it, psnr in c.items())
                    for arm, c in curves.items())
                + '\n\nFull pool to the distilled set\'s final PSNR (seed curves): ' + '; '.join(
                    f'{s}: ' + ('not reached in the run' if q['full_pool_iters'] is None else
                                f"{q['full_pool_iters']:.0f} iterations; distilled/full iterations "
                                f"{q['iter_ratio_distilled_to_full']:.2f}, wall time {q['time_ratio_distilled_to_full']:.2f}")
                    for s, q in to_quality.items())
                + '\n\nDistillation stage wall times (s): ' + ', '.join(f'{k} {v:.0f}' for k, v in stage_times.items()) + '\n')
    write_results(f'distill_budget_{args.tag}', {'args': vars(args), 'env': env, 'stage_times_s': stage_times,
                                                 'results': results, 'gaps_db': gaps, 'curves': curves,
                                                 'full_pool_to_distilled_quality': to_quality}, markdown)


if __name__ == '__main__':
    main()
