"""Convert the official MZSR TensorFlow checkpoint (github JWSoh/MZSR, e.g. ``Pretrained/Pretrained``) to BasicSR
weights for ``MZSRNet``, without TensorFlow::

    python scripts/convert_official_mzsr.py ../shared/data/mzsr_official/Pretrained experiments/pretrained_models/mzsr_official_x2.pth

The mapping is ``srdistill_plugin/zero_shot/official_weights.py``; the result is checked by loading it strictly into
``MZSRNet``. The official repository has no licence: use the converted weights for benchmarks and as your own start,
do not redistribute them.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch

from srdistill.cli import run_cli
from srdistill.core.atomic_io import atomic_path
from srdistill_plugin.zero_shot.official_weights import official_mzsr_state_dict


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('prefix', help='checkpoint prefix: PREFIX.index and PREFIX.data-00000-of-00001')
    parser.add_argument('output', help='the BasicSR .pth to write ({"params": ...})')
    args = parser.parse_args()
    state = official_mzsr_state_dict(args.prefix)
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(args.output) as partial:
        torch.save({'params': state}, partial)
    params = sum(t.numel() for t in state.values())
    print(f'{args.prefix} -> {args.output}: {len(state) // 2} conv layers, {params:,} parameters')


if __name__ == '__main__':
    run_cli(main)
