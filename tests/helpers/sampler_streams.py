"""Under torchrun: each rank builds ClassBalancedSampler for a class-labelled HR LMDB (through BasicSR's dataset
registry and the plugin's sampler registry) in a real gloo process group, and rank 0 writes every rank's index
stream of epochs 0 and 1 to OUT.

    torchrun --nproc_per_node=2 tests/helpers/sampler_streams.py LMDB OUT
"""
import json
import sys

import torch.distributed as dist
from basicsr.data import build_dataset

import srdistill_plugin  # noqa: F401
from srdistill_plugin.engine.distributed import init_dist
from srdistill_plugin.samplers import build_sampler


def main() -> None:
    lmdb, out = sys.argv[1], sys.argv[2]
    init_dist('pytorch', backend='gloo')
    rank, world = dist.get_rank(), dist.get_world_size()
    dataset = build_dataset({'name': 'distilled', 'type': 'HROnlyDataset', 'dataroot_gt': lmdb, 'phase': 'train',
                             'io_backend': {'type': 'lmdb'}, 'scale': 4, 'gt_size': 32})
    sampler = build_sampler({'type': 'ClassBalancedSampler', 'seed': 5}, dataset, world, rank, 20)
    streams = []
    for epoch in (0, 1):
        sampler.set_epoch(epoch)
        gathered = [None] * world
        dist.all_gather_object(gathered, list(sampler))
        streams.append(gathered)
    if rank == 0:
        with open(out, 'w') as f:
            json.dump({'streams': streams, 'class_ids': list(map(int, dataset.class_ids))}, f)
    dist.destroy_process_group()


if __name__ == '__main__':
    main()
