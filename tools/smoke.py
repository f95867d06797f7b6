"""Smoke-run every shipped option file for a few iterations on tiny data: ``python tools/smoke.py [--device cuda]``.

BasicSR options (train and test), distillation options, experiment (report) options, the MZSR pretrain / meta /
test options and the MMagic configs each run in their own process with their data paths pointed at tiny data built
once under ``--work`` (bundled photographs, their LMDBs, Set5), iterations cut to ``--iters``, and any weights a
test needs replaced by random-initialised ones: it checks that every file builds and runs on the device, not what
it learns. One line per file with seconds and peak memory; exit status 1 when any file fails. A tool of the clone
(the option files are not installed with the package).
"""
from __future__ import annotations

import argparse
import copy
import fnmatch
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import yaml

from srdistill.cli import run_cli
from srdistill.core.errors import SRDistillError
from srdistill.core.options_file import read_options


def option_files(root: Path, patterns: list[str]) -> list[Path]:
    """Every shipped option file (``options/**/*.yml``, ``configs/**/*.py`` but ``_base_``), filtered by glob."""
    files = sorted(root.glob('options/**/*.yml')) + sorted(root.glob('configs/**/*.py'))
    files = [p for p in files if '_base_' not in p.parts]  # what the others inherit, not a run of its own
    rel = [p.relative_to(root) for p in files]
    return [r for r in rel if not patterns or any(fnmatch.fnmatch(str(r), p) for p in patterns)]


def kind_of(path: Path, opt: dict | None) -> str:
    if path.suffix == '.py':
        return 'mmagic_test' if 'test' in path.parts else 'mmagic_train'
    if 'report' in path.parts:
        return 'zero_shot' if opt.get('kind') == 'zero_shot' else 'experiment'
    if 'pool' in opt and 'synthesize' in opt:
        return 'distill'
    return 'basicsr_train' if 'train' in opt and 'datasets' in opt and 'train' in opt['datasets'] else 'basicsr_test'


