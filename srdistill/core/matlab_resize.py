"""MATLAB-style bicubic resizing (a = -0.5, antialiased when shrinking) for torch batches, differentiable.

BasicSR's ``imresize`` loops over output rows in Python and takes one CHW image; here the same weights (BasicSR's
``calculate_weights_indices``, symmetric borders folded in) become one dense matrix per axis, so a resize is two
matmuls over a whole NCHW batch and gradients flow through it (MZSR's network upsamples its input this way, as the
official TensorFlow model's MATLAB-bicubic input does). Any output size works, odd ones included.
"""
from __future__ import annotations

import math
from functools import lru_cache

import torch

from .basicsr_files import basicsr_module


@lru_cache(maxsize=64)
def resize_matrix(in_length: int, out_length: int, scale: float) -> torch.Tensor:
    """The ``(out_length, in_length)`` float64 matrix of MATLAB's bicubic resize along one axis."""
    calculate_weights_indices = basicsr_module('utils.matlab_functions').calculate_weights_indices
    weights, indices, sym_len_s, _ = calculate_weights_indices(in_length, out_length, scale, 'cubic', 4,
                                                               antialiasing=True)
    source = indices.long() - sym_len_s  # 0-based positions in the input, possibly outside it
    source = torch.where(source < 0, -source - 1, source)  # MATLAB's symmetric (half-sample) border
    source = torch.where(source >= in_length, 2 * in_length - 1 - source, source)
    matrix = torch.zeros(out_length, in_length, dtype=torch.float64)
    matrix.scatter_add_(1, source, weights.double())
    return matrix


def matlab_resize(img: torch.Tensor, scale: float, out_size: tuple[int, int] | None = None) -> torch.Tensor:
    """Resize an ``(..., H, W)`` tensor by ``scale`` as MATLAB's ``imresize(img, scale, 'bicubic')`` does.

    ``out_size`` (H, W) overrides the default ``ceil(H * scale), ceil(W * scale)`` (the weights still use ``scale``,
    as MATLAB's ``imresize`` with both a scale and an output size does).
    """
    h, w = img.shape[-2:]
    out_h, out_w = out_size if out_size is not None else (math.ceil(h * scale), math.ceil(w * scale))
    rows = resize_matrix(h, int(out_h), float(scale)).to(img)
    cols = resize_matrix(w, int(out_w), float(scale)).to(img)
    return rows @ img @ cols.T
