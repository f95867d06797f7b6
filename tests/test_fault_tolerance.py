"""Faults survived at every stage, through the real commands in their own processes.

A kill -9 (injected by tests/helpers/fault_site at a chosen call: an LMDB put, the rename that publishes a manifest,
the middle of a checkpoint write) and a rerun end with the same artefacts as an uninterrupted run (bit-identical
where the stage is deterministic; training continues from the last complete state), and nothing partial ever
stands under a final name. A full disk, a read-only folder, a truncated checkpoint and a broken LMDB end as one
line naming the file, exit status 2, nothing overwritten.
"""
import errno
import json
import subprocess
from pathlib import Path

import lmdb
import pytest
import torch
import yaml

from srdistill.core.prepare import PrepareOptions, prepare_lmdbs
from srdistill_plugin.distill.runner import DistillRun

from .conftest import ROOT, SET5
from .helpers.warm_python import run_python
from .test_distillation import tiny_options
from .test_mzsr import _mzsr_options

pytestmark = pytest.mark.slow


def command(module: str, *args, cwd: Path, fault: str | None = None) -> subprocess.CompletedProcess:
    """``python -m srdistill_plugin.commands.<module> args`` with an optional injected fault (a process forked from
    a warm interpreter: ``tests/helpers/warm_python.py``)."""
    return run_python(['-m', f'srdistill_plugin.commands.{module}', *map(str, args)], cwd, fault)


