"""Ship MZSR weights from a zero-shot experiment: each named arm's checkpoint chosen by the experiment's checkpoint
rule becomes the package's ``srdistill/zero_shot/weights/mzsr_<model>.pth`` (network only), and ``zoo.json`` records
its start, pool, iterations (trained and chosen), device, hours and the training data's terms::

    srdistill-experiment -opt options/report/mzsr_x2_long_start.yml       # trains and chooses first
    python scripts/ship_mzsr_zoo.py -opt options/report/mzsr_x2_long_start.yml [--arms direct=directx2 bicubic=bicubicx2]

Models of ``zoo.json`` not named keep their record. An arm without a rule-chosen checkpoint is refused in one line.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
import yaml

from srdistill.cli import run_cli
from srdistill.core.atomic_io import atomic_path, atomic_write_text
from srdistill.core.errors import SRDistillError
from srdistill.core.options_file import read_options
from srdistill.core.safe_load import load_checkpoint
from srdistill.zero_shot.zoo import POOL_TERMS, WEIGHTS, ZOO
from srdistill_plugin.experiment.zero_shot_import import relative
from srdistill_plugin.experiment.zero_shot_options import ZeroShotExperiment

ROOT = Path(__file__).resolve().parent.parent
PRETRAIN_STUDY = ROOT / 'benchmarks' / 'results' / 'mzsr_pretrain_long'


def pretraining_record(study: Path, root: Path) -> dict:
    """What the start was: the long pretraining's options, its chosen iteration and its hours (``final.json`` and
    the training record of ``scripts/pretrain_report.py --finish``)."""
    from srdistill_plugin.zero_shot.training import training_seconds

    final = study / 'final.json'
    if not final.is_file():
        raise SRDistillError(f'{final}: missing (python scripts/pretrain_report.py --finish writes it)')
    data = json.loads(final.read_text())
    return {'options': 'options/mzsr_pretrain_x2_long.yml', 'chosen_iter': data['chosen_iter'],
            'heldout_psnr': round(data['heldout_psnr'], 4),
            'hours': round(training_seconds(study / 'record') / 3600, 2),
            'results': relative(study / 'README.md', root)}


def ship(opt_file: Path, arms: dict[str, str], root: Path, weights: Path, study: Path) -> dict:
    """Copy each arm's rule-chosen checkpoint to ``weights`` as its zoo model and update ``zoo.json``."""
    exp = ZeroShotExperiment.from_opt(read_options(opt_file), root)
    networks_file = root / 'experiments' / exp.name / 'networks.json'
    networks = json.loads(networks_file.read_text()) if networks_file.is_file() else {}
    start = pretraining_record(study, root)
    record_file = weights / 'zoo.json'
    records = json.loads(record_file.read_text()) if record_file.is_file() else {}
    for arm, model in arms.items():
        if arm not in exp.arms or model not in ZOO:
            raise SRDistillError(f'option --arms: {arm}={model}: the experiment\'s arms are {", ".join(exp.arms)}, '
                                 f'the zoo\'s models {", ".join(ZOO)}')
        spec, network = exp.arms[arm], networks.get(arm) or {}
        if not spec.by_rule or 'chosen' not in network:
            raise SRDistillError(f'{networks_file}: arm {arm} has no checkpoint chosen by the checkpoint rule '
                                 f'(srdistill-experiment -opt {opt_file} chooses it)')
        params = load_checkpoint(root / network['path'])['params']
        with atomic_path(weights / ZOO[model].file) as tmp:
            torch.save({'params': params}, tmp)
        meta_opt = yaml.safe_load((root / spec.options).read_text())
        records[model] = {
            'file': ZOO[model].file, 'scale': exp.scale, 'downsample': ZOO[model].downsample,
            'start': start,
            'meta_transfer': {'experiment': str(opt_file), 'arm': arm, 'options': spec.options,
                              'overrides': list(spec.overrides), 'trained_iters': spec.total_iter,
                              'chosen_iter': network['chosen'], 'test_schedule': spec.schedule,
                              'rule': f'best mean MZSR({spec.choose.steps}) PSNR on centre {spec.choose.crop}² '
                                      f'crops of {len(network.get("choice_photos", []))} held-out photographs '
                                      f'({", ".join(spec.choose.kernels)}), every {spec.choose.every} iterations',
                              'hours': round(network.get('seconds', 0) / 3600, 2), 'device': network.get('device'),
                              'inner_lr': meta_opt['train']['meta']['inner_lr'],
                              'inner_steps': meta_opt['train']['meta']['inner_steps']},
            'pool': 'the training photographs of scripts/prepare_mzsr_pool.py (SunHays80, T91, BSD200, '
                    "scikit-image's bundled photographs; 19 held out)",
            'terms': POOL_TERMS}
    atomic_write_text(record_file, json.dumps(records, indent=2) + '\n')
    return records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('-opt', required=True, help='the zero-shot experiment options (options/report/...yml)')
    parser.add_argument('--arms', nargs='+', default=['direct=directx2', 'bicubic=bicubicx2'], metavar='ARM=MODEL')
    parser.add_argument('--weights', default=str(WEIGHTS), help='the folder of the shipped weights and zoo.json')
    parser.add_argument('--pretrain-study', default=str(PRETRAIN_STUDY))
    args = parser.parse_args()
    arms = {}
    for item in args.arms:
        arm, sep, model = item.partition('=')
        if not sep:
            parser.error(f'--arms: expected ARM=MODEL, got {item!r}')
        arms[arm] = model
    records = ship(Path(args.opt), arms, Path.cwd(), Path(args.weights), Path(args.pretrain_study))
    for model in arms.values():
        print(f'{model}: {Path(args.weights) / records[model]["file"]} (meta-iteration '
              f'{records[model]["meta_transfer"]["chosen_iter"]})')


if __name__ == '__main__':
    run_cli(main)
