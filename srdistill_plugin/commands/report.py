"""Distill -> train -> test -> report, resumable: ``srdistill-report -opt options/report/<name>.yml``.

Writes ``results/<name>/report.md`` and ``report.html``; work under ``experiments/<name>/``.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

import srdistill_plugin  # noqa: F401  (registers the plugin's types)
from srdistill_plugin.cli import run_cli
from srdistill_plugin.pipeline.experiment import load_experiment, run_experiment


def report(root: Path) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('-opt', required=True, help='experiment options (YAML)')
    parser.add_argument('--report-only', action='store_true', help='write the report from the finished runs only')
    args = parser.parse_args()
    exp = load_experiment(args.opt, root)
    path = run_experiment(exp, root, train=not args.report_only)
    print(f'report: {path} (and {path.with_suffix(".html")})')


def main(root: str | None = None) -> None:
    run_cli(lambda: report(Path(os.path.abspath(root or os.getcwd()))))


if __name__ == '__main__':
    main()
