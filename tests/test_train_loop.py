"""The plugin's own train loop: nothing of BasicSR or torch is replaced at run time (checked during a training step
and after the run), and one process trains to N iterations, validates and goes on, with the validation curve and
the seconds of each stretch in ``training.json`` and the same weights as one straight run."""
import json
import os
import subprocess
import sys

import basicsr.train
import pytest
import torch
import yaml
from basicsr.models.base_model import BaseModel
from basicsr.models.sr_model import SRModel
from basicsr.utils.registry import MODEL_REGISTRY

from srdistill.core.prepare import PrepareOptions, prepare_lmdbs
from srdistill_plugin.engine.train import Trainer, parse_train_options, train_pipeline

from .conftest import SET5

pytestmark = pytest.mark.slow
OWNERS = {'basicsr.train': basicsr.train, 'BaseModel': BaseModel, 'SRModel': SRModel, 'torch': torch,
          'torch.nn.Module': torch.nn.Module}
REPLACED_DURING_STEPS: list[list[str]] = []


def attributes() -> dict[str, dict]:
    return {name: dict(vars(owner)) for name, owner in OWNERS.items()}


BEFORE_TRAINING: dict[str, dict] = {}


def replaced() -> list[str]:
    """The attributes of BasicSR's train module, its models and torch that are no longer the objects they were just
    before the training started (new lazily-loaded ones do not count)."""
    now = attributes()
    return [f'{owner}.{key}' for owner, before in BEFORE_TRAINING.items() for key, value in before.items()
            if now[owner].get(key) is not value]


@MODEL_REGISTRY.register()
class StepWatchingSRModel(SRModel):
    """BasicSR's SRModel, noting before each training step which attributes were replaced."""

    def optimize_parameters(self, current_iter):
        REPLACED_DURING_STEPS.append(replaced())
        super().optimize_parameters(current_iter)


def tiny_edsr_options(lmdb, experiments_root, name: str) -> dict:
    return {
        'name': name, 'model_type': 'StepWatchingSRModel', 'scale': 4, 'num_gpu': 0, 'manual_seed': 3,
        'datasets': {
            'train': {'name': 'tiny', 'type': 'HROnlyDataset', 'dataroot_gt': str(lmdb), 'io_backend': {'type': 'lmdb'},
                      'gt_size': 32, 'use_hflip': True, 'use_rot': True, 'num_worker_per_gpu': 0,
                      'batch_size_per_gpu': 2, 'dataset_enlarge_ratio': 4, 'prefetch_mode': None},
            'val': {'name': 'Set5', 'type': 'PairedImageDataset', 'dataroot_gt': str(SET5 / 'HR'),
                    'dataroot_lq': str(SET5 / 'LR_bicubic' / 'X4'), 'filename_tmpl': '{}x4',
                    'io_backend': {'type': 'disk'}}},
        'network_g': {'type': 'EDSR', 'num_in_ch': 3, 'num_out_ch': 3, 'num_feat': 8, 'num_block': 1, 'upscale': 4},
        'path': {'experiments_root': str(experiments_root), 'pretrain_network_g': None, 'resume_state': None},
        'train': {'optim_g': {'type': 'Adam', 'lr': 1e-3}, 'scheduler': {'type': 'MultiStepLR', 'milestones': [100],
                                                                          'gamma': 0.5},
                  'total_iter': 8, 'pixel_opt': {'type': 'L1Loss', 'loss_weight': 1.0}},
        'val': {'val_freq': 4, 'save_img': False,
                'metrics': {'psnr': {'type': 'calculate_psnr', 'crop_border': 4, 'test_y_channel': True}}},
        'logger': {'print_freq': 4, 'save_checkpoint_freq': 4, 'use_tb_logger': False}}


@pytest.fixture()
def options_file(photo_dir, tmp_path):
    lmdb = prepare_lmdbs(photo_dir, tmp_path / 'data', PrepareOptions(scales=(4, )))['HR']

    def write(name: str):
        path = tmp_path / f'{name}.yml'
        path.write_text(yaml.safe_dump(tiny_edsr_options(lmdb, tmp_path / 'experiments', name)))
        return path
    return write


