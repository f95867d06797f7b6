"""Ship the learned kernel estimator: its checkpoint chosen by the held-out covariance error the training recorded, the
gain of its diagonal read-out fitted on the held-out photographs (kept where it lowers their covariance error), the
fewest flips/rotations that lose nothing there (within ``VIEWS_TOLERANCE``), then its shrinkage toward the default
kernel chosen by the PSNR that MZSR reaches with the estimate on the same held-out photographs (never on a benchmark
set)."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from statistics import mean

import numpy as np
import torch
from tqdm import tqdm

from srdistill.core.kernel_predictor import (VIEWS, KernelPredictor, PredictorSettings, covariance_error,
                                             estimate_from_coords, fit_diagonal_gain, params_from_coords,
                                             raw_coords, turned_axis_reading)
from srdistill.core.kernels import gaussian_kernel
from srdistill_plugin.engine.train import read_training_record

from .protocol import mzsr_kernel_rows

SHRINKS = (0., 0.25, 0.5, 0.75, 1.)  # 1: the default kernel itself
VIEWS_TOLERANCE = 0.01  # fewer views are kept only within 1 % of all eight's held-out covariance error


def best_checkpoint(experiment: Path, metric: str = 'cov_error') -> tuple[int, dict[int, dict]]:
    """The iteration with the lowest validation ``metric`` (the earliest on ties) among those with a saved
    ``net_g_<iter>.pth``, and every recorded validation ``{iteration: metrics}``."""
    curve = {int(it): next(iter(by_set.values())) for it, by_set in read_training_record(experiment)[
        'validation'].items() if by_set}
    saved = {it: m for it, m in curve.items() if (Path(experiment) / 'models' / f'net_g_{it}.pth').is_file()}
    if not saved:
        raise FileNotFoundError(f'{experiment}: no validated checkpoint (models/net_g_<iter>.pth)')
    best = min(saved, key=lambda it: (saved[it][metric], it))
    return best, dict(sorted(curve.items()))


def diagonal_fit(net: KernelPredictor, settings: PredictorSettings, pairs) -> dict:
    """On held-out pairs: the least-squares gain of the diagonal read-out (:func:`fit_diagonal_gain`), how each
    estimated coordinate follows the truth (regression slope and correlation; ``v`` as the network predicts it and as
    read from the turned LR), and the mean covariance error without shrinkage with either ``v`` and with the default
    kernel. ``gain`` is the fitted gain where the turned read-out lowers the error, else 0."""
    truth, own, turned = [], [], []
    for item in tqdm(pairs, desc='diagonal read-out on held-out photographs', unit='pair'):
        lr = item['lq'][None]
        truth.append(item['kernel_coords'].double().numpy())
        own.append(raw_coords(net, lr, 0., settings.views))
        turned.append(turned_axis_reading(net, lr, settings.views))
    truth, own, turned = np.array(truth), np.array(own), np.array(turned)
    fitted = fit_diagonal_gain(turned, truth[:, 2])
    with_turned = own.copy()
    with_turned[:, 2] = fitted * turned

    def follows(estimate: np.ndarray, target: np.ndarray) -> dict[str, float]:
        return {'slope': float(np.polyfit(target, estimate, 1)[0]), 'corr': float(np.corrcoef(target, estimate)[0, 1])}

    unshrunk = dataclasses.replace(settings, shrink=0.)

    def cov_error(coords: np.ndarray) -> float:
        return float(np.mean([covariance_error(estimate_from_coords(c, unshrunk).params, params_from_coords(t))
                              for c, t in zip(coords, truth)]))

    errors = {'network_v': cov_error(own), 'turned_v': cov_error(with_turned),
              'default': float(np.mean([covariance_error(settings.default, params_from_coords(t)) for t in truth]))}
    return {'fitted_gain': fitted, 'gain': fitted if errors['turned_v'] < errors['network_v'] else 0.,
            'follows': {'m': follows(own[:, 0], truth[:, 0]), 'u': follows(own[:, 1], truth[:, 1]),
                        'v_network': follows(own[:, 2], truth[:, 2]),
                        'v_turned': follows(with_turned[:, 2], truth[:, 2])},
            'cov_error': errors}


def views_errors(net: KernelPredictor, settings: PredictorSettings, pairs) -> dict[int, float]:
    """Mean covariance error (no shrinkage) of the estimate over each number of views in ``VIEWS`` on held-out
    pairs."""
    unshrunk = dataclasses.replace(settings, shrink=0.)
    errors = {views: [] for views in VIEWS}
    for item in tqdm(pairs, desc=f'views on held-out photographs ({pairs.lq_size} px)', unit='pair'):
        truth = params_from_coords(item['kernel_coords'].double().numpy())
        for views in VIEWS:
            raw = raw_coords(net, item['lq'][None], settings.diagonal_gain, views)
            errors[views].append(covariance_error(estimate_from_coords(raw, unshrunk).params, truth))
    return {views: float(np.mean(e)) for views, e in errors.items()}


def fewest_views(errors_by_size: dict[int, dict[int, float]], tolerance: float = VIEWS_TOLERANCE) -> int:
    """The fewest views whose mean covariance error is within ``tolerance`` (relative) of all eight's at every LR
    size measured."""
    return min(views for views in VIEWS if all(errors[views] <= (1 + tolerance) * errors[8]
                                               for errors in errors_by_size.values()))


def shrink_table(net: KernelPredictor, settings: PredictorSettings, pairs, mzsr: torch.nn.Module, steps: int,
                 shrinks: tuple[float, ...] = SHRINKS, schedule: str = 'direct_x2') -> list[dict]:
    """Per held-out pair (``{'lq', 'gt', 'kernel_params'}`` items): MZSR(``steps``) PSNR (``schedule``'s step
    sizes) with the estimate shrunk by each factor, and with the true kernel."""
    rows = []
    for item in tqdm(pairs, desc='shrinkage on held-out photographs', unit='pair'):
        lr, hr = item['lq'][None], item['gt'][None]
        raw = raw_coords(net, lr, settings.diagonal_gain, settings.views)
        kernels = {f'shrink{s:g}': estimate_from_coords(raw, dataclasses.replace(settings, shrink=s)).kernel
                   for s in shrinks}
        kernels['true'] = gaussian_kernel(settings.kernel_size, *item['kernel_params'].tolist())
        rows.append(mzsr_kernel_rows(mzsr, lr, hr, kernels, settings.scale, steps, schedule))
    return rows


def choose_shrink(rows: list[dict], shrinks: tuple[float, ...] = SHRINKS) -> tuple[float, dict[str, float]]:
    """The factor with the highest mean PSNR (the smallest on ties) and every case's mean."""
    means = {case: mean(r[case] for r in rows) for case in rows[0]}
    best = max(shrinks, key=lambda s: (means[f'mzsr_shrink{s:g}'], -s))
    return best, means


def gap_closed(means: dict[str, float], shrink: float) -> float | None:
    """The share of the true − default gap that the chosen estimate closes (None under a 0.05 dB gap)."""
    gap = means['mzsr_true'] - means['mzsr_shrink1']
    return (means[f'mzsr_shrink{shrink:g}'] - means['mzsr_shrink1']) / gap if abs(gap) >= 0.05 else None


def paired_share(rows: list[dict], shrink: float) -> float:
    """The share of pairs on which the chosen estimate beats the default kernel."""
    return float(np.mean([r[f'mzsr_shrink{shrink:g}'] > r['mzsr_shrink1'] for r in rows]))
