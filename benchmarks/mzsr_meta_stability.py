"""Where a meta-transfer run goes over its iterations: MZSR(0/1/10) of every saved checkpoint on Set5 and on held-out
photographs (scikit-image's colour photos, in no training or test set), and branches that continue the run from one
of its checkpoints with one change (loss weights, patch size, meta-batch, meta learning rate), and running averages
of its checkpoints (``--average W``: at iteration t, the mean weights of the checkpoints saved in (t - W, t]). Writes
benchmarks/results/mzsr_meta_stability_<tag>{.json,.md,.png}. ``--schedule`` sets the test-time step sizes
(default: the official direct_x2; task_lr: the meta-training inner step size at every step).

  python -m benchmarks.mzsr_meta_stability --threads 1 \\
      --branch uniform@1000:1100=train:meta:loss_weights=uniform --branch patch64@1000:1100=datasets:train:gt_size=64

A checkpoint average is written once to ``<work>/averages/<base>_avg<W>/net_g_<t>.pth`` (complete or absent).

The base run is the official-start direct arm (the work of the former benchmarks/mzsr_adaptation.py); a branch
``NAME@FROM:TO=OVERRIDE[,OVERRIDE]`` copies its training state at FROM and trains to TO with the base run's options,
the CPU task settings and the overrides (``--force_yml`` syntax), resumably. Evaluation is cached per checkpoint.
"""
from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from benchmarks.common import (ROOT, ResultCache, average_checkpoint, file_hash, pin_threads,  # noqa: E402
                               result_path, saved_checkpoints, write_results)
from srdistill.core.atomic_io import partial_path  # noqa: E402
from srdistill.core.errors import SRDistillError  # noqa: E402
from srdistill.core.sample_images import load_skimage_photos  # noqa: E402
from srdistill.core.zero_shot import STEP_SCHEDULES  # noqa: E402
from srdistill_plugin.zero_shot.protocol import benchmark_images, load_mzsr, mzsr_rows, official_lr  # noqa: E402
from srdistill_plugin.zero_shot.training import train_run  # noqa: E402

SCALE, STEPS = 2, (0, 1, 10)
# the official-start direct arm as benchmarks/mzsr_adaptation.py (since replaced by options/report/mzsr_x2_official_start.yml)
# trained it: its work folder, options and CPU task settings (official: 64x64 patches, meta-batch 5)
BASE_RUN, BASE_OPTIONS = 'MZSR_meta_x2_official_direct', 'options/mzsr_meta_x2_official_start.yml'
CPU_TASKS = ('datasets:train:gt_size=32', 'datasets:train:batch_size_per_gpu=2')
STEP_NOTES = {'direct_x2': 'official direct_x2 step sizes: 2e-2, then 1e-2 x 3, then 5e-3',
              'task_lr': 'step size 1e-2 at every step, the meta-training inner step size (official TASK_LR)'}
HELD_OUT = ('astronaut', 'coffee', 'chelsea', 'rocket', 'stereo_motorcycle_left')  # colour photographs


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--work', default=str(ROOT / 'benchmarks' / 'work' / 'mzsr_official'))
    p.add_argument('--base', default=BASE_RUN, help='the experiment folder of the base run')
    p.add_argument('--options', default=BASE_OPTIONS)
    p.add_argument('--pool-lmdb', default=str(ROOT / 'benchmarks' / 'work' / 'mzsr' / 'pool' / 'HR.lmdb'))
    p.add_argument('--set', default=str(ROOT.parent / 'shared' / 'data' / 'benchmarks' / 'Set5'))
    p.add_argument('--kernel', nargs='+', default=['gd2.0'], help='LR kernels (several: a curve per run and kernel)')
    p.add_argument('--schedule', choices=sorted(STEP_SCHEDULES), default='direct_x2', help='test-time step sizes')
    p.add_argument('--every', type=int, default=100, help='evaluate the checkpoints at multiples of this')
    p.add_argument('--branch', action='append', default=[], metavar='NAME@FROM:TO=OVERRIDE[,OVERRIDE]')
    p.add_argument('--average', action='append', type=int, default=[], metavar='W',
                   help='also evaluate running averages of the base run\'s checkpoints over windows of W iterations')
    p.add_argument('--crop', type=int, default=256, help='centre crop of each held-out photograph')
    p.add_argument('--threads', type=int, default=1)
    p.add_argument('--tag', default='official_cpu')
    args = p.parse_args()
    args.branches = [parse_branch(spec) for spec in args.branch]
    if any(w <= 0 for w in args.average):
        p.error(f'--average: expected a positive window in iterations, got {min(args.average)}')
    return args


