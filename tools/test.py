"""Test with BasicSR options: ``python tools/test.py -opt options/test/....yml``; writes results/<name>/metrics.json."""
from os import path as osp

import srdistill_plugin  # noqa: F401  (registers the plugin's types)
from srdistill_plugin.cli import run_cli
from srdistill_plugin.pipeline.test import test_pipeline

if __name__ == '__main__':
    run_cli(lambda: test_pipeline(osp.abspath(osp.join(__file__, osp.pardir, osp.pardir))))
