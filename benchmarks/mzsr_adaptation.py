"""MZSR vs ZSSR at x2: pretraining and meta-training (CPU-scaled, through tools/train.py), then zero-shot SR of
Set5/Set14 degraded by the paper's kernels. Writes benchmarks/results/mzsr_adaptation{.json,.md,.png}.

  python benchmarks/mzsr_adaptation.py                      # defaults: ../shared data, 2 threads, ~1 h on 2 cores
  python benchmarks/mzsr_adaptation.py --pretrain-iters 20000 --meta-iters 5000 --tag gpu   # on a GPU machine

Every stage resumes: training through --auto_resume, evaluation from a per-image cache in --work.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from basicsr.utils.matlab_functions import imresize

from benchmarks.common import ROOT, ResultCache, mean, pin_threads, run_tool, write_results, y_metrics
from srdistill_plugin.archs.mzsr_arch import MZSRNet
from srdistill_plugin.core.degradations import mod_crop
from srdistill_plugin.core.imageio import list_images, read_image
from srdistill_plugin.core.kernels import degrade, eval_kernel
from srdistill_plugin.core.prepare import PrepareOptions, prepare_lmdbs
from srdistill_plugin.core.zero_shot import ZSSRConfig, mzsr_adapt, zssr_train

SCALE = 2
MZSR_STEPS = (0, 1, 10)


def parse_args() -> argparse.Namespace:
    shared = ROOT.parent / 'shared' / 'data'
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--pool', default=str(shared / 'pool' / 'SunHays80'), help='HR photos for (meta-)training')
    p.add_argument('--sets', nargs='+', default=[str(shared / 'benchmarks' / s) for s in ('Set5', 'Set14')],
                   help='benchmark folders, each with an HR/ subfolder')
    p.add_argument('--kernels', nargs='+', default=['gd0.2', 'gd2.0', 'gdani', 'gb1.3'])
    p.add_argument('--pretrain-iters', type=int, default=1500)
    p.add_argument('--meta-iters', type=int, default=600)
    p.add_argument('--zssr-sets', nargs='+', default=['Set5'], help='sets on which ZSSR runs (it is slow)')
    p.add_argument('--zssr-kernels', nargs='+', default=['gd2.0'])
    p.add_argument('--zssr-max-iters', type=int, default=1000)
    p.add_argument('--zssr-crop', type=int, default=64, help='ZSSR crop size (the original: 128)')
    p.add_argument('--threads', type=int, default=2)
    p.add_argument('--work', default=str(ROOT / 'benchmarks' / 'work' / 'mzsr'))
    p.add_argument('--tag', default='cpu', help='suffix of the result files')
    return p.parse_args()


def train_networks(args, work: Path) -> dict[str, float]:
    """Pool LMDB -> bicubic pretraining -> meta-transfer learning; returns each stage's wall time."""
    times, exp = {}, work / 'experiments'
    lmdb = work / 'pool' / 'HR.lmdb'
    if not lmdb.exists():
        start = time.perf_counter()
        prepare_lmdbs(args.pool, lmdb.parent, PrepareOptions(crop_size=192, step=192, scales=(SCALE, )))
        times['prepare_s'] = time.perf_counter() - start
    common = [f'datasets:train:dataroot_gt={lmdb}', f'path:experiments_root={exp}', 'logger:use_tb_logger=False']
    times['pretrain_s'] = run_tool('tools/train.py', '-opt', 'options/mzsr_pretrain_x2_cpu.yml', '--auto_resume',
                                   '--force_yml', *common, f'train:total_iter={args.pretrain_iters}')
    pretrained = exp / 'MZSR_pretrain_x2_cpu' / 'models' / 'net_g_latest.pth'
    times['meta_s'] = run_tool('tools/train.py', '-opt', 'options/mzsr_meta_x2_cpu.yml', '--auto_resume',
                               '--force_yml', *common, f'train:total_iter={args.meta_iters}',
                               f'path:pretrain_network_g={pretrained}')
    return times


