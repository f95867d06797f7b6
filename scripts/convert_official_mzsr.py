"""Convert the official MZSR TensorFlow checkpoint (github JWSoh/MZSR, e.g. ``Pretrained/Pretrained``) to BasicSR
weights for ``MZSRNet``, without TensorFlow::

    python scripts/convert_official_mzsr.py ../shared/data/mzsr_official/Pretrained experiments/pretrained_models/mzsr_official_x2.pth

``MODEL/conv<i>/kernel`` (HWIO) and ``/bias`` become ``body.<2(i-1)>.weight`` (OIHW) and ``.bias``; Adam slots and
step counters are left out. The result is checked by loading it strictly into ``MZSRNet(upscale=2)``. The official
repository has no licence: use the converted weights for benchmarks and as your own start, do not redistribute them.
"""
from __future__ import annotations

import argparse
import re
from pathlib import Path

import numpy as np
import torch

from srdistill_plugin.archs.mzsr_arch import MZSRNet
from srdistill_plugin.cli import run_cli
from srdistill_plugin.core.checkpoint_io import atomic_save
from srdistill_plugin.core.errors import first_line
from srdistill_plugin.core.tf_bundle import BundleError, TensorBundle


def convert(prefix: str) -> dict[str, torch.Tensor]:
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('prefix', help='checkpoint prefix: PREFIX.index and PREFIX.data-00000-of-00001')
    parser.add_argument('output', help='the BasicSR .pth to write ({"params": ...})')
    args = parser.parse_args()
    state = convert(args.prefix)
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    atomic_save(torch.save, {'params': state}, args.output)
    params = sum(t.numel() for t in state.values())
    print(f'{args.prefix} -> {args.output}: {len(state) // 2} conv layers, {params:,} parameters')


if __name__ == '__main__':
    run_cli(main)
