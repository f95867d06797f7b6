"""The learned kernel estimator on a real photograph the project ships (no synthetic blur, no ground truth): the
photograph as the LR, ``srdistill-zeroshot`` with the default kernel and with ``--kernel estimate``, and both kernels
drawn. Writes ``docs/figures/kernel_estimate_photo.png`` and ``.json`` (what ran, the estimate, the seconds)::

    OMP_NUM_THREADS=2 python scripts/estimator_figure.py [--photo datasets/Set5/HR/img_001.png]   # about 1 min
"""
from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import cv2
import numpy as np

from srdistill.cli import run_cli
from srdistill.core.atomic_io import atomic_path, atomic_write_text
from srdistill.core.kernels import eval_kernel
from srdistill.zero_shot.inference import main as zeroshot

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / 'docs' / 'figures' / 'kernel_estimate_photo'


def draw(path: Path, photo: np.ndarray, default_sr: np.ndarray, estimated_sr: np.ndarray, kernels: dict,
         crop: tuple[int, int, int]) -> None:
    """Four panels: the LR (nearest x2), SR with the default and the estimated kernel (the same crop of each), and
    the two kernels."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    top, left, side = crop
    lr_view = cv2.resize(photo, None, fx=2, fy=2, interpolation=cv2.INTER_NEAREST)
    panels = [('LR (nearest x2)', lr_view), ('MZSR(10), default kernel g^d_2.0', default_sr),
              ('MZSR(10), learned estimate', estimated_sr)]
    fig, axes = plt.subplots(1, 5, figsize=(17, 3.8))
    for ax, (title, img) in zip(axes, panels):
        ax.imshow(img[2 * top:2 * (top + side), 2 * left:2 * (left + side), ::-1])
        ax.set_title(title, fontsize=9)
    for ax, (title, kernel) in zip(axes[3:], kernels.items()):
        ax.imshow(kernel, cmap='viridis')
        ax.set_title(title, fontsize=9)
    for ax in axes:
        ax.axis('off')
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format='png')
    plt.close(fig)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--photo', default=str(ROOT / 'datasets' / 'Set5' / 'HR' / 'img_001.png'))
    p.add_argument('--steps', type=int, default=10)
    p.add_argument('--threads', type=int, default=2)
    args = p.parse_args()
    photo_path = Path(args.photo)
    photo = cv2.imread(str(photo_path))
    with tempfile.TemporaryDirectory() as work:
        runs = {}
        for name, kernel in (('default', ['--kernel', 'gd2.0']), ('estimated', ['--kernel', 'estimate'])):
            runs[name] = zeroshot([str(photo_path), '--output', f'{work}/{name}', '--steps', str(args.steps),
                                   '--threads', str(args.threads), *kernel])
        stem = photo_path.stem
        srs = {name: cv2.imread(f'{work}/{name}/{stem}_MZSR{args.steps}.png') for name in runs}
        estimate = json.loads(Path(f'{work}/estimated/kernels/kernels.json').read_text())['images'][stem]
        kernels = {'default kernel g^d_2.0 (15x15 centre)': eval_kernel('gd2.0')[0][3:-3, 3:-3],
                   f"estimate: variances {estimate['lambda1']:.2f} / {estimate['lambda2']:.2f}":
                       np.load(f'{work}/estimated/kernels/{stem}.npy')}
    side = min(photo.shape[:2]) // 2
    crop = ((photo.shape[0] - side) // 2, (photo.shape[1] - side) // 2, side)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    draw(OUT.with_suffix('.png'), photo, srs['default'], srs['estimated'], kernels, crop)
    record = {'photo': str(photo_path.resolve().relative_to(ROOT)), 'steps': args.steps, 'threads': args.threads,
              'estimate': estimate, 'adapt_seconds': {name: run['mean_adapt_time_s'] for name, run in runs.items()},
              'mean_abs_difference_of_the_srs': float(np.abs(srs['default'].astype(float) - srs['estimated']).mean())}
    atomic_write_text(OUT.with_suffix('.json'), json.dumps(record, indent=2))
    print(f'{OUT}.png: estimate {estimate}')


if __name__ == '__main__':
    run_cli(main)
