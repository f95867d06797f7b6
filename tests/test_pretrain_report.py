"""The long pretraining's finish (``scripts/pretrain_report.py --finish``): the checkpoint chosen on the held-out
curve (the earliest of equal ones), saved as the meta-transfer's start, read on the test sets beside bicubic, the
resume state removed; refused before the run's last iteration."""
import json

import cv2
import torch

from srdistill.core.mzsr_net import MZSRNet

from .conftest import SET5, run_tool


def save_net(path, zero: bool) -> dict:
    torch.manual_seed(0)
    net = MZSRNet()
    if zero:  # a zero body: the network is its bicubic input, so it must score bicubic's PSNR
        for p in net.parameters():
            torch.nn.init.zeros_(p)
    params = net.state_dict()
    torch.save({'params': params}, path)
    return params


def fake_run(tmp_path, last_iter: int):
    experiment, study, sets = tmp_path / 'exp', tmp_path / 'study', tmp_path / 'Set2'
    for folder in (experiment / 'models', experiment / 'training_states', study / 'resume', sets):
        folder.mkdir(parents=True)
    for it, zero in ((1000, False), (2000, True), (3000, False)):
        save_net(experiment / 'models' / f'net_g_{it}.pth', zero)
    save_net(tmp_path / 'official.pth', True)
    (experiment / 'training_states' / f'{last_iter}.state').write_bytes(b'state')
    record = {'validation': {str(it): {'heldout': {'psnr': v}} for it, v in ((1000, 30.0), (2000, 31.5), (3000, 31.5))},
              'stretches': [{'from': 0, 'to': last_iter, 'seconds': last_iter * 3.6,
                             'device': 'cpu, 1 rank(s), 1 thread(s) each'}],
              'log': [{'iter': last_iter, 'lr': [1e-6], 'losses': {'l_pix': 0.01}}]}
    (study / 'resume' / 'training.json').write_text(json.dumps(record))
    (study / 'resume' / 'train_run_1.log').write_text('log\n')
    (study / 'resume' / f'{last_iter}.state').write_bytes(b'state')
    (experiment / 'training.json').write_text(json.dumps(record))
    for name in ('img_001.png', 'img_002.png'):
        cv2.imwrite(str(sets / name), cv2.imread(str(SET5 / 'HR' / name))[100:148, 100:160])
    return experiment, study, sets


def test_finish_chooses_the_earliest_best_checkpoint_reads_the_sets_and_removes_the_resume_state(tmp_path):
    experiment, study, sets = fake_run(tmp_path, 20000)
    run_tool('scripts/pretrain_report.py', '--finish', '--experiment', str(experiment), '--study', str(study),
             '--sets', str(sets), '--official', str(tmp_path / 'official.pth'))
    final = json.loads((study / 'final.json').read_text())
    assert (final['chosen_iter'], final['heldout_psnr']) == (2000, 31.5)
    row = final['sets']['Set2']
    assert 20 < row['bicubic'] < 60 and abs(row['chosen'] - row['bicubic']) < 1e-6
    assert abs(row['official'] - row['bicubic']) < 1e-6
    start = torch.load(study / 'mzsr_pretrained_x2.pth')['params']
    assert all(not v.any() for v in start.values())
    assert sorted(p.name for p in study.iterdir()) == ['README.md', 'final.json', 'mzsr_pretrained_x2.pth', 'record']
    assert sorted(p.name for p in (study / 'record').iterdir()) == ['train_run_1.log', 'training.json']
    readme = (study / 'README.md').read_text()
    assert readme.startswith('# MZSR x2 pretraining at CPU length\n') and 'Iteration 2,000: the best held-out' in readme
    assert f'| Set2 | {row["bicubic"]:.2f} | {row["chosen"]:.2f} | {row["official"]:.2f} | – | – |' in readme
    assert '| 2,000 | 2.00 | 31.50 |' in readme  # 3.6 s an iteration: 2,000 iterations in 2 hours


def test_finish_before_the_last_iteration_is_refused_in_one_line(tmp_path):
    experiment, study, sets = fake_run(tmp_path, 15000)
    proc = run_tool('scripts/pretrain_report.py', '--finish', '--experiment', str(experiment), '--study', str(study),
                    '--sets', str(sets), '--official', str(tmp_path / 'official.pth'), check=False)
    assert proc.returncode == 2 and proc.stderr.strip().splitlines()[-1] == (
        f'error: {experiment}: the run stands at iteration 15,000 of 20,000; finish it first')
    assert (study / 'resume' / '15000.state').is_file() and not (study / 'final.json').exists()
