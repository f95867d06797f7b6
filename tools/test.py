"""Test with BasicSR options: ``python tools/test.py -opt options/test/....yml``; writes results/<name>/metrics.json."""
from os import path as osp

from srdistill_plugin.commands.test import main

if __name__ == '__main__':
    main(osp.abspath(osp.join(__file__, osp.pardir, osp.pardir)))