def parse_branch(spec: str) -> dict:
    """``NAME@FROM:TO=OVERRIDE[,OVERRIDE]`` -> ``{name, start, end, overrides}`` (one line naming a bad spec)."""
    try:
        head, overrides = spec.split('=', 1)
        name, span = head.split('@')
        start, end = map(int, span.split(':'))
    except ValueError:
        raise SRDistillError(f'option --branch: expected NAME@FROM:TO=OVERRIDE[,OVERRIDE], got {spec!r}') from None
    if not 0 < start < end:
        raise SRDistillError(f'option --branch: {spec!r} needs 0 < FROM < TO')
    return {'name': name, 'start': start, 'end': end, 'overrides': overrides.split(',')}


def train_branch(args, branch: dict) -> Path:
    """The branch's experiment folder, trained (or resumed) to its end from the base run's state at its start."""
    experiments = Path(args.work) / 'experiments'
    base, folder = experiments / args.base, experiments / f'{args.base}_{branch["name"]}'
    state = base / 'training_states' / f'{branch["start"]}.state'
    if not state.is_file():
        raise SRDistillError(f'{state}: the base run has no training state at iteration {branch["start"]}')
    if not folder.is_dir():
        tmp = partial_path(folder)
        shutil.rmtree(tmp, ignore_errors=True)
        for sub, name in (('training_states', state.name), ('models', f'net_g_{branch["start"]}.pth')):
            (tmp / sub).mkdir(parents=True)
            shutil.copy2(base / sub / name, tmp / sub / name)
        tmp.rename(folder)
    train_run(args.options, [f'datasets:train:dataroot_gt={args.pool_lmdb}', 'logger:use_tb_logger=False',
                             f'path:experiments_root={experiments}', f'name={folder.name}',
                             f'path:pretrain_network_g={Path(args.work) / "mzsr_official_x2.pth"}', *CPU_TASKS,
                             f'train:total_iter={branch["end"]}', 'val:val_freq=1000000', *branch['overrides']],
              ROOT, args.threads)
    return folder


def average_checkpoints(base: Path, out: Path, window: int, every: int) -> Path:
    """``out/models/net_g_<t>.pth`` for every multiple t of ``every`` from ``window`` on: the mean weights of
    ``base``'s checkpoints saved in (t - window, t]."""
    for t in (t for t in saved_checkpoints(base / 'models') if t % every == 0 and t >= window):
        average_checkpoint(base / 'models', t, window, out / 'models' / f'net_g_{t}.pth')
    return out


def held_out_photos(crop: int) -> list[tuple[str, torch.Tensor]]:
    """Centre crops of the held-out colour photographs as ``(name, 1x3xHxW RGB [0, 1])``."""
    photos, out = load_skimage_photos(), []
    for name in HELD_OUT:
        img = photos[name]
        y, x = (img.shape[0] - crop) // 2, (img.shape[1] - crop) // 2
        rgb = img[y:y + crop, x:x + crop, ::-1].astype(np.float32) / 255
        out.append((name, torch.from_numpy(rgb.copy()).permute(2, 0, 1)[None]))
    return out


