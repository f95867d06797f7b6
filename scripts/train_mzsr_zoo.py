"""Train the MZSR weights the package ships (``srdistill/zero_shot/weights/``): the project's own bicubic
pretraining and meta-transfer, CPU-scaled, on a pool of HR photographs (SunHays80 + the bundled photographs by
default). Every step is a BasicSR run resumed with ``--auto_resume``, so a killed run continues::

    python scripts/train_mzsr_zoo.py [--models directx2 bicubicx2 directx4] [--pool DIR ...] [--threads 2]

Writes ``weights/mzsr_<name>.pth`` (``{'params': ...}`` only) and ``weights/zoo.json`` (what each was trained on, for
how many iterations, on which device and for how long).
"""
from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import torch

from srdistill.core.atomic_io import atomic_path
from srdistill.core.prepare import PrepareOptions, prepare_lmdbs
from srdistill.core.sample_images import export_skimage_photos
from srdistill.core.safe_load import load_checkpoint
from srdistill_plugin.zero_shot.training import TrainingRun, meta_transfer_chain
from srdistill.zero_shot.zoo import WEIGHTS, ZOO

ROOT = Path(__file__).resolve().parent.parent
# name -> (pretraining scale, meta options, extra --force_yml of the meta run)
META = {'directx2': (2, 'options/mzsr_meta_x2_cpu.yml', []),
        'bicubicx2': (2, 'options/mzsr_meta_bicubic_x2_cpu.yml', []),
        'directx4': (4, 'options/mzsr_meta_x2_cpu.yml',
                     ['scale=4', 'network_g:upscale=4', 'datasets:train:gt_size=48',
                      'val:adaptation:schedule=direct_x4'])}


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--models', nargs='+', default=list(META), choices=list(META))
    p.add_argument('--pool', nargs='+', default=[str(ROOT.parent / 'shared' / 'data' / 'pool' / 'SunHays80')],
                   help='folders of HR photographs (the bundled photographs are always added)')
    p.add_argument('--pretrain-iters', type=int, default=1500)
    p.add_argument('--meta-iters', type=int, default=800)
    p.add_argument('--threads', type=int, default=2)
    p.add_argument('--work', default=str(ROOT / 'benchmarks' / 'work' / 'zoo'))
    return p.parse_args()


def pool_lmdb(folders: list[str], work: Path) -> Path:
    """One HR LMDB of 192x192 sub-images of every photograph (built once)."""
    lmdb = work / 'pool' / 'HR.lmdb'
    if not lmdb.is_dir():
        photos = work / 'photos'
        export_skimage_photos(photos)
        for folder in map(Path, folders):
            for path in sorted(folder.iterdir()):
                if path.is_file():
                    shutil.copyfile(path, photos / f'{folder.name}_{path.name}')
        prepare_lmdbs(photos, lmdb.parent, PrepareOptions(crop_size=192, step=192, scales=()))
    return lmdb


def main() -> None:
    args = parse_args()
    work = Path(args.work)
    lmdb = pool_lmdb(args.pool, work)
    common = [f'datasets:train:dataroot_gt={lmdb}', 'logger:use_tb_logger=False']
    record_file = WEIGHTS / 'zoo.json'
    records = json.loads(record_file.read_text()) if record_file.is_file() else {}
    for name in args.models:
        scale, meta_options, extra = META[name]
        pretrain = TrainingRun(f'zoo_pretrain_x{scale}', 'options/mzsr_pretrain_x2_cpu.yml',
                               (f'scale={scale}', f'network_g:upscale={scale}', f'train:total_iter={args.pretrain_iters}'))
        meta = TrainingRun(f'zoo_meta_{name}', meta_options,
                           (*extra, f'train:total_iter={args.meta_iters}', 'val:val_freq=1000000000'))
        nets, times = meta_transfer_chain(ROOT, work / 'experiments', common, pretrain, {name: meta}, args.threads)
        seconds = sum(times.values())
        params = load_checkpoint(nets[name])['params']
        with atomic_path(WEIGHTS / ZOO[name].file) as tmp:
            torch.save({'params': params}, tmp)
        records[name] = {'file': ZOO[name].file, 'scale': scale, 'downsample': ZOO[name].downsample,
                         'pretrain_iters': args.pretrain_iters, 'meta_iters': args.meta_iters,
                         'meta_options': meta_options, 'meta_overrides': extra,
                         'pool': [Path(p).name for p in args.pool] + ['scikit-image bundled photographs'],
                         'device': f'CPU, {args.threads} threads', 'wall_seconds_this_call': round(seconds)}
        record_file.write_text(json.dumps(records, indent=2) + '\n')
        print(f'{name}: {WEIGHTS / ZOO[name].file}', flush=True)


if __name__ == '__main__':
    main()
