"""Shared argument handling of ``tools/mm_train.py`` and ``tools/mm_test.py`` (MMagic's flags)."""
from __future__ import annotations

import argparse
import gc
import os

import torch

from mmengine.config import Config, DictAction
from mmengine.runner import Runner

from srdistill.core.errors import SRDistillError


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
    if args.launcher != 'none':
        configure_distributed(cfg, args.launcher)
    if args.work_dir:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = os.path.join('./work_dirs', os.path.splitext(os.path.basename(args.config))[0])
    if with_checkpoint:
        cfg.load_from = args.checkpoint
    elif args.resume:
        cfg.resume = True
    return cfg, args


def configure_distributed(cfg: Config, launcher: str) -> None:
    """Backend from ``env_cfg.dist_cfg.backend`` (gloo chosen without GPUs, NCCL with them), the torchrun
    environment checked, and on CPU a DDP wrapper without CUDA ``device_ids`` (MMEngine's default passes them)."""
    from srdistill_plugin.engine.distributed import choose_backend

    if launcher == 'pytorch':
        missing = [v for v in ('RANK', 'WORLD_SIZE', 'MASTER_ADDR', 'MASTER_PORT') if v not in os.environ]
        if missing:
            raise SRDistillError(f'--launcher pytorch needs the environment torchrun sets ({", ".join(missing)} '
                                 f'missing); run: torchrun --nproc_per_node=N tools/mm_train.py CONFIG --launcher pytorch')
    env_cfg = cfg.setdefault('env_cfg', {})
    dist_cfg = env_cfg.setdefault('dist_cfg', {})
    dist_cfg['backend'] = choose_backend(dist_cfg.get('backend'))
    if not torch.cuda.is_available() and cfg.get('model_wrapper_cfg') is None:
        cfg.model_wrapper_cfg = dict(type='MMDistributedDataParallel', broadcast_buffers=False, device_ids=None)


def finish_distributed(model: torch.nn.Module) -> None:
    """After distributed training: the largest difference between any rank's weights and rank 0's, logged; then the
    process group is closed (left open, gloo's threads can abort the interpreter at exit)."""
    import torch.distributed as dist
    from mmengine.logging import MMLogger

    from srdistill_plugin.engine.distributed import close_process_group, rank_weight_spread

    if dist.is_available() and dist.is_initialized():
        spread = rank_weight_spread(getattr(model, 'module', model))
        MMLogger.get_current_instance().info(f'{dist.get_world_size()} ranks, {dist.get_backend()}: largest '
                                             f"difference of any rank's weights from rank 0's: {spread:.3g}")
    close_process_group(completed=True)


def run(cfg: Config, action: str) -> None:
    """Build the Runner and ``train()`` or ``test()``; a wrong type name or argument in the config ends as MMEngine's
    own one-line message (through :class:`SRDistillError`) instead of a traceback from deep inside the build."""
    try:
        runner = Runner.from_cfg(cfg)
        result = getattr(runner, action)()
        if action == 'train':
            finish_distributed(result)
            # The DDP wrapper still holds the process group: release it while the interpreter is whole, so that
            # gloo's threads are not torn down during finalization (seen as a rare SIGABRT at exit on 2 CPU ranks).
            del runner, result
            gc.collect()
    except KeyError as err:
        if 'registry' not in str(err):
            raise
        raise SRDistillError(f'config {cfg.filename}: {err.args[0]}') from err
    except TypeError as err:
        if not str(err).startswith('class `'):  # MMEngine's build_from_cfg prefixes the class it failed to build
            raise
        raise SRDistillError(f'config {cfg.filename}: {err}') from err
