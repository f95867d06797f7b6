"""The main job on the embedded data, end to end, through the same tools a user runs:

prepare the LMDB from scikit-image's bundled photographs -> train the CPU-sized SwinIR x4 -> standard Set5 test
-> bicubic baseline -> a PSNR/SSIM table in results/demo_x4.md.  Stages already done are skipped.
"""
import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run(*args: str) -> float:
    """Run a tool from the repository root; return its wall time (s)."""
    print('$ python', ' '.join(args), flush=True)
    start = time.time()
    subprocess.run([sys.executable, *args], cwd=ROOT, check=True)
    return time.time() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--iters', type=int, default=2000, help='SwinIR training iterations')
    args = parser.parse_args()

    times = {}
    if not (ROOT / 'datasets/demo/HR.lmdb').exists():
        times['prepare'] = run('tools/prepare_data.py', '--skimage', '--output', 'datasets/demo',
                               '--crop-size', '192', '--step', '96', '--scales', '2', '4')
    train_opt = 'options/train/train_swinir_x4_demo.yml'
    times['train'] = run('tools/train.py', '-opt', train_opt, '--auto_resume',
                         '--force_yml', f'train:total_iter={args.iters}')
    times['test'] = run('tools/test.py', '-opt', 'options/test/test_swinir_x4_demo.yml')
    run('tools/test.py', '-opt', 'options/test/test_bicubic_x4.yml')

    rows = []
    for label, name in (('bicubic', 'test_bicubic_x4'), (f'SwinIR x4 (demo, {args.iters} it)', 'test_SwinIR_x4_demo')):
        for dataset, m in json.loads((ROOT / 'results' / name / 'metrics.json').read_text())['results'].items():
            rows.append(f'| {label} | {dataset} | {m["psnr"]:.2f} | {m["ssim"]:.4f} |')
    table = '\n'.join(['| method | set | PSNR (Y) | SSIM (Y) |', '|---|---|---|---|', *rows])
    timing = ', '.join(f'{k} {v:.0f} s' for k, v in times.items())
    report = f'# srdistill demo (x4, crop border 4)\n\n{table}\n\nWall time: {timing}.\n'
    (ROOT / 'results' / 'demo_x4.md').write_text(report)
    print('\n' + report)


if __name__ == '__main__':
    main()
