"""Train with BasicSR options: ``srdistill-train -opt options/....yml [--auto_resume] [--launcher pytorch]``."""
from __future__ import annotations

import os
import sys

import srdistill_plugin  # noqa: F401  (registers the plugin's types)
from srdistill.cli import check_options_file, run_cli
from srdistill_plugin.engine.train import train_pipeline


def train(root: str) -> None:
    check_options_file(sys.argv)
    train_pipeline(root)


def main(root: str | None = None) -> None:
    run_cli(lambda: train(os.path.abspath(root or os.getcwd())))


if __name__ == '__main__':
    main()