def build_tiny_data(root: Path, work: Path) -> dict[str, Path]:
    """Eight bundled photographs cropped to 256x256, their HR LMDB (with class ids) and x2 / x4 LR LMDBs."""
    from srdistill.core.degradations import bicubic_downscale
    from srdistill.core.imageio import read_image, to_uint8
    from srdistill.core.kernels import eval_kernel
    from srdistill.core.lmdb_io import read_meta_keys
    from srdistill.core.prepare import PrepareOptions, prepare_lmdbs
    from srdistill.core.sample_images import load_skimage_photos

    data = work / 'data'
    done = data / 'done.json'
    if done.is_file() and 'paired' in json.loads(done.read_text()):  # built by this version: reuse
        return {k: Path(v) for k, v in json.loads(done.read_text()).items()}
    shutil.rmtree(data, ignore_errors=True)  # unfinished, or made by another version: rebuilt whole
    photos = data / 'photos'
    photos.mkdir(parents=True)
    for name, img in sorted(load_skimage_photos().items())[:8]:
        h, w = img.shape[:2]
        side = min(h, w, 256)
        cv2.imwrite(str(photos / f'{name}.png'), img[(h - side) // 2:(h + side) // 2, (w - side) // 2:(w + side) // 2])
    for scale in (2, 4):  # a paired disk set in the benchmark layout: HR/<stem>.png, LR_bicubic/X<s>/<stem>x<s>.png
        (data / 'paired' / 'LR_bicubic' / f'X{scale}').mkdir(parents=True, exist_ok=True)
        for photo in photos.glob('*.png'):
            hr = read_image(photo)
            cv2.imwrite(str(data / 'paired' / 'LR_bicubic' / f'X{scale}' / f'{photo.stem}x{scale}.png'),
                        to_uint8(bicubic_downscale(hr, scale)))
    shutil.copytree(photos, data / 'paired' / 'HR', dirs_exist_ok=True)
    kernels = data / 'kernels'  # one blur kernel per photo, for the given-LR zero-shot options
    kernels.mkdir(exist_ok=True)
    for photo in photos.glob('*.png'):
        np.save(kernels / f'{photo.stem}.npy', eval_kernel('gd2.0')[0])
    lmdbs = prepare_lmdbs(photos, data / 'lmdb', PrepareOptions(scales=(2, 4)))
    keys = read_meta_keys(lmdbs['HR'])
    (lmdbs['HR'] / 'class_info.txt').write_text(''.join(f'{k} {i % 2}\n' for i, k in enumerate(keys)))
    paths = {'photos': photos, 'paired': data / 'paired', 'kernels': kernels, 'hr_lmdb': lmdbs['HR'], 'set5': root / 'datasets' / 'Set5',
             **{f'lr_lmdb_x{s}': lmdbs[f'X{s}'] for s in (2, 4)}}
    done.write_text(json.dumps({k: str(v) for k, v in paths.items()}))
    return paths


def random_weights(network_opt: dict, out: Path) -> Path:
    """A BasicSR checkpoint of a freshly initialised ``network_g`` (the smoke run checks plumbing, not weights)."""
    import torch
    from basicsr.archs import build_network

    import srdistill_plugin  # noqa: F401  (registers the plugin's archs)
    torch.save({'params': build_network(copy.deepcopy(network_opt)).state_dict()}, out)
    return out


def basicsr_options(opt: dict, stem: str, data: dict, work: Path, root: Path, iters: int, num_gpu: int) -> dict:
    opt = copy.deepcopy(opt)
    opt['name'], opt['num_gpu'] = f'smoke_{stem}', num_gpu
    scale = opt.get('scale', 4)
    for dataset in opt.get('datasets', {}).values():
        dataset.update(num_worker_per_gpu=0, prefetch_mode=None)
        lmdb = (dataset.get('io_backend') or {}).get('type') == 'lmdb'
        paired = 'dataroot_gt' in dataset and 'dataroot_lq' in dataset  # else HR only, or LR only (zero-shot)
        if 'dataroot_gt' in dataset:
            local = root / str(dataset['dataroot_gt'])
            tiny = data['paired'] / 'HR' if paired else data['photos']
            dataset['dataroot_gt'] = str(data['hr_lmdb'] if lmdb else local if local.exists() else tiny)
        if 'dataroot_lq' in dataset:
            local = root / str(dataset['dataroot_lq'])
            tiny = data['paired'] / 'LR_bicubic' / f'X{scale}' if paired else data['photos']
            dataset['dataroot_lq'] = str(data[f'lr_lmdb_x{scale}'] if lmdb else local if local.exists() else tiny)
        if 'kernel_dir' in dataset and not (root / str(dataset['kernel_dir'])).exists():
            dataset['kernel_dir'] = str(data['kernels'])
        dataset.pop('meta_info_file', None)
        if 'batch_size_per_gpu' in dataset:
            dataset['batch_size_per_gpu'] = min(dataset['batch_size_per_gpu'], 2)
    path = opt.setdefault('path', {})
    weights = path.get('pretrain_network_g')
    if weights and not (root / str(weights)).is_file():
        path['pretrain_network_g'] = str(random_weights(opt['network_g'], work / f'{stem}_random_init.pth'))
    elif weights:
        path['pretrain_network_g'] = str(root / str(weights))
    path['resume_state'] = None
    if 'train' in opt:
        opt['train']['total_iter'] = iters
        opt['train'].pop('warmup_iter', None)
        opt['logger'] = {**opt.get('logger', {}), 'print_freq': 1, 'save_checkpoint_freq': iters,
                         'use_tb_logger': False, 'wandb': {'project': None}}
    if 'val' in opt:
        opt['val']['val_freq'] = iters
        adaptation = opt['val'].get('adaptation') or {}
        for key in ('steps', 'max_iters'):
            if key in adaptation:
                adaptation[key] = min(int(adaptation[key]), 2)
    return opt


def tiny_latent_models(work: Path) -> dict[str, str]:
    """A tiny AutoencoderKL (x2 latent grid) and class-conditional DiT in diffusers' format, stand-ins with the real
    formats for the pretrained models a latent-backend file names (built once)."""
    from diffusers import AutoencoderKL, Transformer2DModel
    import torch

    folder = work / 'tiny_latent_models'
    if not (folder / 'dit' / 'config.json').is_file():
        torch.manual_seed(0)
        AutoencoderKL(block_out_channels=(8, 8), down_block_types=('DownEncoderBlock2D', ) * 2,
                      up_block_types=('UpDecoderBlock2D', ) * 2, latent_channels=4, norm_num_groups=4,
                      sample_size=32).save_pretrained(folder / 'vae')
        Transformer2DModel(num_attention_heads=2, attention_head_dim=4, in_channels=4, out_channels=8, num_layers=1,
                           sample_size=16, patch_size=2, norm_type='ada_norm_zero',
                           num_embeds_ada_norm=10).save_pretrained(folder / 'dit')
    return {'vae_dir': str(folder / 'vae'), 'decode_vae_dir': str(folder / 'vae'), 'denoiser_dir': str(folder / 'dit')}


def distill_options(opt: dict, stem: str, data: dict, work: Path, iters: int, num_gpu: int) -> dict:
    opt = copy.deepcopy(opt)
    opt.update(name=f'smoke_{stem}', pool=str(data['photos']), output=str(work / stem / 'distilled'), num_gpu=num_gpu)
    select = opt.setdefault('select', {})
    if select.get('patch_size', 64) > 64:  # patches larger than the tiny photographs: 32-px ones, the kept quarter
        select.update(patch_size=32, stride=16, threshold=None, keep_fraction=0.25)
    ft = opt.setdefault('finetune', {})
    network = ft.get('network_g') or {}
    if network.get('type') == 'LatentClassConditionalDenoiser':
        models = tiny_latent_models(work)
        network.update(vae_dir=models['vae_dir'], denoiser_dir=models['denoiser_dir'])
        if network.get('decode_vae_dir'):
            network['decode_vae_dir'] = models['decode_vae_dir']
    ft.setdefault('train', {})['total_iter'] = iters
    ft['logger'] = {**ft.get('logger', {}), 'print_freq': 1, 'save_checkpoint_freq': iters, 'use_tb_logger': False}
    ft.setdefault('dataset', {})['batch_size_per_gpu'] = 2
    syn = opt.setdefault('synthesize', {})
    syn.pop('budget_percent', None)
    syn['per_class'] = 2
    opt.setdefault('categorize', {}).setdefault('clip', {})['pretrained'] = None
    opt['categorize']['features'] = 'auto'  # no CLIP weights here: the colour-texture descriptor
    opt['categorize']['num_classes'] = min(int(opt['categorize'].get('num_classes', 2)), 3)
    syn['steps'] = min(int(syn.get('steps', 2)), 2)
    return opt


def experiment_options(opt: dict, stem: str, data: dict, iters: int) -> dict:
    opt = copy.deepcopy(opt)
    budget = max(opt['budgets_percent'])
    opt.update(name=f'smoke_{stem}', pool=str(data['photos']), test_sets=[str(data['set5'])],
               budgets_percent=[budget], student_budgets_percent=[budget], seeds=opt['seeds'][:1],
               validation={'holdout_images': 2, 'crop_size': 128}, full_pool={'crop_size': 128, 'step': 128})
    sr = opt.get('sr_train', {})
    opt['sr_train'] = {**sr, 'total_iter': 2 * iters, 'eval_every': iters, 'max_iter': None, 'batch_size': 2,
                       'gt_size': min(sr.get('gt_size', 64), 64)}  # crops that fit every arm's set patches
    categorize = opt['distill'].setdefault('categorize', {})
    categorize['num_classes'] = min(int(categorize.get('num_classes', 2)), 2)  # six small training photographs
    ft = opt['distill'].setdefault('finetune', {})
    ft.setdefault('train', {})['total_iter'] = iters
    ft['logger'] = {**ft.get('logger', {}), 'print_freq': 1, 'save_checkpoint_freq': iters, 'use_tb_logger': False}
    return opt


def zero_shot_options(opt: dict, stem: str, data: dict, work: Path, root: Path, iters: int) -> dict:
    """A zero-shot experiment on the tiny data: the start trained (or random weights for the official network's
    conversion and for arms given by weights), every trained arm ``2 x iters`` meta-iterations with checkpoints every
    ``iters``, two kernels, MZSR(0/1), a short ZSSR and a short kernel estimate; nothing imported. Runs in ``work``
    (the options files named absolutely, the trainings' zero-shot validation pointed at the tiny data)."""
    opt = copy.deepcopy(opt)
    opt.pop('import', None)
    network = {'type': 'MZSRNet', 'upscale': opt['scale']}
    start = opt.get('start') or {}
    if 'train' in start:
        start['train'] = {**start['train'], 'total_iter': iters, 'options': str(root / start['train']['options']),
                          'overrides': [*start['train'].get('overrides', []), 'logger:print_freq=1']}
    elif start:
        opt['start'] = {'weights': str(random_weights(network, work / f'{stem}_random_start.pth'))}
    tasks = [f'datasets:val:dataroot_gt={data["paired"] / "HR"}', 'datasets:train:gt_size=32',
             'datasets:train:batch_size_per_gpu=1', 'logger:print_freq=1', f'logger:save_checkpoint_freq={iters}']
    for name, arm in opt['arms'].items():
        if 'weights' in arm:
            arm['weights'] = str(random_weights(network, work / f'{stem}_{name}_random.pth'))
            continue
        if 'average' in arm:
            arm['average'] = {**arm['average'], 'window': iters}
        elif 'branch' in arm:  # from the first saved state, to the end of its arm
            arm.update(branch={**arm['branch'], 'at': iters}, total_iter=2 * iters)
        else:
            arm.update(total_iter=2 * iters, overrides=[*arm.get('overrides', []), *tasks],
                       options=str(root / arm['options']))
        if arm.get('checkpoint'):
            arm['checkpoint'] = iters
        if arm.get('choose'):
            arm['choose'] = {**arm['choose'], 'photos': str(data['paired'] / 'HR'), 'every': iters, 'crop': 64,
                             'curve_sets': ['paired'] if arm['choose'].get('curve_sets') else [], 'curve_steps': []}
    kernels = opt.get('kernels') or {}
    first, bicubic = list(kernels.items())[:1], [kv for kv in kernels.items() if kv[0].startswith('gb')]
    kernels = dict(first + bicubic[:1])
    opt.update(name=f'smoke_{stem}', pool=str(data['photos']), sets=[str(data['paired'])], kernels=kernels,
               mzsr_steps=[0, 1], mzsr_steps_by_set={}, zssr={'sets': ['paired'] if kernels else [],
                                                           'kernels': list(kernels)[:1], 'max_iters': 2 * iters,
                                                           'crop': 32})
    for section, changes in (('ablation', {'sets': ['paired'], 'kernels': list(kernels)[:1]}),
                             ('blind', {'sets': ['paired'], 'estimate_iters': 2 * iters, 'steps': 1, 'zssr_sets': []}),
                             ('checkpoint_rule', {'photos': str(data['paired'] / 'HR'), 'every': iters, 'crop': 64})):
        if opt.get(section):
            opt[section] = {**opt[section], **changes}
    return opt


def mmagic_args(path: Path, data: dict, work: Path, iters: int) -> list[str]:
    """``tools/mm_train.py`` / ``mm_test.py`` arguments with the data and iterations of the smoke run."""
    from mmengine.config import Config

    cfg = Config.fromfile(str(path))
    out = ['--work-dir', str(work / path.stem)]
    overrides = []
    if 'test' in path.parts:
        ckpt = work / f'{path.stem}_empty_state.pth'
        import torch
        torch.save({'state_dict': {}, 'meta': {}}, ckpt)  # random-initialised model (non-strict load)
        loaders = cfg.test_dataloader
        keys = [f'test_dataloader.{i}' for i in range(len(loaders))] if isinstance(loaders, list) else ['test_dataloader']
        for key, loader in zip(keys, loaders if isinstance(loaders, list) else [loaders]):
            overrides.append(f'{key}.dataset.data_root={data["set5"]}')
            if 'indices' not in loader['dataset']:
                overrides.append(f'{key}.dataset.indices=[0]')
        return [str(ckpt), *out, '--cfg-options', *overrides]
    weights = cfg.model.get('pretrained_basicsr')
    if weights and not (path.parents[1] / weights).is_file():  # configs/<file>: relative to the clone's root
        generator = {k: v for k, v in cfg.model.generator.items()}
        overrides.append(f'model.pretrained_basicsr={random_weights(generator, work / f"{path.stem}_random_init.pth")}')
    dataset = cfg.train_dataloader.dataset
    key = 'dataroot_gt' if 'dataroot_gt' in dataset else 'data_root'
    overrides += [f'train_dataloader.dataset.{key}={data["hr_lmdb"]}', f'train_cfg.max_iters={iters}',
                  f'train_cfg.val_interval={iters}', f'default_hooks.checkpoint.interval={iters}',
                  'default_hooks.logger.interval=1', 'train_dataloader.batch_size=2',
                  'val_dataloader.dataset.data_root=' + str(data['set5'])]
    return [*out, '--cfg-options', *overrides]


def run_one(root: Path, rel: Path, work: Path, device: str, iters: int) -> None:
    """Run one option file in this process (the parent measures it)."""
    import torch
    torch.set_num_threads(int(os.environ.get('SRDISTILL_SMOKE_THREADS', '2')))
    num_gpu = 1 if device == 'cuda' else 0
    data = build_tiny_data(root, work)
    path = root / rel
    stem = rel.with_suffix('').as_posix().replace('/', '_')
    if path.suffix == '.py':
        tool = 'mm_test.py' if 'test' in path.parts else 'mm_train.py'
        env = {**os.environ, 'CUDA_VISIBLE_DEVICES': os.environ.get('CUDA_VISIBLE_DEVICES', '0') if num_gpu else ''}
        subprocess.run([sys.executable, str(root / 'tools' / tool), str(path), *mmagic_args(path, data, work, iters)],
                       cwd=root, check=True, env=env)
        return
    opt = read_options(path)
    kind = kind_of(rel, opt)
    if kind == 'distill':
        from srdistill_plugin.distill.runner import DistillRun
        DistillRun(distill_options(opt, stem, data, work, iters, num_gpu), root=work).run()
    elif kind == 'experiment':
        from srdistill_plugin.experiment.options import load_experiment
        from srdistill_plugin.experiment.runner import run_experiment
        exp_file = work / f'{stem}.yml'
        exp_file.write_text(yaml.safe_dump(experiment_options(opt, stem, data, iters)))
        run_experiment(load_experiment(str(exp_file), work), work, num_gpu=num_gpu)
    elif kind == 'zero_shot':
        from srdistill_plugin.experiment.options import load_experiment
        from srdistill_plugin.experiment.zero_shot_runner import run_zero_shot
        exp_file = work / f'{stem}.yml'
        exp_file.write_text(yaml.safe_dump(zero_shot_options(opt, stem, data, work, root, iters), sort_keys=False))
        run_zero_shot(load_experiment(str(exp_file), work), work, num_gpu=num_gpu)
    else:
        opt_file = work / f'{stem}.yml'
        opt_file.write_text(yaml.safe_dump(basicsr_options(opt, stem, data, work, root, iters, num_gpu)))
        command = 'train' if kind == 'basicsr_train' else 'test'
        subprocess.run([sys.executable, '-m', f'srdistill_plugin.commands.{command}', '-opt', str(opt_file)],
                       cwd=work, check=True)


def peak_memory_mb() -> float:
    """The largest resident set of this process or any of its finished children, in MB (Linux reports kB)."""
    return max(resource.getrusage(who).ru_maxrss for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)) / 1024


def main_smoke(args: argparse.Namespace) -> int:
    root = Path(args.root).resolve()
    work = Path(args.work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    files = option_files(root, args.only)
    if not files:
        raise SRDistillError(f'--only {args.only}: no shipped option file matches under {root}')
    build_tiny_data(root, work)
    rows, failed = [], 0
    for rel in files:
        log = work / 'logs' / (rel.as_posix().replace('/', '_') + '.log')
        log.parent.mkdir(exist_ok=True)
        start = time.perf_counter()
        with open(log, 'w') as f:
            proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), '--one', str(rel),
                                   '--root', str(root), '--work', str(work), '--device', args.device,
                                   '--iters', str(args.iters)], stdout=f, stderr=subprocess.STDOUT, cwd=work)
        seconds, status = time.perf_counter() - start, 'pass' if proc.returncode == 0 else 'FAIL'
        failed += proc.returncode != 0
        peak = work / 'logs' / (rel.as_posix().replace('/', '_') + '.peak_mb')
        rows.append((str(rel), status, seconds, float(peak.read_text()) if peak.is_file() else float('nan')))
        print(f'{status:4}  {rel}  {seconds:.1f} s  peak RSS {rows[-1][3]:.0f} MB'
              + ('' if proc.returncode == 0 else f'  (log: {log})'), flush=True)
    print(f'{len(files) - failed} passed, {failed} failed')
    if args.out:
        write_table(Path(args.out), rows, args)
    return 1 if failed else 0


