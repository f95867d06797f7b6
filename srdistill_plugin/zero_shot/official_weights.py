"""The official MZSR TensorFlow checkpoints (github JWSoh/MZSR) as ``MZSRNet`` weights, read without TensorFlow.

``MODEL/conv<i>/kernel`` (HWIO) and ``/bias`` become ``body.<2(i-1)>.weight`` (OIHW) and ``.bias``; Adam slots and
step counters are left out. The official repository has no licence: the converted weights are for benchmarks and as a
start a user supplies, never shipped with the package.
"""
from __future__ import annotations

import re

import numpy as np
import torch

from srdistill_plugin.archs.mzsr_arch import MZSRNet
from srdistill.core.errors import first_line
from srdistill.core.tf_bundle import BundleError, TensorBundle


def official_mzsr_state_dict(prefix: str) -> dict[str, torch.Tensor]:
    """The ``MZSRNet`` state dict of an official MZSR checkpoint prefix."""
    bundle = TensorBundle(prefix)
    layers = sorted(int(m.group(1)) for m in map(re.compile(r'MODEL/conv(\d+)/kernel').fullmatch, bundle.names) if m)
    if not layers or layers != list(range(1, len(layers) + 1)):
        raise BundleError(f'{prefix}.index: expected tensors MODEL/conv1..N/kernel and /bias, found conv layers '
                          f'{layers or "none"} (not an official MZSR checkpoint)')
    state = {}
    for i in layers:
        for tf_name, name in (('kernel', 'weight'), ('bias', 'bias')):
            array = bundle.read(f'MODEL/conv{i}/{tf_name}')
            if not np.issubdtype(array.dtype, np.floating):
                raise BundleError(f'{prefix}.index: tensor MODEL/conv{i}/{tf_name} is {array.dtype}, not floating point')
            if tf_name == 'kernel':
                if array.ndim != 4:
                    raise BundleError(f'{prefix}.index: tensor MODEL/conv{i}/kernel has shape {array.shape}, '
                                      'expected a 4-d HWIO convolution kernel')
                array = array.transpose(3, 2, 0, 1)
            state[f'body.{2 * (i - 1)}.{name}'] = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))
    first = state['body.0.weight']
    net = MZSRNet(num_in_ch=first.shape[1], num_feat=first.shape[0], num_layers=len(layers), upscale=2)
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise BundleError(f'{prefix}.index: the tensors do not fit MZSRNet '
                          f'({first_line(err).strip(": ")}: {str(err).splitlines()[-1].strip()})') from err
    return state
