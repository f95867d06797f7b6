"""Train with BasicSR options: ``python tools/train.py -opt options/....yml [--auto_resume] [--launcher pytorch]``."""
from os import path as osp

from srdistill_plugin.commands.train import main

if __name__ == '__main__':
    main(osp.abspath(osp.join(__file__, osp.pardir, osp.pardir)))