def load_net(path: Path) -> MZSRNet:
    net = MZSRNet(upscale=SCALE)
    net.load_state_dict(torch.load(path, map_location='cpu')['params'])
    return net.eval()


def sr_metrics(net: torch.nn.Module, lr: torch.Tensor, hr: torch.Tensor) -> tuple[float, float]:
    with torch.no_grad():
        return y_metrics(net(lr), hr, SCALE)


def evaluate_image(args, nets: dict, hr: torch.Tensor, kernel_name: str, zssr: bool) -> dict:
    kernel_np, downsample = eval_kernel(kernel_name)
    kernel = torch.from_numpy(kernel_np)
    lr = degrade(hr, kernel, SCALE, downsample).clamp(0, 1)
    bicubic = torch.from_numpy(imresize(lr[0].permute(1, 2, 0).numpy(), SCALE)).permute(2, 0, 1)[None]
    row = {'bicubic': y_metrics(bicubic, hr, SCALE), 'pretrained': sr_metrics(nets['pretrained'], lr, hr)}
    for steps in MZSR_STEPS:
        adapted, seconds = mzsr_adapt(nets['meta'], lr, kernel, SCALE, steps, downsample)
        row[f'mzsr{steps}'] = (*sr_metrics(adapted, lr, hr), seconds)
    if zssr:
        torch.manual_seed(0)
        net, curve, spent = MZSRNet(upscale=SCALE), [], [0.]
        clock = [time.perf_counter()]

        def on_test(it: int, model: torch.nn.Module) -> None:
            spent[0] += time.perf_counter() - clock[0]  # evaluation time is not training time
            model.eval()
            curve.append((it, spent[0], sr_metrics(model, lr, hr)[0]))
            model.train()
            clock[0] = time.perf_counter()

        cfg = ZSSRConfig(crop_size=args.zssr_crop, max_iters=args.zssr_max_iters)
        zssr_train(net, lr, kernel, SCALE, cfg, downsample, on_test=on_test)
        row['zssr_curve'] = curve
    return row


def summarize(results: dict, args) -> tuple[dict, str]:
    """Means per set and kernel, the targets' checks, and the markdown table."""
    summary, lines = {}, []
    head = '| set | kernel | bicubic | pretrained | MZSR(0) | MZSR(1) | MZSR(10) | ZSSR@1000 | ZSSR steps to MZSR(1) | speed-up to equal PSNR |'
    lines += [head, '|---' * (head.count('|') - 1) + '|']
    for key, rows in results.items():
        set_name, kernel = key.split('/')
        s = {m: mean(r[m][0] for r in rows) for m in ('bicubic', 'pretrained', 'mzsr0', 'mzsr1', 'mzsr10')}
        s['ssim'] = {m: mean(r[m][1] for r in rows) for m in ('bicubic', 'pretrained', 'mzsr0', 'mzsr1', 'mzsr10')}
        s['adapt_time_s'] = {f'mzsr{n}': mean(r[f'mzsr{n}'][2] for r in rows) for n in MZSR_STEPS}
        zssr_cells = ['–', '–', '–']
        if all('zssr_curve' in r for r in rows):
            at_1000 = [max((p for it, _, p in r['zssr_curve'] if it <= 1000), default=np.nan) for r in rows]
            reach = [next(((it, t) for it, t, p in r['zssr_curve'] if p >= r['mzsr1'][0]), None) for r in rows]
            s['zssr_at_1000'] = mean(at_1000)
            s['zssr_reached_mzsr1'] = sum(x is not None for x in reach)
            speedups = [t / r['mzsr1'][2] for x, r in zip(reach, rows) if x for t in [x[1]]]
            s['speedup_to_equal_psnr'] = mean(speedups) if speedups else None
            steps = [x[0] for x in reach if x]
            zssr_cells = [f"{s['zssr_at_1000']:.2f}",
                          f"{int(np.median(steps))} (median; {len(steps)}/{len(rows)} reached)" if steps
                          else f'not reached in {args.zssr_max_iters}',
                          f"{s['speedup_to_equal_psnr']:.0f}×" if speedups else f'> {args.zssr_max_iters}-step ZSSR']
        summary[key] = s
        lines.append(f'| {set_name} | {kernel} | ' + ' | '.join(f'{s[m]:.2f}' for m in
                     ('bicubic', 'pretrained', 'mzsr0', 'mzsr1', 'mzsr10')) + ' | ' + ' | '.join(zssr_cells) + ' |')
    return summary, '\n'.join(lines)


