"""``scripts/ship_mzsr_zoo.py``: an experiment's rule-chosen checkpoints become the zoo's weights, with their
record; an arm the rule has not chosen for is refused in one line and nothing is written."""
import json

import torch
import yaml

from srdistill.core.mzsr_net import MZSRNet
from srdistill.zero_shot.zoo import POOL_TERMS

from .conftest import ROOT, SET5, run_tool


def fake_experiment(tmp_path, networks: dict) -> tuple:
    for folder in ('photos', 'pool', 'weights', 'study/record', 'experiments/long/models'):
        (tmp_path / folder).mkdir(parents=True)
    torch.manual_seed(1)
    torch.save({'params': MZSRNet().state_dict()}, tmp_path / 'experiments/long/models/net_g_300.pth')
    torch.save({'params': MZSRNet().state_dict()}, tmp_path / 'start.pth')
    (tmp_path / 'experiments/long/networks.json').write_text(json.dumps(networks))
    (tmp_path / 'study/final.json').write_text(json.dumps({'chosen_iter': 19000, 'heldout_psnr': 32.4912}))
    (tmp_path / 'study/record/training.json').write_text(json.dumps(
        {'validation': {}, 'log': [], 'stretches': [{'from': 0, 'to': 20000, 'seconds': 36000.0}]}))
    (tmp_path / 'weights/zoo.json').write_text(json.dumps({'directx4': {'file': 'mzsr_directx4.pth'}}))
    opt = {'name': 'long', 'kind': 'zero_shot', 'scale': 2, 'sets': [str(SET5)], 'threads': 1,
           'kernels': {'gd2.0': 'direct', 'gb1.3': 'bicubic'}, 'start': {'weights': 'start.pth'}, 'pool': 'pool',
           'checkpoint_rule': {'photos': 'photos', 'every': 100, 'steps': 1, 'crop': 256},
           'arms': {'direct': {'options': str(ROOT / 'options/mzsr_meta_x2_official_start.yml'), 'total_iter': 1600,
                               'overrides': ['datasets:train:gt_size=32'], 'schedule': 'task_lr'},
                    'bicubic': {'options': str(ROOT / 'options/mzsr_meta_bicubic_x2_official_start.yml'),
                                'total_iter': 600, 'schedule': 'bicubic_x2'}}}
    (tmp_path / 'long.yml').write_text(yaml.safe_dump(opt))
    return ('scripts/ship_mzsr_zoo.py', '-opt', 'long.yml', '--weights', 'weights', '--pretrain-study', 'study')


def test_the_rule_chosen_checkpoint_ships_with_its_record(tmp_path, monkeypatch):
    chosen = {'chosen': 300, 'iteration': 300, 'path': 'experiments/long/models/net_g_300.pth', 'seconds': 7200.0,
              'device': 'cpu, 1 rank(s), 1 thread(s) each', 'choice_photos': ['a', 'b', 'c']}
    args = fake_experiment(tmp_path, {'direct': chosen})
    run_tool(str(ROOT / args[0]), *args[1:], '--arms', 'direct=directx2', cwd=tmp_path)
    shipped = torch.load(tmp_path / 'weights/mzsr_directx2.pth')
    source = torch.load(tmp_path / 'experiments/long/models/net_g_300.pth')['params']
    assert list(shipped) == ['params'] and all(torch.equal(shipped['params'][k], v) for k, v in source.items())
    zoo = json.loads((tmp_path / 'weights/zoo.json').read_text())
    assert zoo['directx4'] == {'file': 'mzsr_directx4.pth'}  # a model not named keeps its record
    record = zoo['directx2']
    assert record['start'] == {'options': 'options/mzsr_pretrain_x2_long.yml', 'chosen_iter': 19000,
                               'heldout_psnr': 32.4912, 'hours': 10.0, 'results': 'study/README.md'}
    meta = record['meta_transfer']
    assert (meta['chosen_iter'], meta['trained_iters'], meta['hours']) == (300, 1600, 2.0)
    assert meta['test_schedule'] == 'task_lr'
    assert (meta['inner_lr'], meta['inner_steps'], meta['overrides']) == (0.01, 5, ['datasets:train:gt_size=32'])
    assert meta['rule'] == ('best mean MZSR(1) PSNR on centre 256² crops of 3 held-out photographs (gd2.0), '
                            'every 100 iterations')
    assert record['terms'] == POOL_TERMS and record['scale'] == 2 and record['downsample'] == 'direct'
    from srdistill.zero_shot import zoo  # the command adapts the shipped model with the step sizes it was chosen with

    monkeypatch.setattr(zoo, 'WEIGHTS', tmp_path / 'weights')
    assert zoo.zoo_model('directx2')[1].schedule == 'task_lr' and zoo.ZOO['directx2'].schedule == 'direct_x2'


def test_an_arm_without_a_rule_choice_is_refused_before_anything_is_written(tmp_path):
    args = fake_experiment(tmp_path, {'bicubic': {'iteration': 600, 'path': 'experiments/long/models/net_g_300.pth'}})
    proc = run_tool(str(ROOT / args[0]), *args[1:], '--arms', 'bicubic=bicubicx2', cwd=tmp_path, check=False)
    assert proc.returncode == 2 and proc.stderr.strip().splitlines()[-1] == (
        f'error: {tmp_path / "experiments/long/networks.json"}: arm bicubic has no checkpoint chosen by the '
        'checkpoint rule (srdistill-experiment -opt long.yml chooses it)')
    assert sorted(p.name for p in (tmp_path / 'weights').iterdir()) == ['zoo.json']