def test_training_replaces_nothing_of_basicsr_or_torch(options_file, tmp_path):
    REPLACED_DURING_STEPS.clear()
    BEFORE_TRAINING.update(attributes())
    train_pipeline(str(tmp_path), ['-opt', str(options_file('straight'))])
    assert len(REPLACED_DURING_STEPS) == 8 and all(step == [] for step in REPLACED_DURING_STEPS)
    assert replaced() == []
    assert (tmp_path / 'experiments' / 'straight' / 'models' / 'net_g_latest.pth').is_file()


def test_one_process_trains_validates_and_goes_on_as_one_straight_run(options_file, tmp_path):
    train_pipeline(str(tmp_path), ['-opt', str(options_file('straight'))])
    opt, args = parse_train_options(str(tmp_path), ['-opt', str(options_file('in_stretches'))])
    trainer = Trainer(opt, args.opt)
    trainer.train_to(3)
    between = trainer.validate()  # an evaluation between stretches changes nothing of the training
    trainer.train_to(8)
    trainer.finish()

    assert set(between) == {'Set5'} and 10 < between['Set5']['psnr'] < 40
    runs = tmp_path / 'experiments'
    record = json.loads((runs / 'in_stretches' / 'training.json').read_text())
    assert sorted(record['validation'], key=int) == ['3', '4', '8']
    assert record['validation']['3'] == between
    assert [(s['from'], s['to']) for s in record['stretches']] == [(0, 3), (3, 4), (4, 8)]  # checkpoints: 4, 8
    assert all(s['seconds'] > 0 and s['device'].startswith('cpu, 1 rank(s)') for s in record['stretches'])
    straight = json.loads((runs / 'straight' / 'training.json').read_text())
    assert [(s['from'], s['to']) for s in straight['stretches']] == [(0, 4), (4, 8)]  # one per checkpoint
    for run in (record, straight):  # BasicSR's learning rate and losses of every print_freq
        assert [(e['iter'], e['lr'], sorted(e['losses'])) for e in run['log']] == [(4, [1e-3], ['l_pix']),
                                                                                 (8, [1e-3], ['l_pix'])]
    assert straight['validation']['4'] == record['validation']['4']  # validated on its own every val_freq
    for name in ('net_g_4.pth', 'net_g_8.pth'):
        a, b = (torch.load(runs / run / 'models' / name)['params'] for run in ('straight', 'in_stretches'))
        assert all(torch.equal(a[k], b[k]) for k in a), name


USER_TRAIN_SCRIPT = '''\
# a user's own BasicSR project (HAT-style): BasicSR's pipeline, the plugin's registered types
from os import path as osp

import srdistill_plugin  # noqa: F401
from basicsr.train import train_pipeline

if __name__ == '__main__':
    train_pipeline(osp.abspath(osp.dirname(__file__)))
'''


def test_a_users_own_basicsr_train_script_trains_with_the_plugins_types(photo_dir, tmp_path):
    lmdb = prepare_lmdbs(photo_dir, tmp_path / 'data', PrepareOptions(scales=(4, )))['HR']
    opt = tiny_edsr_options(lmdb, tmp_path / 'experiments', 'users_own')
    opt['model_type'] = 'SRModel'
    (tmp_path / 'options.yml').write_text(yaml.safe_dump(opt))
    (tmp_path / 'train.py').write_text(USER_TRAIN_SCRIPT)
    proc = subprocess.run([sys.executable, 'train.py', '-opt', 'options.yml'], cwd=tmp_path, capture_output=True,
                          text=True, env={**os.environ, 'OMP_NUM_THREADS': '1'})
    assert proc.returncode == 0, proc.stderr[-3000:]
    models = tmp_path / 'experiments' / 'users_own' / 'models'
    assert {'net_g_4.pth', 'net_g_8.pth', 'net_g_latest.pth'} <= {p.name for p in models.iterdir()}
    assert 'Dataset [HROnlyDataset] - tiny is built.' in proc.stderr + proc.stdout
