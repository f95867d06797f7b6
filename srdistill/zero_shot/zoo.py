"""The MZSR weights the package ships, by name: the project's own pretraining and meta-transfer, shipped from a
zero-shot experiment's rule-chosen checkpoints (``scripts/ship_mzsr_zoo.py``) or trained at CPU scale in one go
(``scripts/train_mzsr_zoo.py``); ``weights/zoo.json`` records how each was trained."""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

from srdistill.core.errors import SRDistillError

WEIGHTS = Path(__file__).resolve().parent / 'weights'
# the terms of the photographs the shipped weights were trained on, recorded beside them
POOL_TERMS = ('SunHays80: research use (Sun & Hays); T91: no licence statement (research use throughout the SR '
              'literature); BSD200 (BSDS300): non-commercial research and education; scikit-image\'s bundled '
              'photographs: as scikit-image states for each (public domain, CC0 or no known restrictions). Weights '
              'trained on them: for non-commercial research.')


@dataclass(frozen=True)
class ZooModel:
    file: str
    scale: int
    downsample: str  # how its meta-training tasks made the LR: direct subsampling or bicubic
    schedule: str  # the official test-time step sizes for it


ZOO = {'directx2': ZooModel('mzsr_directx2.pth', 2, 'direct', 'direct_x2'),
       'bicubicx2': ZooModel('mzsr_bicubicx2.pth', 2, 'bicubic', 'bicubic_x2'),
       'directx4': ZooModel('mzsr_directx4.pth', 4, 'direct', 'direct_x4')}
DEFAULT_MODEL = 'directx2'


def zoo_model(name: str) -> tuple[Path, ZooModel]:
    """The shipped weights of ``name`` and what they were trained for: the test-time step sizes their checkpoint
    was chosen with where ``zoo.json`` records them (``scripts/ship_mzsr_zoo.py``), else the official ones."""
    if name not in ZOO:
        raise SRDistillError(f'option --model: {name!r} is neither a file nor a shipped model ({", ".join(ZOO)})')
    path = WEIGHTS / ZOO[name].file
    if not path.is_file():
        raise SRDistillError(f'{path}: the shipped {name} weights are missing from this install '
                             '(python scripts/ship_mzsr_zoo.py or train_mzsr_zoo.py makes them)')
    records = json.loads((WEIGHTS / 'zoo.json').read_text()) if (WEIGHTS / 'zoo.json').is_file() else {}
    schedule = (records.get(name) or {}).get('meta_transfer', {}).get('test_schedule')
    return path, dataclasses.replace(ZOO[name], schedule=schedule) if schedule else ZOO[name]


ESTIMATOR_FILE = WEIGHTS / 'kernel_predictor_x2.pth'  # the learned kernel estimator (options/kernel_predictor_x2.yml)


def estimate_by_default(name: str) -> bool:
    """Whether ``--kernel estimate`` is the default for a shipped model: only where the shipped estimator was made
    for its scale and subsampling and beat the default kernel on the held-out photographs it was chosen on, with
    these very weights (its record says so, with their hash; ``scripts/ship_kernel_predictor.py``). New weights
    shipped after the choice turn the default off until the choice is made again."""
    from srdistill.core.hashing import file_hash
    from srdistill.core.kernel_predictor import load_predictor

    if not ESTIMATOR_FILE.is_file():
        return False
    _, settings, record = load_predictor(ESTIMATOR_FILE)
    model = ZOO[name]
    weights = WEIGHTS / model.file
    return (settings.scale, settings.downsample) == (model.scale, model.downsample) and bool(
        record.get('wins_on_validation') and record.get('mzsr_model') == name and weights.is_file()
        and record.get('mzsr_hash') == file_hash(weights))


def shipped_estimator() -> Path:
    """The learned kernel estimator's weights file."""
    if not ESTIMATOR_FILE.is_file():
        raise SRDistillError(f'{ESTIMATOR_FILE}: the shipped kernel estimator is missing from this install '
                             '(python scripts/ship_kernel_predictor.py makes it)')
    return ESTIMATOR_FILE
