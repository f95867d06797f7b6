"""Distill -> train -> test -> report, resumable: ``srdistill-report -opt options/report/<name>.yml``.

Writes ``results/<name>/report.md`` and ``report.html``; work under ``experiments/<name>/``. ``--workers N`` trains
N runs at a time (each with the options' ``threads``; keep N x threads within the machine's cores).
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import srdistill_plugin  # noqa: F401  (registers the plugin's types)
from srdistill_plugin.cli import run_cli
from srdistill_plugin.core.errors import SRDistillError
from srdistill_plugin.pipeline.experiment import load_experiment, run_experiment


def report(root: Path) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('-opt', required=True, help='experiment options (YAML)')
    parser.add_argument('--report-only', action='store_true', help='write the report from the finished runs only')
    parser.add_argument('--workers', type=int, default=1, help='runs trained at a time (default 1)')
    args = parser.parse_args()
    if args.workers < 1:
        raise SRDistillError(f'--workers: expected a positive integer, got {args.workers}')
    exp = load_experiment(args.opt, root)
    helpers = [] if args.report_only else [
        subprocess.Popen([sys.executable, '-m', 'srdistill_plugin.commands.report', '-opt', os.path.abspath(args.opt)],
                         cwd=root) for _ in range(args.workers - 1)]
    try:
        path = run_experiment(exp, root, train=not args.report_only)
        failed = sum(p.wait() != 0 for p in helpers)
    finally:
        for p in helpers:
            p.kill()
    if failed:
        raise SRDistillError(f'{failed} of {args.workers} workers failed (their errors are printed above)')
    path = run_experiment(exp, root, train=False) if helpers else path  # the report of every worker's runs
    print(f'report: {path} (and {path.with_suffix(".html")})')


def main(root: str | None = None) -> None:
    run_cli(lambda: report(Path(os.path.abspath(root or os.getcwd()))))


if __name__ == '__main__':
    main()
