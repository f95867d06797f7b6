"""HR images -> BasicSR LMDBs (HR + MATLAB-bicubic LR per scale).

  srdistill-prepare --input path/to/HR --output datasets/mypool --crop-size 240 --step 120 --scales 2 4
  srdistill-prepare --skimage --output datasets/demo     # the embedded photographs (no download)
"""
from __future__ import annotations

import argparse
import os

from srdistill.cli import run_cli
from srdistill.core.errors import SRDistillError
from srdistill.core.prepare import PrepareOptions, prepare_lmdbs
from srdistill.core.sample_images import export_skimage_photos


def prepare() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument('--input', help='folder of HR images')
    source.add_argument('--skimage', action='store_true', help="use scikit-image's bundled photographs")
    parser.add_argument('--output', required=True, help='folder that receives HR.lmdb and LR_bicubic_X*.lmdb')
    parser.add_argument('--crop-size', type=int, default=0, help='sub-image size (0: whole images)')
    parser.add_argument('--step', type=int, default=0, help='stride between sub-images (default: crop size / 2)')
    parser.add_argument('--thresh-size', type=int, default=0, help='drop leftover borders narrower than this')
    parser.add_argument('--scales', type=int, nargs='+', default=[4], help='LR scales to make (2, 3, 4)')
    parser.add_argument('--min-size', type=int, default=32, help='reject images smaller than this (px)')
    parser.add_argument('--overwrite', action='store_true', help='replace existing LMDBs')
    args = parser.parse_args()

    input_dir = args.input or os.path.join(args.output, 'HR_images')
    opts = PrepareOptions(crop_size=args.crop_size, step=args.step or args.crop_size // 2,
                          thresh_size=args.thresh_size, scales=tuple(args.scales), min_size=args.min_size)
    opts.validate()  # before anything is written
    if os.path.exists(args.output) and not os.path.isdir(args.output):
        raise SRDistillError(f'{args.output}: exists and is not a folder (--output names the folder of the LMDBs)')
    if args.skimage:
        export_skimage_photos(input_dir)
    for key, path in prepare_lmdbs(input_dir, args.output, opts, overwrite=args.overwrite).items():
        print(f'{key}: {path}')


def main() -> None:
    """Paths are taken as given (relative to the working directory)."""
    run_cli(prepare)


if __name__ == '__main__':
    main()
