"""Train with BasicSR options: ``python tools/train.py -opt options/....yml [--auto_resume] [--launcher pytorch]``."""
from os import path as osp

import srdistill_plugin  # noqa: F401  (registers the plugin's types)
from srdistill_plugin.cli import run_cli
from srdistill_plugin.pipeline.train import train_pipeline

if __name__ == '__main__':
    run_cli(lambda: train_pipeline(osp.abspath(osp.join(__file__, osp.pardir, osp.pardir))))
