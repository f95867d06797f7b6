"""The results file of the long MZSR pretraining (``options/mzsr_pretrain_x2_long.yml``), rendered from what the
run left: the training record (``training.json``) in the committed resume folder (learning rate and loss, held-out
validation PSNR, wall time) and the throughput measured before it started::

    python scripts/pretrain_report.py --throughput        # measure s/iteration per patch and batch size (minutes)
    python scripts/pretrain_report.py --anchors datasets/mzsr_pool/heldout/HR.lmdb --official OFFICIAL.pth
    python scripts/pretrain_report.py                     # write benchmarks/results/mzsr_pretrain_long/README.md
    python scripts/pretrain_report.py --finish            # at the end: choose the checkpoint, read Set5 / Set14

``--finish`` saves the checkpoint of the best held-out PSNR as ``mzsr_pretrained_x2.pth`` (the meta-transfer's
start), reads it on Set5 and Set14 beside bicubic and the official network, moves the run's records to ``record/``
and removes the resume state.
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import torch

from srdistill.cli import run_cli
from srdistill.core.atomic_io import atomic_path, atomic_write_text
from srdistill.core.errors import SRDistillError
from srdistill.core.mzsr_net import MZSRNet
from srdistill_plugin.engine.train import read_training_record
from srdistill_plugin.experiment.runner import best_on_validation
from srdistill_plugin.zero_shot.training import training_seconds, validation_curve

ROOT = Path(__file__).resolve().parent.parent
STUDY = ROOT / 'benchmarks' / 'results' / 'mzsr_pretrain_long'
SHARED = ROOT.parent / 'shared' / 'data'
SHAPES = ((96, 16), (48, 64), (64, 32), (64, 16), (96, 32))  # (HR patch side, batch)
TOTAL_ITER = 20000  # options/mzsr_pretrain_x2_long.yml
START_FILE = 'mzsr_pretrained_x2.pth'  # the chosen checkpoint, the meta-transfer's start
TARGETS = {'Set5': 37.30, 'Set14': 32.95}  # issue 50 (the official network: 37.48 / 33.12)


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


def lmdb_images(lmdb: Path) -> list[np.ndarray]:
    """The HR photographs of a BasicSR LMDB (float BGR in [0, 1])."""
    from srdistill_plugin.data.hr_source import HRImageSource

    source = HRImageSource(lmdb, {'type': 'lmdb'})
    return [source.read(i) for i in range(len(source))]


def folder_images(folder: Path) -> list[np.ndarray]:
    """The HR images of a benchmark set (its ``HR/`` folder where it has one; float BGR in [0, 1])."""
    from srdistill.core.imageio import list_images, read_image

    return [read_image(path) for path in list_images(folder / 'HR' if (folder / 'HR').is_dir() else folder)]


def bicubic_x2_psnr(images: list[np.ndarray], params: dict | None = None) -> float:
    """Mean PSNR of x2 SR of MATLAB-bicubic LR rounded to 8 bits (the official pretraining's degradation), on 8-bit
    Y with a 2-pixel border: plain bicubic upsampling, or MZSRNet x2 with ``params``."""
    from srdistill.core.degradations import bicubic_downscale, bicubic_upscale, mod_crop
    from srdistill.core.imageio import to_uint8
    from srdistill.core.zero_shot_inputs import to_image, to_tensor
    from srdistill_plugin.metrics.y_channel import y_psnr

    net = None
    if params is not None:
        net = MZSRNet()
        net.load_state_dict(params)
        net.eval()
    scores = []
    for image in images:
        hr = mod_crop(image, 2)
        lr = bicubic_downscale(hr, 2)
        if net is None:
            sr = to_uint8(bicubic_upscale(lr, 2))
        else:
            with torch.no_grad():
                sr = to_image(net(to_tensor(lr)[None]))
        scores.append(y_psnr(sr, to_uint8(hr), 2, 'official'))
    return sum(scores) / len(scores)


def finish(experiment: Path, study: Path, sets: list[Path], official: dict | None) -> dict:
    """At the end of the run: the checkpoint chosen on the held-out photographs, saved as the start the
    meta-transfer reads (``mzsr_pretrained_x2.pth``, network only), then read on the test ``sets`` beside bicubic
    and the official network; the run's records kept in ``record/`` and its resume state removed."""
    from srdistill.core.safe_load import load_checkpoint

    curve = validation_curve(experiment)
    last = max((int(p.stem) for p in (experiment / 'training_states').glob('*.state')), default=0)
    if last < TOTAL_ITER:
        raise SRDistillError(f'{experiment}: the run stands at iteration {last:,} of {TOTAL_ITER:,}; finish it first')
    if not curve:
        raise SRDistillError(f'{experiment}: the run has no held-out validation: nothing to choose from')
    best = best_on_validation(curve)  # the earliest of equal ones
    params = load_checkpoint(experiment / 'models' / f'net_g_{best}.pth')['params']
    with atomic_path(study / START_FILE) as tmp:
        torch.save({'params': params}, tmp)
    nets = {'bicubic': None, 'chosen': params}
    if official is not None:
        nets['official'] = official
    torch.set_num_threads(1)
    result = {'chosen_iter': best, 'heldout_psnr': curve[best], 'threads': 1, 'sets': {}}
    for folder in sets:
        images = folder_images(folder)  # read once, scored by each network
        result['sets'][folder.name] = {name: bicubic_x2_psnr(images, weights) for name, weights in nets.items()}
    atomic_write_text(study / 'final.json', json.dumps(result, indent=1))
    record = study / 'record'
    record.mkdir(exist_ok=True)
    for path in sorted((study / 'resume').glob('*')):
        if path.name.endswith(('.log', '.json')):
            path.replace(record / path.name)
        else:
            path.unlink()
    (study / 'resume').rmdir()
    return result


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


def hours_at(stretches: list[dict], iteration: int) -> float:
    """Recorded wall hours of training from iteration 0 to ``iteration`` (linear within a stretch)."""
    seconds = 0.
    for s in stretches:
        if s['to'] > s['from'] and s['seconds'] is not None:
            seconds += s['seconds'] * min(max((iteration - s['from']) / (s['to'] - s['from']), 0.), 1.)
    return seconds / 3600


def render_final(study: Path) -> list[str]:
    """The chosen checkpoint and its test figures (``final.json``), when the run is finished."""
    if not (study / 'final.json').is_file():
        return []
    data = json.loads((study / 'final.json').read_text())
    it = data['chosen_iter']
    lines = ['## The chosen checkpoint', '',
             f'Iteration {it:,}: the best held-out PSNR of the curve ({data["heldout_psnr"]:.2f} dB; the earliest of '
             f'equal ones), chosen before Set5 and Set14 were read. Saved as `{START_FILE}` (network only), the start '
             f'of the meta-transfer. x2 on MATLAB-bicubic LR rounded to 8 bits, PSNR on 8-bit Y, border 2, '
             f'{data["threads"]} thread:', '',
             '| set | bicubic | this run | official pretrained (800,000 GPU iterations) | target '
             '| this run − target |',
             '|---|---|---|---|---|---|']
    for name, row in data['sets'].items():
        official = f'{row["official"]:.2f}' if 'official' in row else 'not read'
        target = TARGETS.get(name)
        lines.append(f'| {name} | {row["bicubic"]:.2f} | {row["chosen"]:.2f} | {official} | '
                     + (f'{target:.2f} | {row["chosen"] - target:+.3f} |' if target else '– | – |'))
    return lines + ['']


def render(study: Path) -> str:
    done = (study / 'record').is_dir()
    records = study / ('record' if done else 'resume')
    logs = sorted(records.glob('train_*.log'))
    record = read_training_record(records)  # training.json (scripts/record_from_logs.py wrote the older parts)
    rows = {e['iter']: {'lr': e['lr'][0], 'loss': e['losses']['l_pix']} for e in record['log']}
    curve, hours = validation_curve(records), training_seconds(records) / 3600
    last = max(rows, default=0)
    saved = max((int(p.stem) for p in records.glob('*.state') if p.stem.isdigit()), default=None)
    where = ('the run is finished: its logs and training record are in `record/`, its resume state removed' if done
             else f'the committed resume state is iteration {saved}')
    lines = ['# MZSR x2 pretraining at CPU length' + ('' if done else ' (in progress)'),
             '',
             f'Options: `options/mzsr_pretrain_x2_long.yml` (the pool: `scripts/prepare_mzsr_pool.py`). Device, as '
             f'each stretch of the run recorded it: {stretch_devices(record)}. Logged so far: iteration {last:,} of '
             f'{TOTAL_ITER:,}, {hours:.2f} h of '
             f'wall time (as the training record has it, pauses for other work on the machine '
             f'included) over {len(logs)} part(s); {where}.',
             '',
             *render_final(study),
             'Validation: whole held-out pool photographs (`datasets/mzsr_pool/heldout.txt`: 19 photographs of '
             'SunHays80, T91 and BSD200 in no training set of these weights), MATLAB-bicubic x2 LR, PSNR on 8-bit Y, '
             'border 2. The checkpoint is chosen there; Set5 and Set14 are read only for the chosen one.', '',
             ]
    if not done:
        lines += ['To continue it on any machine (a fresh clone included):', '', '```bash',
                  'python scripts/prepare_mzsr_pool.py --output datasets/mzsr_pool',
                  'python scripts/resume_state.py restore --name MZSR_pretrain_x2_long --to benchmarks/results/mzsr_pretrain_long/resume',
                  'OMP_NUM_THREADS=2 python tools/train.py -opt options/mzsr_pretrain_x2_long.yml --auto_resume',
                  'python scripts/resume_state.py save --name MZSR_pretrain_x2_long --to benchmarks/results/mzsr_pretrain_long/resume',
                  'python scripts/pretrain_report.py --finish   # at 20,000: choose, read Set5/Set14, remove the state',
                  '```', '']
    anchors = study / 'heldout_anchors.json'
    if anchors.is_file():
        data = json.loads(anchors.read_text())
        lines += [f'On the same photographs: bicubic upsampling {data["bicubic"]:.2f} dB'
                  + (f', the official MZSR pretrained network (800,000 GPU iterations on DIV2K) {data["official"]:.2f} dB'
                     if 'official' in data else '') + '.', '']
    if curve:
        lines += ['| iteration | wall hours to here (as recorded) | held-out PSNR (dB) |', '|---|---|---|']
        lines += [f'| {it:,} | {hours_at(record["stretches"], it):.2f} | {curve[it]:.2f} |' for it in sorted(curve)]
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


def official_params(path: str | None) -> dict | None:
    """The official pretrained network's parameters: a converted file, else the TensorFlow checkpoint in
    ``../shared`` where it is (None without either)."""
    from srdistill.core.safe_load import load_checkpoint
    from srdistill_plugin.zero_shot.official_weights import official_mzsr_state_dict

    if path:
        return load_checkpoint(path)['params']
    prefix = SHARED / 'mzsr_official' / 'Pretrained'
    return official_mzsr_state_dict(str(prefix)) if prefix.with_suffix('.index').is_file() else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--throughput', action='store_true', help='measure s/iteration first (minutes)')
    parser.add_argument('--anchors', default=None, metavar='LMDB',
                        help='score bicubic (and --official) on the held-out LMDB first '
                             '(datasets/mzsr_pool/heldout/HR.lmdb)')
    parser.add_argument('--official', default=None, metavar='PTH',
                        help='the converted official pretrained network (scripts/convert_official_mzsr.py); by '
                             'default the official checkpoint in ../shared where it is')
    parser.add_argument('--finish', action='store_true',
                        help='at the end of the run: choose the checkpoint on the held-out photographs, read it on '
                             'Set5 and Set14 beside bicubic and the official network, remove the resume state')
    parser.add_argument('--experiment', default=str(ROOT / 'experiments' / 'MZSR_pretrain_x2_long'))
    parser.add_argument('--study', default=str(STUDY), help='the results folder')
    parser.add_argument('--sets', nargs='+', default=[str(SHARED / 'benchmarks' / s) for s in ('Set5', 'Set14')])
    args = parser.parse_args()
    study = Path(args.study)
    official = official_params(args.official) if args.anchors or args.finish else None
    if args.anchors:
        images = lmdb_images(Path(args.anchors))
        anchors = {'bicubic': bicubic_x2_psnr(images)}
        if official is not None:
            anchors['official'] = bicubic_x2_psnr(images, official)
        atomic_write_text(study / 'heldout_anchors.json', json.dumps(anchors, indent=1))
    if args.finish:
        print(json.dumps(finish(Path(args.experiment), study, [Path(s) for s in args.sets], official), indent=1))
    if args.throughput:
        import platform

        rows = measure_throughput()
        atomic_write_text(study / 'throughput.json', json.dumps(
            {'device': f'CPU ({platform.machine()}, {os.cpu_count()} cores)', 'rows': rows}, indent=1))
    atomic_write_text(study / 'README.md', render(study))
    print(f'wrote {study / "README.md"}')


if __name__ == '__main__':
    run_cli(main)
