"""Real BasicSR train/test pipelines through tools/train.py and tools/test.py on a tiny LMDB (CPU)."""
import json
import os
import re

import pytest
import yaml

from srdistill.core.lmdb_io import read_meta_keys
from srdistill.core.prepare import PrepareOptions, prepare_lmdbs

from .conftest import ROOT, SET5, run_tool

pytestmark = pytest.mark.slow


def tiny_swinir_options(lmdb, experiments_root, total_iter):
    opt = yaml.safe_load((ROOT / 'options/train/train_swinir_x4_demo.yml').read_text())
    opt['name'] = 'pytest_swinir_x4'
    opt['datasets']['train'].update(dataroot_gt=str(lmdb), gt_size=32, batch_size_per_gpu=4, dataset_enlarge_ratio=50,
                                    sampler={'type': 'ClassBalancedSampler', 'seed': 1})
    opt['datasets'].pop('val')
    opt.pop('val')
    opt['network_g'].update(embed_dim=12, num_heads=[2, 2], depths=[1, 1], img_size=8)
    opt['train'].update(total_iter=total_iter, ema_decay=0)
    opt['train']['optim_g']['lr'] = 2e-3
    opt['path']['experiments_root'] = str(experiments_root)
    opt['logger'].update(print_freq=5, save_checkpoint_freq=10, use_tb_logger=False)
    return opt


def losses(log: str) -> dict[int, float]:
    return {int(i.replace(',', '')): float(v) for i, v in re.findall(r'iter:\s+([\d,]+).*l_pix: ([\d.e+-]+)', log)}


def test_train_lowers_loss_then_resumes_with_class_balanced_sampler(photo_dir, tmp_path):
    lmdb = prepare_lmdbs(photo_dir, tmp_path, PrepareOptions(scales=(4, )))['HR']
    (lmdb / 'class_info.txt').write_text(''.join(f'{k} {i % 3}\n' for i, k in enumerate(read_meta_keys(lmdb))))
    opt_file = tmp_path / 'train.yml'
    opt_file.write_text(yaml.safe_dump(tiny_swinir_options(lmdb, tmp_path / 'exp', 20)))

    first = run_tool('tools/train.py', '-opt', str(opt_file))
    loss = losses(first.stdout + first.stderr)
    assert sorted(loss) == [5, 10, 15, 20] and loss[20] < 0.8 * loss[5], loss

    second = run_tool('tools/train.py', '-opt', str(opt_file), '--auto_resume', '--force_yml', 'train:total_iter=30')
    log = second.stdout + second.stderr
    assert 'Resuming training from epoch: 0, iter: 20.' in log
    assert sorted(losses(log)) == [25, 30]
    models = tmp_path / 'exp' / 'pytest_swinir_x4' / 'models'
    assert {p.name for p in models.iterdir()} >= {'net_g_20.pth', 'net_g_30.pth', 'net_g_latest.pth'}


def test_test_pipeline_reports_bicubic_psnr_on_set5(tmp_path):
    opt = yaml.safe_load((ROOT / 'options/test/test_bicubic_x4.yml').read_text())
    opt['path']['results_root'] = str(tmp_path)
    opt['datasets']['test_1'].update(dataroot_gt=str(SET5 / 'HR'), dataroot_lq=str(SET5 / 'LR_bicubic' / 'X4'))
    (tmp_path / 'test.yml').write_text(yaml.safe_dump(opt))
    run_tool('tools/test.py', '-opt', str(tmp_path / 'test.yml'))
    metrics = json.loads((tmp_path / 'test_bicubic_x4' / 'metrics.json').read_text())['results']['Set5']
    assert metrics['psnr'] == pytest.approx(28.43, abs=0.02)  # the published bicubic x4 Set5 figure
    assert metrics['ssim'] == pytest.approx(0.811, abs=0.002)


