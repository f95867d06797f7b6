"""Run a few MZSR meta-steps on fixed, seeded tasks: under torchrun each rank takes task ``rank``; alone, one process
takes all ``--tasks`` tasks in its meta-batch. Saves the final weights to ``OUT/rank<r>.pth``.

    torchrun --nproc_per_node=2 tests/helpers/mzsr_meta_steps.py OUT        # distributed
    python tests/helpers/mzsr_meta_steps.py OUT --tasks 2                   # the one-process reference
"""
import argparse
import os

import torch
import torch.distributed as dist
from basicsr.models import build_model

import srdistill_plugin  # noqa: F401
from srdistill_plugin.engine.distributed import build_model_on_ranks, init_dist

STEPS = 3


def task(index: int) -> dict:
    g = torch.Generator().manual_seed(100 + index)
    hr = torch.rand(4, 3, 32, 32, generator=g, dtype=torch.float64)
    lr = torch.nn.functional.avg_pool2d(hr, 2)
    return {'support_lq': lr[:2], 'support_gt': hr[:2], 'query_lq': lr[2:], 'query_gt': hr[2:]}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument('out')
    p.add_argument('--tasks', type=int, default=1)
    args = p.parse_args()
    distributed = 'RANK' in os.environ
    if distributed:
        init_dist('pytorch', backend='gloo')
    rank = dist.get_rank() if distributed else 0
    torch.manual_seed(0)
    torch.set_default_dtype(torch.float64)
    opt = {'name': 'dist_meta', 'model_type': 'MZSRModel', 'scale': 2, 'num_gpu': 0, 'is_train': True,
           'dist': distributed, 'rank': rank, 'network_g': {'type': 'MZSRNet', 'num_feat': 8, 'num_layers': 3},
           'path': {'pretrain_network_g': None, 'resume_state': None},
           'train': {'optim_g': {'type': 'Adam', 'lr': 1e-3}, 'scheduler': {'type': 'MultiStepLR', 'milestones': [99],
                                                                             'gamma': 0.5},
                     'pixel_opt': {'type': 'L1Loss', 'loss_weight': 1.0},
                     'meta': {'inner_lr': 0.01, 'inner_steps': 2, 'first_order': False}}}
    model = build_model_on_ranks(opt, build_model)  # the plugin's CPU-aware DDP wrapping
    indices = [rank] if distributed else list(range(args.tasks))
    batch = {k: torch.stack([task(i)[k] for i in indices]) for k in task(0)}
    for it in range(1, STEPS + 1):
        model.feed_data(batch)
        model.optimize_parameters(it)
    net = model.get_bare_model(model.net_g)
    torch.save({k: v.detach().clone() for k, v in net.state_dict().items()}, os.path.join(args.out, f'rank{rank}.pth'))
    if distributed:
        dist.destroy_process_group()


if __name__ == '__main__':
    main()
