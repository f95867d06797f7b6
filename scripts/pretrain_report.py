"""The results file of the long MZSR pretraining (``options/mzsr_pretrain_x2_long.yml``), rendered from what the
run left: the training record (``training.json``) in the committed resume folder (learning rate and loss, held-out
validation PSNR, wall time) and the throughput measured before it started::

    python scripts/pretrain_report.py --throughput        # measure s/iteration per patch and batch size (minutes)
    python scripts/pretrain_report.py --anchors datasets/mzsr_pool/heldout/HR.lmdb --official OFFICIAL.pth
    python scripts/pretrain_report.py                     # write benchmarks/results/mzsr_pretrain_long/README.md
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch

from srdistill.core.atomic_io import atomic_write_text
from srdistill.core.mzsr_net import MZSRNet
from srdistill_plugin.engine.train import read_training_record
from srdistill_plugin.zero_shot.training import training_seconds, validation_curve

ROOT = Path(__file__).resolve().parent.parent
STUDY = ROOT / 'benchmarks' / 'results' / 'mzsr_pretrain_long'
SHAPES = ((96, 16), (48, 64), (64, 32), (64, 16), (96, 32))  # (HR patch side, batch)


def measure_throughput(threads: tuple[int, ...] = (1, 2), repeats: int = 3) -> list[dict]:
    """Seconds per training step (forward, L1 backward, Adam) of MZSRNet x2 on random data, per shape and threads."""
    rows = []
    for n in threads:
        torch.set_num_threads(n)
        for side, batch in SHAPES:
            net = MZSRNet()
            opt = torch.optim.Adam(net.parameters(), 4e-4)
            lq, hr = torch.rand(batch, 3, side // 2, side // 2), torch.rand(batch, 3, side, side)
            times = []
            for i in range(repeats + 1):
                start = time.perf_counter()
                loss = (net(lq) - hr).abs().mean()
                opt.zero_grad()
                loss.backward()
                opt.step()
                if i:  # the first step warms the convolution kernels up
                    times.append(time.perf_counter() - start)
            seconds = sorted(times)[len(times) // 2]
            rows.append({'threads': n, 'patch': side, 'batch': batch, 's_per_iter': seconds,
                         'hr_mpix_per_s': batch * side * side / seconds / 1e6})
            print(rows[-1], flush=True)
    return rows


def heldout_psnr(lmdb: Path, weights: Path | None = None) -> float:
    """Mean PSNR on the held-out photographs, as the validation measures: plain bicubic upsampling, or ``weights``
    (an MZSRNet x2 ``{'params': ...}`` file)."""
    from srdistill.core.degradations import bicubic_downscale, bicubic_upscale, mod_crop
    from srdistill.core.imageio import to_uint8
    from srdistill.core.safe_load import load_checkpoint
    from srdistill.core.zero_shot_inputs import to_image, to_tensor
    from srdistill_plugin.data.hr_source import HRImageSource
    from srdistill_plugin.metrics.y_channel import y_psnr

    net = None
    if weights is not None:
        net = MZSRNet()
        net.load_state_dict(load_checkpoint(weights)['params'])
        net.eval()
    source = HRImageSource(lmdb, {'type': 'lmdb'})
    scores = []
    for i in range(len(source)):
        hr = mod_crop(source.read(i), 2)
        lr = bicubic_downscale(hr, 2)
        if net is None:
            sr = to_uint8(bicubic_upscale(lr, 2))
        else:
            with torch.no_grad():
                sr = to_image(net(to_tensor(lr)[None]))
        scores.append(y_psnr(sr, to_uint8(hr), 2, 'official'))
    return sum(scores) / len(scores)


def stretch_devices(record: dict) -> str:
    """The recorded device and threads of each run of equal ones, e.g. ``iterations 0–6,000: cpu, 2 threads``."""
    runs: list[list] = []
    for stretch in record.get('stretches', []):
        device = stretch['device'].split(' (')[0].replace(', 1 rank(s)', '').replace(' thread(s) each', ' thread(s)')
        if runs and runs[-1][2] == device and runs[-1][1] == stretch['from']:
            runs[-1][1] = stretch['to']
        else:
            runs.append([stretch['from'], stretch['to'], device])
    return '; '.join(f'iterations {a:,}–{b:,}: {device}' for a, b, device in runs) or 'not recorded'


def render(study: Path) -> str:
    resume = study / 'resume'
    logs = sorted(resume.glob('train_*.log'))
    record = read_training_record(resume)  # the train loop's training.json (scripts/record_from_logs.py for older parts)
    rows = {e['iter']: {'lr': e['lr'][0], 'loss': e['losses']['l_pix']} for e in record['log']}
    curve, hours = validation_curve(resume), training_seconds(resume) / 3600
    last = max(rows, default=0)
    saved = max((int(p.stem) for p in resume.glob('*.state') if p.stem.isdigit()), default=None)
    total = 20000
    lines = ['# MZSR x2 pretraining at CPU length (in progress)' if last < total else '# MZSR x2 pretraining at CPU length',
             '',
             f'Options: `options/mzsr_pretrain_x2_long.yml` (the pool: `scripts/prepare_mzsr_pool.py`). Device, as '
             f'each stretch of the run recorded it: {stretch_devices(record)}. Logged so far: iteration {last:,} of '
             f'{total:,}, {hours:.2f} h of '
             f'wall time (as the training record has it, pauses for other work on the machine '
             f'included) over {len(logs)} part(s); the committed resume state is iteration {saved}.',
             '',
             'Validation: whole held-out pool photographs (`datasets/mzsr_pool/heldout.txt`: 19 photographs of '
             'SunHays80, T91 and BSD200 in no training set of these weights), MATLAB-bicubic x2 LR, PSNR on 8-bit Y, '
             'border 2. The checkpoint is chosen there; Set5 and Set14 are read only for the chosen one.', '',
             'To continue it on any machine (a fresh clone included):', '', '```bash',
             'python scripts/prepare_mzsr_pool.py --output datasets/mzsr_pool',
             'python scripts/resume_state.py restore --name MZSR_pretrain_x2_long --to benchmarks/results/mzsr_pretrain_long/resume',
             'OMP_NUM_THREADS=2 python tools/train.py -opt options/mzsr_pretrain_x2_long.yml --auto_resume',
             'python scripts/resume_state.py save --name MZSR_pretrain_x2_long --to benchmarks/results/mzsr_pretrain_long/resume',
             '```', '']
    anchors = study / 'heldout_anchors.json'
    if anchors.is_file():
        data = json.loads(anchors.read_text())
        lines += [f'On the same photographs: bicubic upsampling {data["bicubic"]:.2f} dB'
                  + (f', the official MZSR pretrained network (800,000 GPU iterations on DIV2K) {data["official"]:.2f} dB'
                     if 'official' in data else '') + '.', '']
    if curve:
        lines += ['| iteration | held-out PSNR (dB) |', '|---|---|']
        lines += [f'| {it:,} | {curve[it]:.2f} |' for it in sorted(curve)]
    else:
        lines += ['No validation yet (every 1,000 iterations).']
    if rows:
        lines += ['', '| iteration | learning rate | L1 loss |', '|---|---|---|']
        lines += [f'| {it:,} | {rows[it]["lr"]:.2e} | {rows[it]["loss"]:.4f} |' for it in sorted(rows)
                  if it % 1000 == 0 or it == last]
    throughput = study / 'throughput.json'
    if throughput.is_file():
        data = json.loads(throughput.read_text())
        lines += ['', '## Throughput that chose the patch and batch size', '',
                  f'{data["device"]}, one training step of MZSRNet x2 (forward, L1 backward, Adam) on random data, '
                  'median of 3 after a warm-up step.', '',
                  '| threads | HR patch | batch | s / iteration | HR Mpixel / s |', '|---|---|---|---|---|']
        lines += [f'| {r["threads"]} | {r["patch"]}² | {r["batch"]} | {r["s_per_iter"]:.2f} | '
                  f'{r["hr_mpix_per_s"]:.3f} |' for r in data['rows']]
    return '\n'.join(lines) + '\n'


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--throughput', action='store_true', help='measure s/iteration first (minutes)')
    parser.add_argument('--anchors', default=None, metavar='LMDB',
                        help='score bicubic (and --official) on the held-out LMDB first '
                             '(datasets/mzsr_pool/heldout/HR.lmdb)')
    parser.add_argument('--official', default=None, metavar='PTH',
                        help='the converted official pretrained network (scripts/convert_official_mzsr.py)')
    args = parser.parse_args()
    if args.anchors:
        anchors = {'bicubic': heldout_psnr(Path(args.anchors))}
        if args.official:
            anchors['official'] = heldout_psnr(Path(args.anchors), Path(args.official))
        atomic_write_text(STUDY / 'heldout_anchors.json', json.dumps(anchors, indent=1))
    if args.throughput:
        import platform

        rows = measure_throughput()
        atomic_write_text(STUDY / 'throughput.json', json.dumps(
            {'device': f'CPU ({platform.machine()}, {os.cpu_count()} cores)', 'rows': rows}, indent=1))
    atomic_write_text(STUDY / 'README.md', render(STUDY))
    print(f'wrote {STUDY / "README.md"}')


if __name__ == '__main__':
    main()