def test_bad_resume_path_is_one_line(tmp_path):
    opt = tiny_swinir_options(tmp_path / 'none.lmdb', tmp_path / 'exp', 5)
    opt['path']['resume_state'] = str(tmp_path / 'broken.state')
    (tmp_path / 'broken.state').write_bytes(b'not a checkpoint')
    (tmp_path / 'train.yml').write_text(yaml.safe_dump(opt))
    proc = run_tool('tools/train.py', '-opt', str(tmp_path / 'train.yml'), check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith(f'error: option path.resume_state: cannot read {tmp_path}')


def test_manual_seed_given_by_force_yml_is_the_one_used(photo_dir, tmp_path):
    import torch
    lmdb = prepare_lmdbs(photo_dir, tmp_path, PrepareOptions(scales=(4, )))['HR']
    opt = tiny_swinir_options(lmdb, tmp_path / 'exp', 2)
    opt['datasets']['train']['sampler'] = {'type': 'EnlargedSampler'}
    (tmp_path / 'train.yml').write_text(yaml.safe_dump(opt))
    weights = {}
    for name, seed in (('a', 0), ('b', 0), ('c', 1)):
        run_tool('tools/train.py', '-opt', str(tmp_path / 'train.yml'), '--force_yml', f'name={name}',
                 f'manual_seed={seed}')
        weights[name] = torch.load(tmp_path / 'exp' / name / 'models' / 'net_g_latest.pth')['params']
    first = next(iter(weights['a']))
    assert torch.equal(weights['a'][first], weights['b'][first])  # same seed, same network
    assert not torch.equal(weights['a'][first], weights['c'][first])  # BasicSR alone would train seed 0 again


def pretrain_options_with(train: dict) -> dict:
    """The CPU pretraining options with ``train`` merged into its ``train`` section (one level deep)."""
    opt = yaml.safe_load((ROOT / 'options' / 'mzsr_pretrain_x2_cpu.yml').read_text())
    for key, value in train.items():
        opt['train'][key] = {**opt['train'].get(key, {}), **value} if isinstance(value, dict) else value
    return opt


@pytest.mark.parametrize('train, message', [
    ({'optim_g': {'lr': '1e-5'}},
     "option train.optim_g.lr: expected a number > 0, got '1e-5' (YAML and --force_yml read 1e-4 as text: write "
     "!!float 1e-4 or 0.0001)"),
    ({'total_iter': '1e5'}, "option train.total_iter: expected an integer >= 1, got '1e5'"),
    ({'optim_g': {'weight_decay': True}}, 'option train.optim_g.weight_decay: expected a number >= 0, got True'),
    ({'resume_lr': 'opt'}, "option train.resume_lr: expected one of ['state', 'options'], got 'opt'"),
])
def test_numbers_read_as_text_and_bad_choices_are_named_at_start(train, message):
    from srdistill.core.errors import SRDistillError
    from srdistill_plugin.engine.train import check_train_options

    check_train_options(pretrain_options_with({}))
    with pytest.raises(SRDistillError) as info:
        check_train_options(pretrain_options_with(train))
    assert str(info.value) == message


def resumable_model(lr: float, resume_lr: str):
    """A stand-in for a BasicSR model: one Adam optimizer and BasicSR's MultiStepRestartLR, with its options."""
    from types import SimpleNamespace

    import torch
    from basicsr.models.base_model import BaseModel
    from basicsr.models.lr_scheduler import MultiStepRestartLR

    optimizer = torch.optim.Adam([torch.nn.Parameter(torch.zeros(2))], lr=lr)
    model = SimpleNamespace(optimizers=[optimizer], schedulers=[MultiStepRestartLR(optimizer, [1000], gamma=0.5)])
    model.opt = {'train': {'optim_g': {'type': 'Adam', 'lr': lr}, 'resume_lr': resume_lr}}
    model.resume_training = lambda state: BaseModel.resume_training(model, state)
    return model


@pytest.mark.parametrize('resume_lr, expected', [('state', 1e-4), ('options', 2.5e-5)])
def test_resume_lr_options_sets_the_options_learning_rate(resume_lr, expected):
    from srdistill_plugin.engine.resume import resume_training

    saved = resumable_model(1e-4, 'state')
    state = {'optimizers': [o.state_dict() for o in saved.optimizers],
             'schedulers': [s.state_dict() for s in saved.schedulers]}
    model = resumable_model(2.5e-5, resume_lr)
    resume_training(model, state)
    model.schedulers[0].step()
    assert model.optimizers[0].param_groups[0]['lr'] == pytest.approx(expected)
    assert model.schedulers[0].base_lrs == [pytest.approx(expected)]


def tiny_mzsr_pretrain_options(lmdb, experiments_root):
    opt = yaml.safe_load((ROOT / 'options/mzsr_pretrain_x2_long.yml').read_text())
    opt['datasets']['train'].update(dataroot_gt=str(lmdb), gt_size=32, batch_size_per_gpu=2)
    opt['datasets'].pop('val')
    opt.pop('val')
    opt['network_g'].update(num_feat=8, num_layers=3)
    opt['train'].update(total_iter=2, warmup_iter=-1)
    opt['train']['scheduler']['periods'] = [6]
    opt['path']['experiments_root'] = str(experiments_root)
    opt['logger'].update(print_freq=1, save_checkpoint_freq=2, use_tb_logger=False)
    return opt


def test_resume_state_travels_and_refuses_another_network_or_scale(photo_dir, tmp_path):
    lmdb = prepare_lmdbs(photo_dir, tmp_path, PrepareOptions(scales=()))['HR']
    (tmp_path / 'pre.yml').write_text(yaml.safe_dump(tiny_mzsr_pretrain_options(lmdb, tmp_path / 'exp')))
    run_tool('tools/train.py', '-opt', str(tmp_path / 'pre.yml'))
    store = tmp_path / 'store'
    name = 'MZSR_pretrain_x2_long'
    saved = run_tool('scripts/resume_state.py', 'save', '--name', name, '--to', str(store),
                     '--experiments-root', str(tmp_path / 'exp'))
    assert f'saved iteration 2 to {store}' in saved.stdout
    assert {p.name for p in store.iterdir() if not p.name.startswith('train_')} == {'2.state', 'net_g_2.pth',
                                                                                   'network.json', 'training.json'}
    restored = run_tool('scripts/resume_state.py', 'restore', '--name', name, '--to', str(store),
                        '--experiments-root', str(tmp_path / 'moved'))  # another machine's fresh checkout
    assert 'restored iteration 2' in restored.stdout
    moved = yaml.safe_load((tmp_path / 'pre.yml').read_text())
    moved['path']['experiments_root'] = str(tmp_path / 'moved')
    (tmp_path / 'moved.yml').write_text(yaml.safe_dump(moved))
    more = run_tool('tools/train.py', '-opt', str(tmp_path / 'moved.yml'), '--auto_resume', '--force_yml',
                    'train:total_iter=4')
    assert 'Resuming training from epoch: 0, iter: 2.' in more.stdout + more.stderr
    record = json.loads((tmp_path / 'moved' / name / 'training.json').read_text())  # the record travelled along
    assert [(s['from'], s['to']) for s in record['stretches']] == [(0, 2), (2, 4)]
    for change, key in [('network_g:num_feat=16', 'network_g'), ('scale=4', 'scale')]:
        proc = run_tool('tools/train.py', '-opt', str(tmp_path / 'moved.yml'), '--auto_resume', '--force_yml',
                        'train:total_iter=6', change, check=False)
        assert proc.returncode == 2, proc.stderr[-2000:]
        line = proc.stderr.strip().splitlines()[-1]
        assert line.startswith(f'error: option path.resume_state: {tmp_path / "moved" / name / "training_states"}')
        assert f'was written for {key} ' in line
    proc = run_tool('tools/train.py', '-opt', str(tmp_path / 'moved.yml'), '--force_yml', 'train:total_iter=8',
                    check=False)
    assert proc.returncode == 2 and proc.stderr.strip().splitlines()[-1] == (
        "error: option train.scheduler.periods: [6] end at iteration 6, before train.total_iter 8 (BasicSR's cosine "
        "schedule stops there)")


def test_a_missing_input_names_the_command_that_makes_it_and_a_failed_start_leaves_no_folder(tmp_path):
    opt = yaml.safe_load((ROOT / 'options/swinir_distilled_x4.yml').read_text())
    opt['datasets']['train']['dataroot_gt'] = str(tmp_path / 'distilled_x4' / 'HR.lmdb')
    opt['path']['experiments_root'] = str(tmp_path / 'exp')
    (tmp_path / 'train.yml').write_text(yaml.safe_dump(opt))
    old = tmp_path / 'exp' / opt['name']
    (old / 'models').mkdir(parents=True)
    (old / 'models' / 'notes.txt').write_text('an earlier run')
    proc = run_tool('tools/train.py', '-opt', str(tmp_path / 'train.yml'), check=False)
    assert proc.returncode == 2 and proc.stderr.strip().splitlines()[-1] == (
        f'error: {tmp_path / "distilled_x4" / "HR.lmdb"}: not a finished BasicSR LMDB (no meta_info.txt) '
        '(made by: python tools/distill.py -opt options/distill_x4.yml)')
    assert [p.name for p in (tmp_path / 'exp').iterdir()] == [opt['name']]  # the earlier folder, not an archive
    assert (old / 'models' / 'notes.txt').read_text() == 'an earlier run'
    (old / 'models' / 'notes.txt').unlink()
    (old / 'models').rmdir()
    old.rmdir()
    assert run_tool('tools/train.py', '-opt', str(tmp_path / 'train.yml'), check=False).returncode == 2
    assert not list((tmp_path / "exp").rglob("*")), list((tmp_path / "exp").rglob("*"))  # nothing made or left


def test_a_failed_start_gives_back_the_archived_folder_whatever_the_filesystems_clock(tmp_path):
    from basicsr.utils import mkdir_and_rename

    from srdistill_plugin.engine.train import note_run_folders, remove_unused_run_folders
    opt = {'name': 'run', 'root_path': str(tmp_path), 'path': {'experiments_root': str(tmp_path / 'exp' / 'run')}}
    old = tmp_path / 'exp' / 'run'
    (old / 'models').mkdir(parents=True)
    (old / 'models' / 'notes.txt').write_text('an earlier run')
    (tmp_path / 'exp' / 'run_archived_20200101_000000').mkdir()  # an archive from long ago stays one
    before = note_run_folders(opt)
    mkdir_and_rename(str(old))  # BasicSR's start: the earlier folder archived, a new one made
    (old / 'models').mkdir()
    os.utime(old, (0, 0))  # a network filesystem's clock, behind this machine's
    remove_unused_run_folders(opt, before)
    assert sorted(p.name for p in (tmp_path / 'exp').iterdir()) == ['run', 'run_archived_20200101_000000']
    assert (old / 'models' / 'notes.txt').read_text() == 'an earlier run'
    remove_unused_run_folders(opt, note_run_folders(opt))  # a failed resume: its folder was there, not archived
    assert (old / 'models' / 'notes.txt').is_file()


@pytest.mark.parametrize('path, message', [
    ({'pretrain_netwrk_g': 'x.pth'}, "option path.pretrain_netwrk_g: unknown (did you mean 'pretrain_network_g'?)"),
    ({}, 'option path.pretrain_network_g: not given; SwinIR has parameters, and a test of its random initialisation is '
         'refused'),
    ({'pretrain_network_g': 'none/net_g.pth', 'weights_made_by': 'python tools/train.py -opt T.yml'},
     'option path.pretrain_network_g: none/net_g.pth does not exist (made by: python tools/train.py -opt T.yml)')])
def test_a_test_without_trained_weights_is_refused_before_any_output(tmp_path, path, message):
    opt = yaml.safe_load((ROOT / 'options/test/test_swinir_x4_distilled.yml').read_text())
    opt['path'] = {**path, 'results_root': str(tmp_path / 'results')}
    (tmp_path / 'test.yml').write_text(yaml.safe_dump(opt))
    proc = run_tool('tools/test.py', '-opt', str(tmp_path / 'test.yml'), check=False)
    assert proc.returncode == 2 and proc.stderr.strip().splitlines()[-1] == f'error: {message}'
    assert not (tmp_path / 'results').exists()


@pytest.mark.parametrize('tool, text, args, message', [
    ('tools/train.py', 'name: x\ntrain:\n  total_iter: [1\n', [], 'train.yml:4:1: YAML syntax error'),
    ('tools/test.py', 'name: x\n  bad indent: 1\n', [], 'train.yml:2:13: YAML syntax error'),
    ('tools/distill.py', '- a\n- b\n', [], 'train.yml: not a YAML mapping of options'),
    ('tools/train.py', 'name: x\ntrain: {total_iter: 1}\n', ['--force_yml', 'train:total_iter'],
     '--force_yml train:total_iter: expected key:subkey=value'),
    ('tools/train.py', 'name: x\ntrain: {total_iter: 1}\n', ['--force_yml', 'trian:total_iter=5'],
     "--force_yml trian:total_iter=5: no section 'trian' in the options (there: name, train)")])
def test_bad_options_files_are_one_line_naming_file_and_line(tmp_path, tool, text, args, message):
    (tmp_path / 'train.yml').write_text(text)
    proc = run_tool(tool, '-opt', str(tmp_path / 'train.yml'), *args, check=False)
    assert proc.returncode == 2, proc.stderr[-2000:]
    line = proc.stderr.strip().splitlines()[-1]
    assert line.startswith('error: ') and message in line, line


def test_force_yml_entries_end_at_the_next_flag():
    from srdistill.cli import check_options_file

    path = ROOT / 'options' / 'mzsr_pretrain_x2_cpu.yml'
    check_options_file(['-opt', str(path), '--force_yml', 'train:total_iter=6', '--launcher', 'pytorch'])
    check_options_file(['-opt', str(path), '--auto_resume', '--force_yml', 'name=x', 'train:total_iter=6'])


def test_the_kernel_estimator_trains_through_basicsr_and_its_checkpoint_is_the_validation_argmin(photo_dir, tmp_path):
    """options/kernel_predictor_x2.yml on the tiny photographs: validation records the covariance errors, and the
    shipped checkpoint is the iteration with the lowest one among those saved (the earliest on ties)."""
    from srdistill_plugin.zero_shot.estimator_choice import best_checkpoint

    opt = yaml.safe_load((ROOT / 'options' / 'kernel_predictor_x2.yml').read_text())
    opt['datasets']['train'].update(dataroot_gt=str(photo_dir), lq_size=16, batch_size_per_gpu=2)
    opt['datasets']['val'].update(dataroot_gt=str(photo_dir), lq_size=24, kernels_per_image=1)
    opt['network_g'].update(num_feat=8, dilations=[1, 2])
    opt['train'].update(total_iter=6, warmup_iter=-1)
    opt['train']['scheduler']['periods'] = [6]
    opt['val']['val_freq'] = 2
    opt['logger'].update(print_freq=2, save_checkpoint_freq=2, use_tb_logger=False)
    opt['path']['experiments_root'] = str(tmp_path / 'exp')
    (tmp_path / 'train.yml').write_text(yaml.safe_dump(opt))
    run_tool('tools/train.py', '-opt', str(tmp_path / 'train.yml'))
    experiment = tmp_path / 'exp' / 'kernel_predictor_x2'
    chosen, curve = best_checkpoint(experiment)
    assert sorted(curve) == [2, 4, 6] and set(curve[2]) == {'cov_error', 'default_cov_error', 'closer_than_default',
                                                           'log_euclidean'}
    errors = {it: m['cov_error'] for it, m in curve.items()}
    assert chosen == min(errors, key=lambda it: (errors[it], it))
    assert all(m['default_cov_error'] == curve[2]['default_cov_error'] for m in curve.values())  # the same pairs
    record = json.loads((experiment / 'training.json').read_text())
    (experiment / 'training.json').write_text(json.dumps({**record, 'validation': {
        '2': {'v': {'cov_error': 0.5}}, '4': {'v': {'cov_error': 0.3}}, '6': {'v': {'cov_error': 0.3}}}}))
    assert best_checkpoint(experiment)[0] == 4  # a tie: the earlier
    (experiment / 'models' / 'net_g_4.pth').unlink()
    assert best_checkpoint(experiment)[0] == 6  # only saved checkpoints can be chosen