def write_table(out: Path, rows: list[tuple[str, str, float, float]], args: argparse.Namespace) -> None:
    import torch
    device = torch.cuda.get_device_name(0) if args.device == 'cuda' else f'CPU ({os.cpu_count()} cores)'
    lines = [f'# Smoke run of every shipped option file ({device})', '',
             f'`python tools/smoke.py --device {args.device} --iters {args.iters}`: tiny data, {args.iters} iterations, '
             'random-initialised weights where a test needs weights (plumbing, not quality). Peak RSS: the largest '
             'resident set of the file\'s own processes.', '',
             '| file | result | seconds | peak RSS (MB) |', '|---|---|---|---|']
    lines += [f'| `{f}` | {s} | {t:.1f} | {m:.0f} |' for f, s, t, m in rows]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text('\n'.join(lines) + '\n')


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--device', choices=('cpu', 'cuda'), default='cpu')
    parser.add_argument('--only', nargs='*', default=[], help='glob patterns of option files (default: all)')
    parser.add_argument('--iters', type=int, default=2, help='training iterations per file (default 2)')
    parser.add_argument('--root', default=str(Path(__file__).resolve().parents[1]),
                        help='the clone whose options/ and configs/ are run (default: this clone)')
    parser.add_argument('--work', default='smoke_work', help='tiny data, outputs and logs (default: smoke_work)')
    parser.add_argument('--out', help='also write a markdown table here')
    parser.add_argument('--one', help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def check_args(args: argparse.Namespace) -> None:
    """Options that would make a smoke run pass without running anything, or fail later."""
    if args.iters < 1:
        raise SRDistillError(f'option --iters: expected an integer >= 1, got {args.iters}')
    if not (Path(args.root) / 'options').is_dir():
        raise SRDistillError(f'option --root: {args.root} has no options/ folder (expected a clone of the project)')
    if args.device == 'cuda':
        import torch
        if not torch.cuda.is_available():
            raise SRDistillError('--device cuda: torch sees no CUDA device on this machine')


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    run_cli(lambda: check_args(args))
    if args.one:
        work = Path(args.work).resolve()
        try:
            run_cli(lambda: run_one(Path(args.root).resolve(), Path(args.one), work, args.device, args.iters))
        finally:  # this file's own peak (its process and the processes it ran), for the parent's line
            (work / 'logs' / (args.one.replace('/', '_') + '.peak_mb')).write_text(f'{peak_memory_mb():.0f}')
        return
    code = [0]
    run_cli(lambda: code.__setitem__(0, main_smoke(args)))
    sys.exit(code[0])


if __name__ == '__main__':
    main()
