"""Distill -> train -> test -> report, resumable: ``srdistill-experiment -opt options/report/<name>.yml`` (also
under its former name ``srdistill-report``). An options file with ``kind: zero_shot`` runs the MZSR experiment
instead: start -> meta-transfer arms -> held-out checkpoint choice -> the zero-shot table -> report.

Writes ``results/<name>/report.md`` and ``report.html``; work under ``experiments/<name>/``. ``--workers N`` trains
N runs at a time (each with the options' ``threads``; keep N x threads within the machine's cores). On a machine
with a GPU, ``--num_gpu 1 --runs 'SwinIR_*'`` trains only the SwinIR runs there (the device is recorded with each
run, and the report says which runs were trained where); ``--no-report`` leaves the report to a later
``--report-only``.
"""
from __future__ import annotations

import argparse
import ctypes
import os
import signal
import subprocess
import sys
from pathlib import Path

import srdistill_plugin  # noqa: F401  (registers the plugin's types)
from srdistill.cli import run_cli
from srdistill.core.errors import SRDistillError
from srdistill_plugin.experiment.options import load_experiment
from srdistill_plugin.experiment.runner import check_worker, run_experiment
from srdistill_plugin.experiment.zero_shot_runner import run_zero_shot

PR_SET_PDEATHSIG = 1  # linux/prctl.h


def _stop_with_parent() -> None:
    """In a helper worker before it starts (Linux): SIGTERM when the command that started it dies, even by
    SIGKILL, so no helper trains on alone."""
    if sys.platform.startswith('linux'):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def report(root: Path) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('-opt', required=True, help='experiment options (YAML)')
    parser.add_argument('--report-only', action='store_true', help='write the report from the finished runs only')
    parser.add_argument('--workers', type=int, default=1, help='runs trained at a time (default 1)')
    parser.add_argument('--num_gpu', type=int, default=0, help='1: train on the GPU (BasicSR num_gpu; default 0)')
    parser.add_argument('--runs', nargs='+', metavar='PATTERN',
                        help="train only the runs whose names match these patterns, e.g. 'SwinIR_*' (default: all)")
    parser.add_argument('--no-report', action='store_true', help='train only; write the report later')
    args = parser.parse_args()
    if args.workers < 1:
        raise SRDistillError(f'--workers: expected a positive integer, got {args.workers}')
    exp = load_experiment(args.opt, root)
    worker = {'num_gpu': args.num_gpu}
    run = run_zero_shot if exp.kind == 'zero_shot' else run_experiment
    if exp.kind == 'distillation':
        worker['runs'] = args.runs
        check_worker(exp, **worker)
    elif args.runs:
        raise SRDistillError('--runs: a zero-shot experiment has no runs to pick; leave it out')
    helper_args = (['--num_gpu', str(args.num_gpu)] + (['--no-report'] if args.no_report else [])
                   + (['--runs', *args.runs] if args.runs else []))
    helpers = [] if args.report_only else [
        subprocess.Popen([sys.executable, '-m', 'srdistill_plugin.commands.experiment', '-opt', os.path.abspath(args.opt),
                          *helper_args], cwd=root, preexec_fn=_stop_with_parent) for _ in range(args.workers - 1)]
    try:
        path = run(exp, root, train=not args.report_only, report=not args.no_report, **worker)
        failed = sum(p.wait() != 0 for p in helpers)
    finally:
        for p in helpers:
            p.kill()
    if failed:
        raise SRDistillError(f'{failed} of {args.workers} workers failed (their errors are printed above)')
    if args.no_report:
        print(f'trained; write the report with: srdistill-experiment -opt {args.opt} --report-only')
        return
    path = run(exp, root, train=False) if helpers else path  # the report of every worker's runs
    print(f'report: {path} (and {path.with_suffix(".html")})')


def main(root: str | None = None) -> None:
    run_cli(lambda: report(Path(os.path.abspath(root or os.getcwd()))))


if __name__ == '__main__':
    main()
