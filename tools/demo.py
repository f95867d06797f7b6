"""The main job on the embedded data: the distillation experiment of ``options/report/demo_x4.yml``.

scikit-image's bundled photographs -> distilled / selected / coverage / random sets of the same size and the full
pool -> the same small EDSR trained on each -> Set5 -> ``results/demo_x4/report.{md,html}``. Stages already done
are skipped; a second run only rewrites the report.
"""
import argparse
import json
import time
from pathlib import Path

from srdistill.cli import run_cli
from srdistill.core.sample_images import export_skimage_photos
from srdistill_plugin.experiment.options import load_experiment
from srdistill_plugin.experiment.runner import run_experiment

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('-opt', default='options/report/demo_x4.yml', help='experiment options')
    args = parser.parse_args()
    start = time.perf_counter()
    export_skimage_photos(ROOT / 'datasets' / 'demo' / 'HR_images')
    exp = load_experiment(str(ROOT / args.opt), ROOT)
    report = run_experiment(exp, ROOT)
    print()
    for path in sorted((ROOT / 'experiments' / exp.name / 'runs').glob('*_s*.json')):
        if path.name.count('.') == 1:  # the result files (not .settings / .time / .curve)
            r = json.loads(path.read_text())
            cells = ', '.join(f'{s} {m["psnr"]:.2f} dB' for s, m in r['test_best'].items())
            print(f'{r["arm"]:>14} ({r["num_train_images"]:4d} HR images): {cells} (best of {r["last_iter"]} it)')
    print(f'\nreport: {report}  (self-contained: {report.with_suffix(".html")}); {time.perf_counter() - start:.0f} s')


if __name__ == '__main__':
    run_cli(main)