def plot_curves(results: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for key, rows in results.items():
        if not all('zssr_curve' in r for r in rows):
            continue
        its = [it for it, _, _ in rows[0]['zssr_curve']]
        zssr = [mean(r['zssr_curve'][i][2] for r in rows if i < len(r['zssr_curve'])) for i in range(len(its))]
        ax.plot(its, zssr, label=f'ZSSR {key}')
        ax.plot([max(n, 1) for n in MZSR_STEPS], [mean(r[f'mzsr{n}'][0] for r in rows) for n in MZSR_STEPS], 'o-',
                label=f'MZSR {key} (0 plotted at 1)')
    ax.set_xscale('log')
    ax.set_xlabel('gradient steps on the test image')
    ax.set_ylabel('PSNR (Y, dB)')
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    args = parse_args()
    env = pin_threads(args.threads)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    times = train_networks(args, work)
    exp = work / 'experiments'
    nets = {'pretrained': load_net(exp / 'MZSR_pretrain_x2_cpu' / 'models' / 'net_g_latest.pth'),
            'meta': load_net(exp / 'MZSR_meta_x2_cpu' / 'models' / 'net_g_latest.pth')}
    cache = ResultCache(work / f'eval_{args.tag}.json')
    results = {}
    for set_dir in map(Path, args.sets):
        for kernel_name in args.kernels:
            zssr = set_dir.name in args.zssr_sets and kernel_name in args.zssr_kernels
            rows = []
            for path in list_images(set_dir / 'HR'):
                key = f'{set_dir.name}/{kernel_name}/{path.stem}/zssr={zssr}'
                if cache.get(key) is None:
                    hr = torch.from_numpy(mod_crop(read_image(path), SCALE)[:, :, ::-1].copy()).permute(2, 0, 1)[None]
                    print(f'evaluating {key}', flush=True)
                    cache.put(key, evaluate_image(args, nets, hr, kernel_name, zssr))
                rows.append(cache.get(key))
            results[f'{set_dir.name}/{kernel_name}'] = rows
    summary, table = summarize(results, args)
    plot_curves(results, ROOT / 'benchmarks' / 'results' / f'mzsr_adaptation_{args.tag}.png')
    markdown = (f'# MZSR vs ZSSR, x2 ({args.tag})\n\nPSNR on Y (dB), border 2, mean over each set. Training: '
                f'{args.pretrain_iters} bicubic pretraining iterations, {args.meta_iters} meta-iterations '
                f'(options/mzsr_*_x2_cpu.yml) on {args.pool}. ZSSR: crop {args.zssr_crop}, up to '
                f'{args.zssr_max_iters} iterations. Threads: {env["torch_threads"]} on {env["device"]}.\n\n{table}\n\n'
                f'MZSR adaptation time per image (s): ' + ', '.join(
                    f'{k}: ' + '/'.join(f"{v:.2f}" for v in s['adapt_time_s'].values()) for k, s in summary.items())
                + ' (0/1/10 steps).\nStage wall times (s): ' + ', '.join(f'{k} {v:.0f}' for k, v in times.items()) + '\n')
    write_results(f'mzsr_adaptation_{args.tag}', {'args': vars(args), 'env': env, 'times': times,
                                                   'summary': summary, 'per_image': results}, markdown)


if __name__ == '__main__':
    main()
