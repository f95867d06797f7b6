"""What the BasicSR-style commands (train, test) share: the ``-opt`` file checked as written, then the pipeline,
with bad input as one line and exit status 2."""
from __future__ import annotations

import os
import sys
from typing import Callable

import srdistill_plugin  # noqa: F401  (registers the plugin's types)
from srdistill.cli import check_options_file, run_cli
from srdistill_plugin.engine.option_schema import check_basicsr_options


def run_basicsr_command(pipeline: Callable[[str], object], root: str | None = None) -> None:
    """Check ``sys.argv``'s options file against the schema (before BasicSR's parser, which fails on a misspelled
    section with a traceback), then run ``pipeline(root)`` (default root: the working folder)."""
    def run() -> None:
        written = check_options_file(sys.argv)
        if written is not None:
            check_basicsr_options(written)
        pipeline(os.path.abspath(root or os.getcwd()))

    run_cli(run)