def checkpoints(folder: Path, every: int, first: int = 0) -> dict[int, Path]:
    return {it: p for it, p in saved_checkpoints(folder / 'models').items() if it % every == 0 and it >= first}


def evaluate(cache: ResultCache, path: Path, images: dict, kernel: str,
             schedule: str = 'direct_x2') -> dict[str, dict[str, float]]:
    """``{image set: {'mzsr<n>': mean PSNR}}`` of one checkpoint adapted with ``schedule`` (cached by its hash)."""
    key = f'{file_hash(path)}/{kernel}/steps={STEPS}' + ('' if schedule == 'direct_x2' else f'/{schedule}')
    if cache.get(key) is None:
        print(f'evaluating {path}', flush=True)
        net, row = load_mzsr(path, SCALE), {}
        for set_name, items in images.items():
            per_image = []
            for _, hr in items:
                lr, k, downsample = official_lr(hr, kernel, SCALE)
                per_image.append({n: v[0] for n, v in mzsr_rows(net, lr, k, downsample, hr, SCALE, STEPS,
                                                                   schedule).items()})
            row[set_name] = {n: float(np.mean([r[n] for r in per_image])) for n in per_image[0]}
        cache.put(key, row)
    return cache.get(key)


def best_text(rows: dict, set_names: list[str], steps: str) -> str:
    """Where ``steps`` (mzsr1 / mzsr10) is best on the test set, and which checkpoint the held-out photos choose
    (read on the test set too)."""
    test, held_out = set_names
    on_test = max(rows, key=lambda it: rows[it][test][steps])
    chosen = max(rows, key=lambda it: rows[it][held_out][steps])
    return (f'MZSR({steps[4:]}) best on {test} at {on_test} ({rows[on_test][test][steps]:.2f} dB); the {held_out} '
            f'choose {chosen} ({rows[chosen][held_out][steps]:.2f} dB there, {test} {rows[chosen][test][steps]:.2f})')


def joint_choice_text(per_kernel: dict[str, dict], set_names: list[str], steps: str) -> str:
    """The checkpoint the held-out photos choose by ``steps`` averaged over every kernel (``{kernel: rows}`` of one
    run), with its test-set figure per kernel: one start for every blur, chosen without the test sets."""
    test, held_out = set_names
    common = sorted(set.intersection(*(set(rows) for rows in per_kernel.values())))
    if not common:
        return 'no checkpoint evaluated on every kernel'

    def score(it: int) -> float:
        return float(np.mean([rows[it][held_out][steps] for rows in per_kernel.values()]))
    chosen = max(common, key=score)
    return (f'MZSR({steps[4:]}) averaged over {" / ".join(per_kernel)}: the {held_out} choose {chosen} '
            f'({score(chosen):.2f} dB there); {test} there ' + ' / '.join(
                f'{rows[chosen][test][steps]:.2f}' for rows in per_kernel.values()))


