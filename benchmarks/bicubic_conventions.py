"""Bicubic x2 on Set5 / Set14 under four scoring conventions, to find why this project's Set14 bicubic (30.31 dB)
is not the figure SR papers print (30.24; Set5 33.66), while Set5 and the MZSR paper's bicubic column agree.

- ``project``: MATLAB-bicubic down and up in RGB, 8-bit LR and SR, a single-channel file repeated to three channels,
  PSNR on 8-bit Y (the official MZSR/ZSSR scoring; every table of this project);
- ``float Y``: the same, Y kept as a float (BasicSR's ``calculate_psnr``);
- ``grey as is``: the same, but a single-channel file scored on its grey values (MATLAB evaluation code converts
  only three-channel images with ``rgb2ycbcr``);
- ``Y only``: the SRCNN/VDSR pipeline: the 8-bit Y (or grey) plane alone is downscaled and upscaled, then scored.

    python -m benchmarks.bicubic_conventions
    -> benchmarks/results/bicubic_conventions/bicubic_conventions_x2.{json,md}
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

from benchmarks.common import ROOT, mean, write_results
from srdistill.core.degradations import bicubic_downscale, bicubic_upscale, mod_crop
from srdistill.core.imageio import list_images, read_image, to_uint8
from srdistill.core.official_psnr import y8
from srdistill_plugin.metrics.y_channel import y_psnr

SCALE = 2
CONVENTIONS = ('project', 'float Y', 'grey as is', 'Y only')
LITERATURE = {'Set5': 33.66, 'Set14': 30.24}  # bicubic x2 as SR papers print it (e.g. VDSR, CVPR 2016, Table 3)


def plane_psnr(a: np.ndarray, b: np.ndarray, border: int) -> float:
    """PSNR (dB, peak 255) of two 8-bit planes, ``border`` pixels cut from each side."""
    diff = a[border:-border, border:-border].astype(np.float64) - b[border:-border, border:-border]
    return float(10 * np.log10(255. ** 2 / np.mean(diff ** 2)))


def image_scores(path: Path) -> dict[str, float]:
    """The image's bicubic x2 PSNR under each of ``CONVENTIONS``."""
    single_channel = Image.open(path).mode in ('L', 'I;16')
    hr = mod_crop(read_image(path), SCALE)
    sr, hr8 = to_uint8(bicubic_upscale(bicubic_downscale(hr, SCALE), SCALE)), to_uint8(hr)
    plane = hr8[..., 0] if single_channel else y8(hr8).astype(np.uint8)
    plane_sr = to_uint8(bicubic_upscale(bicubic_downscale(plane[..., None] / 255., SCALE), SCALE))[..., 0]
    project = y_psnr(sr, hr8, SCALE, 'official')
    return {'project': project, 'float Y': y_psnr(sr, hr8, SCALE, 'basicsr'),
            'grey as is': plane_psnr(sr[..., 0], hr8[..., 0], SCALE) if single_channel else project,
            'Y only': plane_psnr(plane_sr, plane, SCALE), 'single_channel': single_channel}


def render(rows: dict[str, dict[str, dict]]) -> str:
    lines = ['# Bicubic x2 under four scoring conventions', '', __doc__.split('\n\n')[0].replace('\n', ' '), '',
             *[line for line in __doc__.split('\n\n')[1].splitlines()], '',
             '| set | ' + ' | '.join(CONVENTIONS) + ' | SR papers |', '|---|' + '---|' * (len(CONVENTIONS) + 1)]
    for set_name, images in rows.items():
        lines.append(f'| {set_name} | ' + ' | '.join(f'{mean(r[c] for r in images.values()):.2f}'
                                                     for c in CONVENTIONS) + f' | {LITERATURE[set_name]:.2f} |')
    for set_name, images in rows.items():
        means = {c: mean(r[c] for r in images.values()) for c in CONVENTIONS}
        lines += ['', f'{set_name}: scoring its single-channel files on their grey values moves the mean by '
                      f'{means["grey as is"] - means["project"]:+.3f} dB; the papers\' figure is then '
                      f'{LITERATURE[set_name] - means["grey as is"]:+.3f} dB away.']
    lines += ['', 'Single-channel files:', '',
              '| set | image | ' + ' | '.join(CONVENTIONS) + ' |', '|---|---|' + '---|' * len(CONVENTIONS)]
    lines += [f'| {set_name} | {name} | ' + ' | '.join(f'{r[c]:.2f}' for c in CONVENTIONS) + ' |'
              for set_name, images in rows.items() for name, r in images.items() if r['single_channel']]
    return '\n'.join(lines) + '\n'


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--sets', nargs='+', default=[str(ROOT.parent / 'shared' / 'data' / 'benchmarks' / s)
                                                      for s in LITERATURE])
    args = parser.parse_args()
    rows = {}
    for folder in map(Path, args.sets):
        images = folder / 'HR' if (folder / 'HR').is_dir() else folder
        rows[folder.name] = {path.name: image_scores(path) for path in list_images(images)}
    write_results('bicubic_conventions_x2', {'sets': args.sets, 'literature': LITERATURE, 'images': rows},
                  render(rows))


if __name__ == '__main__':
    main()
