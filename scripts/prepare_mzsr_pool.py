"""Build the MZSR pretraining pool of ``options/mzsr_pretrain_x2_long.yml``: the photographs of every ``--pool``
folder plus the bundled ones, split by photograph into training sub-images and held-out whole photographs::

    python scripts/prepare_mzsr_pool.py --output datasets/mzsr_pool

Writes ``datasets/mzsr_pool/train/HR.lmdb``, ``heldout/HR.lmdb`` and ``heldout.txt``. Unreadable or too small
photographs are skipped with one line each.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from srdistill.cli import run_cli
from srdistill_plugin.zero_shot.pretrain_pool import PoolSplit, prepare_pretrain_pool

SHARED = Path(__file__).resolve().parent.parent.parent / 'shared' / 'data'
DEFAULT_POOL = [SHARED / 'pool' / 'SunHays80', SHARED / 'sr_train' / 'T91', SHARED / 'sr_train' / 'BSD200']


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--pool', nargs='+', default=[str(p) for p in DEFAULT_POOL], help='folders of HR photographs')
    parser.add_argument('--output', default='datasets/mzsr_pool')
    parser.add_argument('--heldout-every', type=int, default=PoolSplit.heldout_every,
                        help='hold out every n-th photograph of each folder')
    parser.add_argument('--no-bundled', action='store_true', help="leave out scikit-image's bundled photographs")
    parser.add_argument('--overwrite', action='store_true')
    args = parser.parse_args()
    if args.heldout_every < 2:
        parser.error(f'--heldout-every: expected an integer >= 2, got {args.heldout_every}')
    lmdbs = prepare_pretrain_pool(args.pool, args.output, PoolSplit(heldout_every=args.heldout_every),
                                  with_bundled=not args.no_bundled, overwrite=args.overwrite)
    for part, path in lmdbs.items():
        print(f'{part}: {path}')


if __name__ == '__main__':
    run_cli(main)
