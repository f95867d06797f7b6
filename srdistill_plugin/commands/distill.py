"""Run the SR data distillation stages: ``srdistill-distill -opt options/distill_x4.yml [--stages ...]``.

Stages already finished (manifest under experiments/<name>/stages/) are skipped; the finetune stage resumes.
"""
from __future__ import annotations

import argparse
import os


import srdistill_plugin  # noqa: F401  (registers the plugin's types)
from srdistill.cli import run_cli
from srdistill.core.options_file import read_options
from srdistill_plugin.distill.runner import STAGES, DistillRun


def distill(root: str) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument('-opt', required=True, help='distillation options (YAML)')
    parser.add_argument('--stages', nargs='+', choices=STAGES, default=list(STAGES))
    args = parser.parse_args()
    opt = read_options(args.opt)
    times = DistillRun(opt, root=root).run(tuple(args.stages))
    print('stage times (s):', {k: round(v, 1) for k, v in times.items()})


def main(root: str | None = None) -> None:
    run_cli(lambda: distill(os.path.abspath(root or os.getcwd())))


if __name__ == '__main__':
    main()
