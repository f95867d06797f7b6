"""The experiment's former name: ``python tools/report.py`` runs ``python tools/experiment.py`` (same options)."""
from os import path as osp

from srdistill_plugin.commands.experiment import main

if __name__ == '__main__':
    main(osp.abspath(osp.join(__file__, osp.pardir, osp.pardir)))
