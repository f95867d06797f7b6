"""Test with BasicSR options: ``srdistill-test -opt options/test/....yml``; writes results/<name>/metrics.json."""
from __future__ import annotations

import os
import sys

import srdistill_plugin  # noqa: F401  (registers the plugin's types)
from srdistill.cli import check_options_file, run_cli
from srdistill_plugin.engine.option_schema import check_basicsr_options
from srdistill_plugin.engine.test import test_pipeline


def run_test(root: str) -> None:
    written = check_options_file(sys.argv)
    if written is not None:  # as written, before BasicSR's parser reads (and fails on) a misspelled section
        check_basicsr_options(written)
    test_pipeline(root)


def main(root: str | None = None) -> None:
    run_cli(lambda: run_test(os.path.abspath(root or os.getcwd())))


if __name__ == '__main__':
    main()
