"""BasicSR's multi-process training on GPUs (NCCL) and on CPU-only machines (gloo).

BasicSR 1.4.2 always initialises NCCL for ``--launcher pytorch`` (``dist_params`` is read only for slurm), calls
``torch.cuda.set_device`` (a ``ZeroDivisionError`` without GPUs) and wraps networks in DDP with CUDA ``device_ids``.
The plugin's train pipeline calls :func:`init_dist` (the backend from ``dist_params.backend``, gloo when no GPU is
visible; CUDA calls only with NCCL) and :func:`build_model_on_ranks` (CPU networks wrapped after the build).
"""
from __future__ import annotations

import gc
import os
import subprocess
from typing import Callable

import torch
import torch.distributed as dist
from basicsr.utils.dist_util import init_dist as basicsr_init_dist
from basicsr.models.base_model import BaseModel
from torch.nn.parallel import DistributedDataParallel

from srdistill.core.errors import SRDistillError

BACKENDS = ('gloo', 'nccl')
TORCHRUN_HINT = 'torchrun --nproc_per_node=N tools/train.py -opt OPTIONS.yml --launcher pytorch'


def choose_backend(requested: str | None) -> str:
    """NCCL where GPUs are visible, gloo otherwise; an explicit choice is checked against the machine."""
    if requested is None:
        return 'nccl' if torch.cuda.is_available() else 'gloo'
    if requested not in BACKENDS:
        raise SRDistillError(f'option dist_params.backend: unknown backend {requested!r}; use gloo (CPU) or nccl (GPUs)')
    if requested == 'nccl' and not torch.cuda.is_available():
        raise SRDistillError('option dist_params.backend: nccl needs GPUs and none is visible here; use '
                             'dist_params: {backend: gloo} (or leave it out: gloo is chosen without GPUs)')
    return requested


def init_dist(launcher: str, backend: str | None = None, port: int | None = None, **kwargs) -> None:
    """BasicSR's ``init_dist`` for ``--launcher pytorch|slurm``, on CPU-only machines too (``backend``: the
    ``dist_params.backend`` option; gloo without GPUs)."""
    backend = choose_backend(backend)
    if launcher == 'pytorch':
        missing = [v for v in ('RANK', 'WORLD_SIZE', 'MASTER_ADDR', 'MASTER_PORT') if v not in os.environ]
        if missing:
            raise SRDistillError(f'--launcher pytorch needs the environment torchrun sets ({", ".join(missing)} '
                                 f'missing); run: {TORCHRUN_HINT}')
        if backend == 'nccl':
            torch.cuda.set_device(int(os.environ.get('LOCAL_RANK', os.environ['RANK'])) % torch.cuda.device_count())
        dist.init_process_group(backend=backend)
    elif launcher == 'slurm':
        if backend == 'nccl':
            basicsr_init_dist('slurm', backend=backend, port=port)
            return
        _slurm_environment(port)
        dist.init_process_group(backend=backend)
    else:
        raise SRDistillError(f'option --launcher: expected none, pytorch or slurm, got {launcher!r}')


def _slurm_environment(port: int | None) -> None:
    """The torch.distributed environment from slurm's variables (as BasicSR sets it, without CUDA)."""
    try:
        proc_id, ntasks = int(os.environ['SLURM_PROCID']), int(os.environ['SLURM_NTASKS'])
        node_list = os.environ['SLURM_NODELIST']
    except KeyError as err:
        raise SRDistillError(f'--launcher slurm needs slurm\'s environment ({err.args[0]} missing); start it with srun')
    addr = subprocess.run(['scontrol', 'show', 'hostname', node_list], capture_output=True, text=True).stdout.split()
    os.environ['MASTER_ADDR'] = addr[0] if addr else node_list.split(',')[0]
    os.environ['MASTER_PORT'] = str(port or os.environ.get('MASTER_PORT', 29500))
    os.environ['WORLD_SIZE'], os.environ['RANK'] = str(ntasks), str(proc_id)
    os.environ['LOCAL_RANK'] = os.environ.get('SLURM_LOCALID', '0')


def build_model_on_ranks(opt: dict, build: Callable[[dict], BaseModel]) -> BaseModel:
    """``build(opt)`` for a run on ``opt['world_size']`` ranks. BasicSR wraps networks in DDP with CUDA
    ``device_ids``; for a CPU run (``num_gpu: 0``) the model is built unwrapped, then each trained ``net_*`` is
    wrapped in DDP here (which gives every rank rank 0's weights) and every other network (``net_g_ema``) takes rank
    0's state. GPU runs and single-process runs are BasicSR's own."""
    if not opt['dist'] or opt['num_gpu']:
        return build(opt)
    opt['dist'] = False
    try:
        model = build(opt)
    finally:
        opt['dist'] = True
    model.opt['dist'] = True  # BasicSR's build_model gives the model a copy of the options
    for name, net in list(vars(model).items()):
        if not name.startswith('net_') or not isinstance(net, torch.nn.Module):
            continue
        if any(p.requires_grad for p in net.parameters()) and not name.endswith('_ema'):
            setattr(model, name, DistributedDataParallel(
                net, find_unused_parameters=opt.get('find_unused_parameters', False)))
        else:
            for tensor in net.state_dict().values():
                dist.broadcast(tensor, src=0)
    return model


def rank_weight_spread(net: torch.nn.Module) -> float:
    """Largest absolute difference between this rank's parameters and rank 0's (the same on every rank)."""
    flat = torch.cat([p.detach().flatten().float() for p in net.parameters()])  # on the device the backend uses
    reference = flat.clone()
    dist.broadcast(reference, src=0)
    spread = (flat - reference).abs().max().reshape(1)
    dist.all_reduce(spread, op=dist.ReduceOp.MAX)
    return float(spread)


def close_process_group(completed: bool) -> None:
    """Close the default process group, if one is open. After a completed run every rank first meets the others at
    a barrier and the wrappers that still hold the group (DDP's reducer) are collected: a rank that closes while a
    peer still talks, or leaves gloo's threads to the interpreter's exit, can abort (``terminate called``, SIGABRT)
    after its work is done. A failed rank closes at once (its peers may never reach the barrier)."""
    if not (dist.is_available() and dist.is_initialized()):
        return
    if completed:
        dist.barrier()
    gc.collect()
    dist.destroy_process_group()
