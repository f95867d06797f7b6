"""Run the SR data distillation stages: ``python tools/distill.py -opt options/distill_x4.yml [--stages ...]``."""
from os import path as osp

from srdistill_plugin.commands.distill import main

if __name__ == '__main__':
    main(osp.abspath(osp.join(__file__, osp.pardir, osp.pardir)))
