"""Runs of the former ``benchmarks/mzsr_adaptation.py`` taken into a zero-shot experiment: its results file's rows by
set, kernel and image, checked against the experiment's settings, and stored under the weights hashes it recorded
(so its figures come back without retraining, and rows made from other weights are never mixed in)."""
from __future__ import annotations

import json
from pathlib import Path

from srdistill.core.errors import SRDistillError
from srdistill.core.imageio import list_images
from srdistill.core.kernels import eval_kernel

from .zero_shot_options import ZeroShotExperiment


def relative(path: Path, root: Path) -> str:
    return str(path.relative_to(root)) if path.is_relative_to(root) else str(path)


def read_import(exp: ZeroShotExperiment, root: Path) -> dict:
    """The rows of a results file of ``benchmarks/mzsr_adaptation.py`` by set, kernel and image, after checking that
    its settings are this experiment's (one line naming the first that differs)."""
    path = exp.import_file
    data = json.loads(path.read_text())
    args, rel = data['args'], relative(path, root)

    def differs(option: str, ours, theirs) -> None:
        if ours != theirs:
            raise SRDistillError(f'option {option}: {ours!r}, but the imported {rel} ran {theirs!r}')

    if 'estimate_iters' in args:
        return read_blind_import(exp, data, rel, differs)

    differs('scale', exp.scale, 2)
    differs('start', next(iter(exp.start)), {'own': 'train', 'official': 'official'}[args.get('start', 'own')])
    if 'train' in exp.start:
        differs('start.train.total_iter', exp.start['train'].get('total_iter'), args['pretrain_iters'])
    if args.get('arm_average'):
        raise SRDistillError(f'option import: {rel} evaluated averaged weights, which this experiment does not make')
    for arm, spec in exp.arms.items():
        if arm not in data['checkpoints']:
            continue
        differs(f'arms.{arm}.total_iter', spec.total_iter, args.get('arm_iters', {}).get(arm, args['meta_iters']))
        differs(f'arms.{arm}.checkpoint', spec.checkpoint, args.get('arm_checkpoint', {}).get(arm))
        if arm in exp.kernels.values():  # (an ablation-only arm adapts at ablation.schedule)
            differs(f'arms.{arm}.schedule', spec.schedule,
                    args.get('direct_schedule', 'direct_x2') if arm == 'direct' else f'{arm}_x2')
    if exp.zssr.sets:
        differs('zssr.max_iters', exp.zssr.max_iters, args['zssr_max_iters'])
        differs('zssr.crop', exp.zssr.crop, args['zssr_crop'])
    rows = {}
    for key, image_rows in data['per_image'].items():
        set_name, kernel = key.split('/')
        set_dir = next((s for s in exp.sets if s.name == set_name), None)
        if set_dir is None or kernel not in exp.kernels:
            continue
        differs(f'kernels.{kernel}', exp.kernels[kernel],
                'bicubic' if eval_kernel(kernel)[1] == 'bicubic' else 'direct')
        stems = [p.stem for p in list_images(set_dir / 'HR')]
        if len(stems) != len(image_rows):
            raise SRDistillError(f'option import: {rel} has {len(image_rows)} rows for {set_name}, {set_dir} holds '
                                 f'{len(stems)} images')
        methods = ('bicubic', 'pretrained', *(f'mzsr{n}' for n in exp.steps_for(set_name)))
        ablation = (data.get('ablation') or {}).get(key, [{}] * len(stems))
        rows[set_name, kernel] = {}
        for stem, row, ablated in zip(stems, image_rows, ablation):
            if any(m not in row for m in methods):
                raise SRDistillError(f'option mzsr_steps: {rel} has no {[m for m in methods if m not in row]} for '
                                     f'{set_name}/{kernel} (set mzsr_steps_by_set for it)')
            entry = {'main': {m: row[m] for m in methods}, **ablated}
            if 'zssr_final' in row:
                entry['zssr'] = {k: row[k] for k in ('zssr_curve', 'zssr_final', 'zssr_iters')}
            rows[set_name, kernel][stem] = entry
    return {'file': str(rel), 'checkpoints': data['checkpoints'], 'times': data.get('times', {}),
            'env': data.get('env', {}), 'args': args, 'rows': rows}


def read_blind_import(exp: ZeroShotExperiment, data: dict, rel: str, differs) -> dict:
    """The rows of a results file of the former ``benchmarks/blind_sr.py`` by set and image (its networks: the arms
    of the same names), after checking its settings against ``blind``."""
    args, b = data['args'], exp.blind
    for option, theirs in (('default_kernel', args['default_kernel']), ('wrong_kernel', args['wrong_kernel']),
                           ('estimate_iters', args['estimate_iters']), ('steps', args['mzsr_steps']),
                           ('seed', args['seed']), ('zssr_sets', tuple(args['zssr_sets']))):
        differs(f'blind.{option}', getattr(b, option), theirs)
    unknown = [arm for arm in b.arms if arm not in data['models']]
    if unknown:
        raise SRDistillError(f'option blind.arms: {rel} has no network named {unknown} (it ran {list(data["models"])})')
    rows = {}
    for set_name, images in data['per_image'].items():
        if set_name in b.sets:
            rows[set_name] = {r['image']: {'estimate': {k: v for k, v in r.items() if k not in ('image', 'models')},
                                           'models': r['models']} for r in images}
    return {'file': rel, 'checkpoints': dict(data['models']), 'times': {}, 'env': data.get('env', {}), 'args': args,
            'rows': {}, 'blind_rows': rows}

