"""Smoke-run every shipped option file on tiny data: ``python tools/smoke.py [--device cuda] [--only GLOB ...]``."""
import sys
from os import path as osp

from srdistill_plugin.commands.smoke import main

if __name__ == '__main__':
    main(['--root', osp.abspath(osp.join(__file__, osp.pardir, osp.pardir)), *sys.argv[1:]])
