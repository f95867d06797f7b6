"""BasicSR's multi-process training on GPUs (NCCL) and on CPU-only machines (gloo).

BasicSR 1.4.2 always initialises NCCL for ``--launcher pytorch`` (``dist_params`` is read only for slurm), calls
``torch.cuda.set_device`` (a ``ZeroDivisionError`` without GPUs) and wraps networks in DDP with CUDA ``device_ids``.
The plugin's train entry replaces those three steps: the backend comes from ``dist_params.backend`` (gloo chosen when
no GPU is visible), CUDA calls are made only with NCCL, and CPU networks are wrapped without ``device_ids``.
"""
from __future__ import annotations

import os
import subprocess
import sys

import torch
import torch.distributed as dist
import yaml
from basicsr.utils.dist_util import init_dist as basicsr_init_dist
from torch.nn.parallel import DistributedDataParallel

from srdistill.core.errors import SRDistillError

BACKENDS = ('gloo', 'nccl')
TORCHRUN_HINT = 'torchrun --nproc_per_node=N tools/train.py -opt OPTIONS.yml --launcher pytorch'


def requested_backend(argv: list[str] | None = None) -> str | None:
    """``dist_params.backend`` of the ``-opt`` file, or of a ``--force_yml dist_params:backend=...`` override."""
    argv = sys.argv[1:] if argv is None else argv
    backend = None
    if '-opt' in argv and argv.index('-opt') + 1 < len(argv):
        try:
            with open(argv[argv.index('-opt') + 1]) as f:
                backend = ((yaml.safe_load(f) or {}).get('dist_params') or {}).get('backend')
        except (OSError, yaml.YAMLError, AttributeError):
            backend = None  # BasicSR reports an unreadable options file itself
    for entry in argv:
        if entry.replace(' ', '').startswith('dist_params:backend='):
            backend = entry.split('=', 1)[1].strip()
    return backend


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
    """Drop-in for BasicSR's ``init_dist`` that works on CPU-only machines."""
    backend = choose_backend(backend or requested_backend())
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


def model_to_device(self, net: torch.nn.Module) -> torch.nn.Module:
    """BasicSR's ``BaseModel.model_to_device`` with CPU networks wrapped in DDP without CUDA ``device_ids``."""
    net = net.to(self.device)
    if self.opt['dist']:
        device_ids = [torch.cuda.current_device()] if self.device.type == 'cuda' else None
        return DistributedDataParallel(net, device_ids=device_ids,
                                       find_unused_parameters=self.opt.get('find_unused_parameters', False))
    if self.opt['num_gpu'] > 1:
        return torch.nn.DataParallel(net)
    return net


def rank_weight_spread(net: torch.nn.Module) -> float:
    """Largest absolute difference between this rank's parameters and rank 0's (the same on every rank)."""
    flat = torch.cat([p.detach().flatten().float() for p in net.parameters()])  # on the device the backend uses
    reference = flat.clone()
    dist.broadcast(reference, src=0)
    spread = (flat - reference).abs().max().reshape(1)
    dist.all_reduce(spread, op=dist.ReduceOp.MAX)
    return float(spread)