def plot(curves: dict, path: Path, set_names: list[str]) -> None:
    fig, axes = plt.subplots(1, len(set_names), figsize=(6 * len(set_names), 4), squeeze=False)
    for ax, set_name in zip(axes[0], set_names):
        for (run, rows), colour in zip(curves.items(), plt.cm.tab10.colors):
            its = sorted(rows)
            for n, style in (('mzsr0', ':'), ('mzsr1', '-'), ('mzsr10', '--')):
                ax.plot(its, [rows[i][set_name][n] for i in its], style, color=colour,
                        label=f'{run} {n.upper().replace("MZSR", "MZSR(")})')
        ax.set(title=set_name, xlabel='meta-iteration', ylabel='PSNR (dB, 8-bit Y)')
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> None:
    args = parse_args()
    env = pin_threads(args.threads)
    base = Path(args.work) / 'experiments' / args.base
    runs = {'base': (base, 0)}
    for branch in args.branches:
        runs[branch['name']] = (train_branch(args, branch), branch['start'])
    for window in args.average:
        folder = Path(args.work) / 'averages' / f'{args.base}_avg{window}'
        runs[f'avg{window}'] = (average_checkpoints(base, folder, window, args.every), window)
    images = {Path(args.set).name: list(benchmark_images(Path(args.set), SCALE)),
              'held-out photos': held_out_photos(args.crop)}
    cache = ResultCache(Path(args.work) / f'stability_{args.tag}.json')
    curves = {name if len(args.kernel) == 1 else f'{name} {kernel}':
              {it: evaluate(cache, path, images, kernel, args.schedule)
               for it, path in checkpoints(folder, args.every, first).items()}
              for name, (folder, first) in runs.items() for kernel in args.kernel}
    set_names = list(images)
    header = '| run | iteration | ' + ' | '.join(f'{s} MZSR(0) / (1) / (10)' for s in set_names) + ' |'
    lines = [header, '|' + '---|' * (2 + len(set_names))]
    for name, rows in curves.items():
        for it, row in rows.items():
            lines.append(f'| {name} | {it} | ' + ' | '.join(' / '.join(f'{row[s][n]:.2f}' for n in ('mzsr0', 'mzsr1',
                                                                                                  'mzsr10'))
                                                            for s in set_names) + ' |')
    best_lines = [f'- {name}: ' + '; '.join(best_text(rows, set_names, steps) for steps in ('mzsr1', 'mzsr10'))
                  for name, rows in curves.items() if rows]
    if len(args.kernel) > 1:
        best_lines += [f'- {name}, one checkpoint for every kernel: ' + '; '.join(
            joint_choice_text({k: curves[f'{name} {k}'] for k in args.kernel}, set_names, steps)
            for steps in ('mzsr1', 'mzsr10')) for name in runs if all(curves[f'{name} {k}'] for k in args.kernel)]
    branches = [f'- {b["name"]}: from {b["start"]} to {b["end"]} with {", ".join(b["overrides"])}'
                for b in args.branches]
    if args.average:
        saved = list(saved_checkpoints(base / 'models'))
        branches += [f'- avg{w}: at each iteration t, the mean weights of the base run\'s checkpoints saved in '
                     f'(t - {w}, t] (one every {saved[1] - saved[0]} iterations); not trained further'
                     for w in args.average]
    plot(curves, result_path(f'mzsr_meta_stability_{args.tag}.png'), set_names)
    markdown = (f'# MZSR meta-transfer over its iterations ({args.tag})\n\n'
                f'Every checkpoint at a multiple of {args.every} of `{args.base}` (options {args.options}, the CPU task '
                f'settings: 8 + 8 patches of 32x32, meta-batch 2, 5 inner steps) and of its branches, adapted 0, 1 and '
                f'10 steps ({STEP_NOTES.get(args.schedule, args.schedule)}) to each image degraded by '
                f'{" / ".join(args.kernel)} (the paper\'s LR protocol). PSNR (dB) on 8-bit Y, border 2, mean per '
                f'image set. Held-out photos: centre {args.crop}x{args.crop} crops of scikit-image\'s '
                f'{", ".join(HELD_OUT)} (in no training, validation or test set of the project), so a checkpoint can '
                f'be chosen without the test sets. Threads: '
                f'{args.threads} on CPU.\n\nBranches (each continues the base run from its training state; every '
                f'other option as the base run) and averages:\n' + '\n'.join(branches or ['- none']) + '\n\n'
                + '\n'.join(lines) + '\n\n'
                '## Best checkpoints\n' + '\n'.join(best_lines) + '\n\n'
                f'![curves](mzsr_meta_stability_{args.tag}.png)\n')
    write_results(f'mzsr_meta_stability_{args.tag}', {'args': vars(args), 'env': env,
                                                      'curves': {n: {str(i): r for i, r in rows.items()}
                                                                 for n, rows in curves.items()}}, markdown)
    print(markdown)


if __name__ == '__main__':
    main()