def ok(proc: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert proc.returncode == 0, f'exit {proc.returncode}:\n{proc.stdout[-1500:]}\n{proc.stderr[-3000:]}'
    return proc


def killed(proc: subprocess.CompletedProcess) -> None:
    """The command died by the injected SIGKILL (itself, or the training process a stage started)."""
    assert proc.returncode == -9 or 'SIGKILL' in proc.stderr, f'exit {proc.returncode}:\n{proc.stderr[-2000:]}'


def one_line_error(proc: subprocess.CompletedProcess, *fragments: str) -> str:
    line = proc.stderr.strip().splitlines()[-1]
    assert proc.returncode == 2, f'exit {proc.returncode}:\n{proc.stderr[-3000:]}'
    assert line.startswith('error: ') and all(f in line for f in fragments), line
    return line


def lmdb_entries(path: Path) -> dict:
    env = lmdb.open(str(path), readonly=True, lock=False)
    with env.begin() as txn:
        entries = dict(txn.cursor())
    env.close()
    return {'entries': entries, 'meta': (path / 'meta_info.txt').read_text()}


def final_lmdbs(folder: Path) -> dict:
    return {p.name: lmdb_entries(p) for p in sorted(folder.rglob('*.lmdb')) if not p.name.endswith('.incomplete.lmdb')}


def all_checkpoints_load(folder: Path) -> list[str]:
    """Every .pth / .state under its final name loads (no truncated file stands under a final name; a write that was
    killed leaves only its partial ``<stem>.incomplete<suffix>`` or its checkpoint's ``checkpoint.incomplete/``)."""
    names = []
    for path in sorted(folder.rglob('*')):
        partial = any(part.endswith('.incomplete') for part in path.relative_to(folder).with_suffix('').parts)
        if path.suffix in ('.pth', '.state') and not partial:
            torch.load(path, map_location='cpu', weights_only=False)
            names.append(path.name)
    return names


# --- prepare -----------------------------------------------------------------------------------------------------
def test_prepare_killed_while_writing_the_lmdb_reruns_to_the_same_lmdbs(photo_dir, tmp_path):
    args = ('--input', photo_dir, '--crop-size', '64', '--step', '64', '--scales', '2', '4')
    ok(command('prepare', '--output', 'reference', *args, cwd=tmp_path))
    killed(command('prepare', '--output', 'out', *args, cwd=tmp_path, fault='kill:lmdb.put:7:'))
    assert not (tmp_path / 'out' / 'HR.lmdb').exists() and (tmp_path / 'out' / 'HR.incomplete.lmdb').exists()
    ok(command('prepare', '--output', 'out', *args, cwd=tmp_path))
    assert not list((tmp_path / 'out').glob('*.incomplete.lmdb'))
    assert final_lmdbs(tmp_path / 'out') == final_lmdbs(tmp_path / 'reference') and final_lmdbs(tmp_path / 'out')


# --- distillation (the deterministic real-patch path) ---------------------------------------------------------------
@pytest.fixture(scope='module')
def reference_distillation(photo_dir, tmp_path_factory):
    """The uninterrupted run the killed ones are compared with (in this process: the command runs in each test)."""
    folder = tmp_path_factory.mktemp('reference')
    opt = tiny_options(photo_dir, 'distilled', mode='selected_real')
    (folder / 'distill.yml').write_text(yaml.safe_dump(opt))
    DistillRun(opt, root=folder).run()
    return folder


def stage_results(folder: Path) -> dict:
    stages = folder / 'experiments' / 'pytest_distill' / 'stages'
    manifests = {p.name: {k: v for k, v in json.loads(p.read_text()).items() if k != 'seconds'}
                 for p in sorted(stages.glob('*.json'))}
    return {'manifests': manifests, 'lmdb': lmdb_entries(folder / 'distilled' / 'HR.lmdb')}


@pytest.mark.parametrize('fault', ['kill:replace:1:select.json', 'kill:replace:1:categorize.json',
                                   'kill:replace:1:finetune.json', 'kill:lmdb.put:3:'])
def test_distillation_killed_at_any_stage_reruns_to_identical_results(reference_distillation, photo_dir, tmp_path,
                                                                      fault):
    (tmp_path / 'distill.yml').write_text((reference_distillation / 'distill.yml').read_text())
    killed(command('distill', '-opt', 'distill.yml', cwd=tmp_path, fault=fault))
    stages = tmp_path / 'experiments' / 'pytest_distill' / 'stages'
    target = fault.split(':')[3]
    if target:  # killed just before publishing the manifest: the stage is not marked done
        assert not (stages / target).exists()
    assert not (tmp_path / 'distilled' / 'HR.lmdb').exists()
    ok(command('distill', '-opt', 'distill.yml', cwd=tmp_path))
    ref = stage_results(reference_distillation)
    got = stage_results(tmp_path)
    for name in ref['manifests']:  # paths differ by folder only
        for result in (ref, got):
            result['manifests'][name] = json.loads(json.dumps(result['manifests'][name]).replace(
                str(reference_distillation), '<root>').replace(str(tmp_path), '<root>'))
    assert got == ref


def test_finetune_killed_while_writing_a_checkpoint_resumes_from_the_last_complete_state(photo_dir, tmp_path):
    opt = tiny_options(photo_dir, 'distilled')
    opt['finetune']['train']['total_iter'] = 6
    (tmp_path / 'distill.yml').write_text(yaml.safe_dump(opt))
    killed(command('distill', '-opt', 'distill.yml', cwd=tmp_path, fault='kill:torch.save:2:.state'))
    run_dir = tmp_path / 'experiments' / 'pytest_distill' / 'pytest_distill_finetune'
    assert all_checkpoints_load(run_dir) == ['net_g_2.pth', '2.state']  # a checkpoint is whole: no net_g_4 alone  # 4.state: half-written, not under its name
    assert not (tmp_path / 'experiments' / 'pytest_distill' / 'stages' / 'finetune.json').exists()
    ok(command('distill', '-opt', 'distill.yml', cwd=tmp_path))
    log = ''.join(p.read_text() for p in run_dir.glob('*.log'))
    assert 'Resuming training from epoch: ' in log and 'iter: 2.' in log
    assert 'net_g_6.pth' in all_checkpoints_load(run_dir) and (tmp_path / 'distilled' / 'HR.lmdb').is_dir()


# --- SR training and MZSR meta-training ---------------------------------------------------------------------------
def tiny_sr_options(tmp_path: Path, lmdb: str) -> Path:
    opt = yaml.safe_load((ROOT / 'options/swinir_distilled_x4.yml').read_text())
    opt.update(name='fault_edsr', model_type='SRModel',
               network_g={'type': 'EDSR', 'num_in_ch': 3, 'num_out_ch': 3, 'num_feat': 8, 'num_block': 1, 'upscale': 4})
    opt['datasets'] = {'train': {**opt['datasets']['train'], 'dataroot_gt': lmdb, 'gt_size': 32, 'batch_size_per_gpu': 2,
                                 'sampler': {'type': 'EnlargedSampler'}}}
    opt.pop('val')
    opt['train']['total_iter'] = 6
    opt['logger'].update(print_freq=2, save_checkpoint_freq=2, use_tb_logger=False)
    path = tmp_path / 'train.yml'
    path.write_text(yaml.safe_dump(opt))
    return path


@pytest.fixture()
def sr_project(photo_dir, tmp_path):
    """The LMDB ``srdistill-prepare --scales 4`` writes (its command is killed above), and training options on it."""
    prepare_lmdbs(photo_dir, tmp_path / 'data', PrepareOptions(scales=(4, )))
    return tiny_sr_options(tmp_path, 'data/HR.lmdb')


def test_sr_training_killed_while_writing_a_checkpoint_resumes(sr_project, tmp_path):
    killed(command('train', '-opt', sr_project, cwd=tmp_path, fault='kill:torch.save:2:net_g'))
    run_dir = tmp_path / 'experiments' / 'fault_edsr'
    assert all_checkpoints_load(run_dir) == ['net_g_2.pth', '2.state']
    proc = ok(command('train', '-opt', sr_project, '--auto_resume', cwd=tmp_path))
    assert 'Resuming training from epoch: 0, iter: 2.' in proc.stderr
    assert {'net_g_6.pth', 'net_g_latest.pth', '6.state'} <= set(all_checkpoints_load(run_dir))


def test_mzsr_meta_training_killed_while_writing_a_state_resumes(photo_dir, tmp_path):
    opt = _mzsr_options(photo_dir)
    for key in ('is_train', 'dist'):
        opt.pop(key)
    opt['datasets']['train'].update(num_worker_per_gpu=0, batch_size_per_gpu=1, dataset_enlarge_ratio=1,
                                    prefetch_mode=None)
    opt['train']['total_iter'] = 4
    opt['logger'] = {'print_freq': 1, 'save_checkpoint_freq': 2, 'use_tb_logger': False}
    (tmp_path / 'mzsr.yml').write_text(yaml.safe_dump(opt))
    killed(command('train', '-opt', 'mzsr.yml', cwd=tmp_path, fault='kill:torch.save:2:.state'))
    run_dir = tmp_path / 'experiments' / 'pytest_mzsr'
    assert all_checkpoints_load(run_dir) == ['net_g_2.pth', '2.state']  # a checkpoint is whole: no net_g_4 alone
    proc = ok(command('train', '-opt', 'mzsr.yml', '--auto_resume', cwd=tmp_path))
    assert 'Resuming training from epoch: ' in proc.stderr and 'iter: 2.' in proc.stderr
    assert {'net_g_4.pth', '4.state'} <= set(all_checkpoints_load(run_dir))


# --- full disk, read-only folder ----------------------------------------------------------------------------------
def test_full_disk_during_a_checkpoint_is_one_line_and_leaves_no_partial_file(sr_project, tmp_path):
    proc = command('train', '-opt', sr_project, cwd=tmp_path, fault=f'fail:torch.save:1:net_g_4:{errno.ENOSPC}')
    one_line_error(proc, 'net_g_4.pth', 'No space left on device')
    names = all_checkpoints_load(tmp_path / 'experiments' / 'fault_edsr')
    assert 'net_g_2.pth' in names and 'net_g_4.pth' not in names and '4.state' not in names


def test_full_disk_while_publishing_a_manifest_is_one_line(photo_dir, tmp_path):
    (tmp_path / 'distill.yml').write_text(yaml.safe_dump(tiny_options(photo_dir, 'distilled', mode='selected_real')))
    proc = command('distill', '-opt', 'distill.yml', cwd=tmp_path, fault=f'fail:replace:1:select.json:{errno.ENOSPC}')
    one_line_error(proc, 'select.json', 'No space left on device')
    assert not (tmp_path / 'experiments' / 'pytest_distill' / 'stages' / 'select.json').exists()


def mounted_tmpfs(folder: Path, options: str) -> bool:
    """Mount a small tmpfs on ``folder`` where the machine allows it (root in most containers does)."""
    folder.mkdir(parents=True, exist_ok=True)
    return subprocess.run(['mount', '-t', 'tmpfs', '-o', options, 'tmpfs', str(folder)],
                          capture_output=True).returncode == 0


@pytest.mark.parametrize('options, reason', [('size=96k', 'No space left on device'), ('ro,size=1m', 'Read-only')])
def test_a_full_or_read_only_output_folder_is_one_line(photo_dir, tmp_path, options, reason):
    out = tmp_path / 'mnt'
    if mounted_tmpfs(out, options):
        try:
            proc = command('prepare', '--input', photo_dir, '--output', out / 'data', '--scales', '4', cwd=tmp_path)
            line = one_line_error(proc, str(out / 'data'))
            # LMDB reports a full tmpfs as an I/O error from its memory map
            assert any(r in line.lower() for r in (reason.lower(), 'input/output error')), line
            assert not (out / 'data' / 'HR.lmdb').exists()
        finally:
            subprocess.run(['umount', str(out)], check=True)
    else:  # no mount here: the same failure injected where the LMDB is published
        code = errno.ENOSPC if 'size=96k' == options else errno.EROFS
        proc = command('prepare', '--input', photo_dir, '--output', out / 'data', '--scales', '4', cwd=tmp_path,
                       fault=f'fail:lmdb.put:1::{code}')
        one_line_error(proc)
        assert not (out / 'data' / 'HR.lmdb').exists()


# --- bad inputs ---------------------------------------------------------------------------------------------------
def test_a_truncated_checkpoint_is_named_and_nothing_is_written(tmp_path):
    weights = tmp_path / 'net.pth'
    torch.save({'params': {'w': torch.zeros(1000)}}, weights)
    weights.write_bytes(weights.read_bytes()[:300])
    opt = yaml.safe_load((ROOT / 'options/test/test_bicubic_x4.yml').read_text())
    opt['path'].update(pretrain_network_g=str(weights), results_root=str(tmp_path / 'results'))
    opt['datasets']['test_1'].update(dataroot_gt=str(SET5 / 'HR'), dataroot_lq=str(SET5 / 'LR_bicubic' / 'X4'))
    opt['network_g'] = {'type': 'EDSR', 'num_in_ch': 3, 'num_out_ch': 3, 'num_feat': 8, 'num_block': 1, 'upscale': 4}
    opt['model_type'] = 'SRModel'
    (tmp_path / 'test.yml').write_text(yaml.safe_dump(opt))
    one_line_error(command('test', '-opt', 'test.yml', cwd=tmp_path), str(weights), 'cannot load the network weights')
    assert not list((tmp_path / 'results').rglob('metrics.json'))


@pytest.mark.parametrize('damage', ['no meta_info', 'missing keys'])
def test_a_broken_lmdb_stops_training_at_start(sr_project, tmp_path, damage):
    lmdb_dir = tmp_path / 'data' / 'HR.lmdb'
    if damage == 'no meta_info':
        (lmdb_dir / 'meta_info.txt').unlink()
        expected = 'no meta_info.txt'
    else:
        meta = lmdb_dir / 'meta_info.txt'
        meta.write_text(meta.read_text() + 'ghost.png (64,64,3) 1\n')
        expected = "e.g. 'ghost'"
    one_line_error(command('train', '-opt', sr_project, cwd=tmp_path), 'data/HR.lmdb', expected)
    assert not list(tmp_path.glob('experiments/**/*.pth'))
