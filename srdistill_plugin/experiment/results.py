"""Definitions shared by the experiment's runner and its report (which reads result files and never the runner)."""
from __future__ import annotations

import numpy as np

FULL_POOL = 'full_pool'  # the arm name of the whole pool's training set


def convergence_gain(curve: dict, window_fraction: float) -> float:
    """Validation PSNR gained over the last ``window_fraction`` of the iterations of ``curve`` (iteration ->
    PSNR; the iterations may be JSON strings)."""
    xs, ys = zip(*sorted((int(it), psnr) for it, psnr in curve.items()))
    return float(ys[-1] - np.interp(xs[-1] * (1 - window_fraction), xs, ys))
