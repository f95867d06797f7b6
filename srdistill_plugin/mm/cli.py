"""Shared argument handling of ``tools/mm_train.py`` and ``tools/mm_test.py`` (MMagic's flags)."""
from __future__ import annotations

import argparse
import os

from mmengine.config import Config, DictAction
from mmengine.runner import Runner

from srdistill_plugin.core.errors import SRDistillError


def parse_config(description: str, with_checkpoint: bool) -> tuple[Config, argparse.Namespace]:
    """``CONFIG [CHECKPOINT] --work-dir --resume --cfg-options --launcher`` -> the merged config and the args."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument('config', help='config file path')
    if with_checkpoint:
        parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--work-dir', help='the directory to save logs and models')
    if not with_checkpoint:
        parser.add_argument('--resume', action='store_true', help='resume from the latest checkpoint in work-dir')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings, e.g. train_cfg.max_iters=100')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'], default='none')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args()
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    cfg.launcher = args.launcher
    if args.work_dir:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = os.path.join('./work_dirs', os.path.splitext(os.path.basename(args.config))[0])
    if with_checkpoint:
        cfg.load_from = args.checkpoint
    elif args.resume:
        cfg.resume = True
    return cfg, args


def run(cfg: Config, action: str) -> None:
    """Build the Runner and ``train()`` or ``test()``; a wrong type name or argument in the config ends as MMEngine's
    own one-line message (through :class:`SRDistillError`) instead of a traceback from deep inside the build."""
    try:
        getattr(Runner.from_cfg(cfg), action)()
    except KeyError as err:
        if 'registry' not in str(err):
            raise
        raise SRDistillError(f'config {cfg.filename}: {err.args[0]}') from err
    except TypeError as err:
        if not str(err).startswith('class `'):  # MMEngine's build_from_cfg prefixes the class it failed to build
            raise
        raise SRDistillError(f'config {cfg.filename}: {err}') from err
