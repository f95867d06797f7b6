"""Ship the learned kernel estimator trained by ``options/kernel_predictor_x2.yml``: the checkpoint with the lowest
held-out covariance error, the gain of its diagonal read-out, the fewest flips/rotations that lose nothing and the
shrinkage toward the default kernel that gives the shipped MZSR model the best PSNR, all chosen on the held-out
photographs, written to ``srdistill/zero_shot/weights/kernel_predictor_x2.pth`` with its record, and the results
file ``benchmarks/results/kernel_predictor_x2/README.md`` rendered from ``choice.json``::

    OMP_NUM_THREADS=2 python scripts/ship_kernel_predictor.py            # about 18 min on 2 cores
    OMP_NUM_THREADS=2 python scripts/ship_kernel_predictor.py --reuse-shipped   # the shipped checkpoint, choices redone

``--reuse-shipped`` takes the network and its training curve from the shipped file and ``choice.json`` instead of
``experiments/`` (which a fresh clone lacks) and makes the held-out choices again.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import torch
import yaml

from srdistill.cli import run_cli
from srdistill.core.atomic_io import atomic_write_text
from srdistill.core.hashing import file_hash
from srdistill.core.kernel_predictor import KernelPredictor, PredictorSettings, load_predictor, save_predictor
from srdistill.core.safe_load import load_checkpoint
from srdistill.zero_shot.zoo import ESTIMATOR_FILE, POOL_TERMS, zoo_model
from srdistill_plugin.data.blur_estimation_dataset import BlurEstimationDataset
from srdistill_plugin.zero_shot.estimator_choice import (SHRINKS, VIEWS_TOLERANCE, best_checkpoint, choose_shrink,
                                                         diagonal_fit, fewest_views, gap_closed, paired_share,
                                                         shrink_table, views_errors)
from srdistill_plugin.zero_shot.protocol import load_mzsr
from srdistill_plugin.zero_shot.training import training_seconds

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / 'benchmarks' / 'results' / 'kernel_predictor_x2'
LARGER_LQ_SIZE = 160  # the views are also compared on LRs this large: BSD200's 321 px side allows it


def render(choice: dict) -> str:
    """The results file, every figure read from ``choice``."""
    means, best = choice['shrink_means'], choice['shrink']
    lines = ['# The learned kernel estimator x2 (`options/kernel_predictor_x2.yml`)', '',
             f"Rendered from `choice.json` by `scripts/ship_kernel_predictor.py`. Device: {choice['device']}. "
             f"Training: {choice['iterations']} iterations, {choice['training_hours']:.2f} h.", '',
             '## Checkpoint: lowest covariance error on the held-out photographs', '',
             f"Validation: {choice['validation_pairs']} pairs (held-out pool photographs, central crops, one kernel "
             'each from the training distribution). Covariance error: relative Frobenius error against the true '
             'covariance; the default kernel is g^d_2.0.', '',
             '| iteration | covariance error | default kernel | closer than default | log-Euclidean |',
             '|---|---|---|---|---|']
    for it, m in choice['validation'].items():
        mark = ' (chosen)' if int(it) == choice['checkpoint'] else ''
        lines.append(f"| {it}{mark} | {m['cov_error']:.3f} | {m['default_cov_error']:.3f} | "
                     f"{100 * m['closer_than_default']:.0f} % | {m['log_euclidean']:.3f} |")
    diagonal = choice['diagonal']
    lines += ['', '## Diagonal read-out: how each estimated coordinate follows the truth on the same pairs', '',
              'Log-Euclidean coordinates: m the mean log-variance, u the elongation along the image axes, v along the '
              "diagonals. The turned read-out takes v as a gain times the u of the LR turned by 45 degrees; the gain "
              "is the least-squares fit on these pairs, kept where it lowers their covariance error (shrinkage 0).", '',
              '| coordinate | slope | correlation |', '|---|---|---|']
    names = {'m': 'm', 'u': 'u', 'v_network': "v, the network's own", 'v_turned': 'v, turned read-out'}
    lines += [f"| {label} | {diagonal['follows'][key]['slope']:.2f} | {diagonal['follows'][key]['corr']:.2f} |"
              for key, label in names.items()]
    errors = diagonal['cov_error']
    lines += ['', f"Fitted gain {diagonal['fitted_gain']:.2f}; covariance error with the network's v "
              f"{errors['network_v']:.3f}, with the turned read-out {errors['turned_v']:.3f}, default kernel "
              f"{errors['default']:.3f}. Shipped gain: {diagonal['gain']:.2f}."]
    views = choice['views']
    sizes = list(views['cov_error'])
    lines += ['', '## Views: the flips/rotations each reading averages', '',
              'Mean covariance error (no shrinkage) on the held-out pairs at each LR size; the fewest views within '
              f"{100 * views['tolerance']:g} % of all eight's at every size are kept (each costs one pass of the "
              'network over the LR and one over its 45-degree-turned square).', '',
              '| views | ' + ' | '.join(f"LR {s} px ({views['pairs'][s]} pairs)" for s in sizes) + ' |',
              '|---|' + '---|' * len(sizes)]
    lines += [f"| {v}{' (chosen)' if int(v) == views['chosen'] else ''} | "
              + ' | '.join(f"{views['cov_error'][s][v]:.4f}" for s in sizes) + ' |'
              for v in views['cov_error'][sizes[0]]]
    lines += ['', f"## Shrinkage toward the default: MZSR({choice['steps']}) with the shipped {choice['mzsr_model']} "
              'model on the same held-out pairs', '',
              '| kernel | PSNR-Y (dB) |', '|---|---|']
    lines += [f"| estimate shrunk by {s:g}{' (chosen)' if s == best else ''}{' = default g^d_2.0' if s == 1 else ''} "
              f"| {means[f'mzsr_shrink{s:g}']:.3f} |" for s in choice['shrinks']]
    lines += [f"| true kernel | {means['mzsr_true']:.3f} |", '',
              f"Chosen shrinkage {best:g}: {means[f'mzsr_shrink{best:g}'] - means['mzsr_shrink1']:+.3f} dB over the "
              f"default kernel, {choice['gap_closed'] * 100:.0f} % of the true − default gap "
              f"({means['mzsr_true'] - means['mzsr_shrink1']:+.3f} dB) closed, better than the default on "
              f"{100 * choice['beats_default_share']:.0f} % of the pairs." if choice['gap_closed'] is not None else
              f"Chosen shrinkage {best:g} (the true − default gap is under 0.05 dB).", '',
              f"Training data and terms: {choice['terms'].rstrip('.')}."]
    return '\n'.join(lines) + '\n'


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--options', default=str(ROOT / 'options' / 'kernel_predictor_x2.yml'))
    p.add_argument('--model', default='directx2', help='the shipped MZSR model the shrinkage is chosen for')
    p.add_argument('--steps', type=int, default=10)
    p.add_argument('--threads', type=int, default=2)
    p.add_argument('--output', default=str(ESTIMATOR_FILE))
    p.add_argument('--reuse-shipped', action='store_true',
                   help='the network and training curve of the shipped file and choice.json, not experiments/')
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    opt = yaml.safe_load(Path(args.options).read_text())
    if args.reuse_shipped:
        net, _, _ = load_predictor(ESTIMATOR_FILE)
        previous = json.loads((RESULTS / 'choice.json').read_text())
        checkpoint, iterations, hours = previous['checkpoint'], previous['iterations'], previous['training_hours']
        curve = {int(it): m for it, m in previous['validation'].items()}
    else:
        experiment = ROOT / 'experiments' / opt['name']
        checkpoint, curve = best_checkpoint(experiment)
        iterations, hours = max(curve), training_seconds(experiment) / 3600
        net_opt = {k: tuple(v) if isinstance(v, list) else v for k, v in opt['network_g'].items() if k != 'type'}
        net = KernelPredictor(**net_opt)
        net.load_state_dict(load_checkpoint(experiment / 'models' / f'net_g_{checkpoint}.pth')['params'])
    train_set = opt['datasets']['train']
    settings = PredictorSettings(scale=opt['scale'], downsample=train_set.get('downsample', 'direct'),
                                 min_variance=train_set['variance_range'][0],
                                 max_variance=train_set['variance_range'][1],
                                 default=tuple(opt['val']['default_kernel']), kernel_size=train_set['kernel_size'])
    pairs = BlurEstimationDataset({**opt['datasets']['val'], 'phase': 'val', 'scale': opt['scale']})
    diagonal = diagonal_fit(net, settings, pairs)  # over all eight views
    settings = dataclasses.replace(settings, diagonal_gain=diagonal['gain'])
    larger = BlurEstimationDataset({**opt['datasets']['val'], 'phase': 'val', 'scale': opt['scale'],
                                    'lq_size': LARGER_LQ_SIZE})
    view_errors = {p.lq_size: views_errors(net, settings, p) for p in (pairs, larger)}
    views = fewest_views(view_errors)
    if views != settings.views:  # the gain refitted for the fewer views
        diagonal = diagonal_fit(net, dataclasses.replace(settings, views=views), pairs)
    settings = dataclasses.replace(settings, views=views, diagonal_gain=diagonal['gain'])
    mzsr_path, mzsr_model = zoo_model(args.model)
    rows = shrink_table(net, settings, pairs, load_mzsr(mzsr_path, opt['scale']), args.steps,
                        schedule=mzsr_model.schedule)
    shrink, means = choose_shrink(rows)
    choice = {'options': str(Path(args.options).resolve().relative_to(ROOT)), 'checkpoint': checkpoint,
              'iterations': iterations, 'training_hours': hours, 'diagonal': diagonal,
              'views': {'chosen': settings.views, 'tolerance': VIEWS_TOLERANCE,
                        'pairs': {str(size): len(p) for size, p in zip(view_errors, (pairs, larger))},
                        'cov_error': {str(size): {str(v): e for v, e in errors.items()}
                                      for size, errors in view_errors.items()}},
              'device': f'CPU, {args.threads} thread{"s" if args.threads != 1 else ""}',
              'validation': {str(k): v for k, v in curve.items()},
              'validation_pairs': len(pairs), 'mzsr_model': args.model, 'mzsr_hash': file_hash(mzsr_path),
              'mzsr_schedule': mzsr_model.schedule, 'steps': args.steps, 'shrinks': list(SHRINKS),
              'shrink_means': means, 'shrink': shrink, 'gap_closed': gap_closed(means, shrink),
              'beats_default_share': paired_share(rows, shrink), 'per_pair': rows, 'terms': POOL_TERMS,
              'wins_on_validation': shrink < 1 and means[f'mzsr_shrink{shrink:g}'] > means['mzsr_shrink1'],
              'choice_seconds': round(time.perf_counter() - start, 1)}
    save_predictor(args.output, net, dataclasses.replace(settings, shrink=shrink),
                   {k: v for k, v in choice.items() if k not in ('per_pair', 'validation')})
    RESULTS.mkdir(parents=True, exist_ok=True)
    atomic_write_text(RESULTS / 'choice.json', json.dumps(choice, indent=2))
    atomic_write_text(RESULTS / 'README.md', render(choice))
    print(f'checkpoint {checkpoint}, shrinkage {shrink:g} -> {args.output}; {RESULTS / "README.md"}')


if __name__ == '__main__':
    run_cli(main)
