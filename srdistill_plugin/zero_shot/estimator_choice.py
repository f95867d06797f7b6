"""Ship the learned kernel estimator: its checkpoint chosen by the held-out covariance error the training recorded,
then its shrinkage toward the default kernel chosen by the PSNR that MZSR reaches with the estimate on the same
held-out photographs (never on a benchmark set)."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from statistics import mean

import numpy as np
import torch
from tqdm import tqdm

from srdistill.core.kernel_predictor import (KernelPredictor, PredictorSettings, dihedral_estimate,
                                             estimate_from_coords)
from srdistill.core.kernels import gaussian_kernel
from srdistill_plugin.engine.train import read_training_record

from .protocol import mzsr_kernel_rows

SHRINKS = (0., 0.25, 0.5, 0.75, 1.)  # 1: the default kernel itself


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


def shrink_table(net: KernelPredictor, settings: PredictorSettings, pairs, mzsr: torch.nn.Module, steps: int,
                 shrinks: tuple[float, ...] = SHRINKS) -> list[dict]:
    """Per held-out pair (``{'lq', 'gt', 'kernel_params'}`` items): MZSR(``steps``) PSNR with the estimate shrunk by
    each factor, and with the true kernel."""
    rows = []
    for item in tqdm(pairs, desc='shrinkage on held-out photographs', unit='pair'):
        lr, hr = item['lq'][None], item['gt'][None]
        raw = dihedral_estimate(net.eval(), lr)[0].double().numpy()
        kernels = {f'shrink{s:g}': estimate_from_coords(raw, dataclasses.replace(settings, shrink=s)).kernel
                   for s in shrinks}
        kernels['true'] = gaussian_kernel(settings.kernel_size, *item['kernel_params'].tolist())
        rows.append(mzsr_kernel_rows(mzsr, lr, hr, kernels, settings.scale, steps))
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
