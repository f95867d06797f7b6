"""Distill -> train -> test -> report: ``python tools/experiment.py -opt options/report/<name>.yml [--report-only]``."""
from os import path as osp

from srdistill_plugin.commands.experiment import main

if __name__ == '__main__':
    main(osp.abspath(osp.join(__file__, osp.pardir, osp.pardir)))
