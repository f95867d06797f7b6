"""Write ``training.json`` for a BasicSR experiment folder trained before the plugin's train loop kept one, from the
run's BasicSR logs (``train_*.log``, one per resumed chunk): per chunk the stretch from its start iteration to the
last iteration it logged (or where the next chunk resumed, if earlier), with BasicSR's "Time consumed" where the
chunk finished (else its first to its last timestamp: the time it cost), every validation block's metrics at the
iteration logged before it, and the learning rates and losses of every logged iteration. A one-off migration: the train
loop records new runs itself.

    python scripts/record_from_logs.py experiments/<name> [--force] [--device 'cpu, 1 rank(s), 2 thread(s) each']
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from srdistill.cli import run_cli  # noqa: E402
from srdistill.core.atomic_io import atomic_write_text  # noqa: E402
from srdistill.core.errors import SRDistillError  # noqa: E402

ITER = re.compile(r'iter:\s*([\d,]+)')  # BasicSR writes 1,200
NOT_RECORDED = 'not recorded (logs)'
LR = re.compile(r'lr:\(([^)]*)\)')
LOSS = re.compile(r'(\w+): ([-\d.e+]+)')


def _stamp(line: str) -> datetime | None:
    try:
        return datetime.strptime(line[:23], '%Y-%m-%d %H:%M:%S,%f')
    except ValueError:
        return None


def _chunk(lines: list[str], record: dict, device: str) -> None:
    """Add one log's stretch and validations to ``record``."""
    first = last = None
    seconds = None
    in_block, name = False, None
    started = next((_stamp(line) for line in lines if 'Start training from' in line), None)
    for line in lines:
        if 'Start training from' in line:
            first = last = int(ITER.search(line).group(1).replace(',', ''))
        elif 'iter:' in line and '[epoch:' in line:
            last = int(ITER.search(line).group(1).replace(',', ''))
            lrs = LR.search(line)
            if lrs:
                record['log'].append({'iter': last, 'lr': [float(x) for x in lrs.group(1).split(',') if x.strip()],
                                      'losses': {k: float(v) for k, v in LOSS.findall(line.rsplit(']', 1)[1])}})
        elif ' INFO: Validation ' in line:
            in_block, name = True, line.split(' INFO: Validation ', 1)[1].strip()
        elif in_block and line.strip().startswith('#') and last is not None:
            metric, value = line.strip()[1:].split(':', 1)
            record['validation'].setdefault(str(last), {}).setdefault(name, {})[metric.strip()] = \
                float(value.split()[0])
        elif 'End of training. Time consumed:' in line:
            h, m, sec = line.rsplit(' ', 1)[-1].split(':')
            seconds = 3600 * int(h) + 60 * int(m) + float(sec)
        else:
            in_block = in_block and line.startswith('\t')
    if seconds is None and started is not None:
        end = next((t for t in map(_stamp, reversed(lines)) if t), None)
        seconds = (end - started).total_seconds() if end else None
    if first is not None and last is not None and last > first:
        record['stretches'].append({'from': first, 'to': last, 'seconds': seconds, 'device': device})


def record_from_logs(experiment: Path, device: str = NOT_RECORDED) -> dict:
    """The ``training.json`` content of ``experiment`` rebuilt from its BasicSR logs."""
    logs = sorted(Path(experiment).glob('train_*.log'))
    if not logs:
        raise SRDistillError(f'{experiment}: no BasicSR train_*.log to read')
    record: dict = {'validation': {}, 'stretches': [], 'log': []}
    for log in logs:
        _chunk(log.read_text().splitlines(), record, device)
    stretches = sorted(record['stretches'], key=lambda s: s['from'])
    for this, resumed in zip(stretches, stretches[1:]):  # a chunk counts to where the next resumed (its time stays)
        this['to'] = min(this['to'], resumed['from'])
    record['stretches'] = stretches
    kept = {}  # a resumed chunk logs again what the chunk before logged past its last checkpoint: the later counts
    for entry in record['log']:
        kept[entry['iter']] = entry
    record['log'] = [kept[it] for it in sorted(kept)]
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('experiment', type=Path, help='a BasicSR experiment folder (experiments/<name>)')
    parser.add_argument('--force', action='store_true', help='replace an existing training.json')
    parser.add_argument('--device', default=NOT_RECORDED,
                        help='the device and threads the run trained with, where known (BasicSR\'s logs do not say)')
    args = parser.parse_args()
    out = args.experiment / 'training.json'
    if out.exists() and not args.force:
        raise SRDistillError(f'{out} exists (the train loop keeps it); --force replaces it')
    record = record_from_logs(args.experiment, args.device)
    atomic_write_text(out, json.dumps(record, indent=2))
    print(f'{out}: {len(record["stretches"])} stretches, {len(record["validation"])} validations')


if __name__ == '__main__':
    run_cli(main)
