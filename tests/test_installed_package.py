"""The package as a user gets it: a wheel installed (not editable) into a fresh environment, its console commands
run from an empty folder outside the clone: prepare -> distill (tiny, finetune included) -> train -> test."""
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import yaml

from .conftest import ROOT, SET5
from .test_distillation import tiny_options

pytestmark = pytest.mark.slow


def run(cmd, cwd, env=None):
    proc = subprocess.run([str(c) for c in cmd], cwd=cwd, capture_output=True, text=True, env=env)
    assert proc.returncode == 0, f'{cmd} failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}'
    return proc


@pytest.fixture(scope='module')
def installed(tmp_path_factory):
    """A venv reusing the installed dependencies, with the wheel of this tree installed into it."""
    tmp = tmp_path_factory.mktemp('wheel')
    run([sys.executable, '-m', 'pip', 'wheel', '--no-deps', '--no-build-isolation', '-q', '-w', tmp / 'dist',
         ROOT], cwd=tmp)
    wheel = next((tmp / 'dist').glob('srdistill-*.whl'))
    run([sys.executable, '-m', 'venv', '--system-site-packages', tmp / 'env'], cwd=tmp)
    bin_dir = tmp / 'env' / 'bin'
    run([bin_dir / 'python', '-m', 'pip', 'install', '-q', '--no-deps', '--ignore-installed', wheel], cwd=tmp)
    env = {**os.environ, 'PATH': f'{bin_dir}{os.pathsep}{os.environ["PATH"]}', 'OMP_NUM_THREADS': '1'}
    env.pop('PYTHONPATH', None)
    return bin_dir, env


def test_wheel_commands_work_from_an_empty_folder(installed, photo_dir, tmp_path):
    bin_dir, env = installed
    project = tmp_path / 'my_project'
    project.mkdir()
    where = run([bin_dir / 'python', '-c', 'import importlib.util as u; print(u.find_spec("srdistill_plugin").origin)'],
                project, env)  # where the package is found (importing it is what the commands below do)
    assert str(bin_dir.parent) in where.stdout and str(ROOT) not in where.stdout  # the wheel, not the clone

    run(['srdistill-prepare', '--input', photo_dir, '--output', 'datasets/pool', '--scales', '4'], project, env)
    assert (project / 'datasets/pool/HR.lmdb/meta_info.txt').is_file()

    distill = tiny_options('datasets/pool_images', 'datasets/distilled')  # relative to the working directory
    shutil.copytree(photo_dir, project / 'datasets/pool_images')
    (project / 'distill.yml').write_text(yaml.safe_dump(distill))
    run(['srdistill-distill', '-opt', 'distill.yml'], project, env)
    assert (project / 'datasets/distilled/HR.lmdb/meta_info.txt').is_file()
    assert (project / 'experiments/pytest_distill/pytest_distill_finetune/models/net_g_latest.pth').is_file()

    train = yaml.safe_load((ROOT / 'options/swinir_distilled_x4.yml').read_text())
    train.update(name='wheel_edsr', model_type='SRModel')
    train['network_g'] = {'type': 'EDSR', 'num_in_ch': 3, 'num_out_ch': 3, 'num_feat': 8, 'num_block': 1, 'upscale': 4}
    train['datasets']['train'].update(dataroot_gt='datasets/distilled/HR.lmdb', gt_size=32, batch_size_per_gpu=2)
    for key in ('val', ):
        train.pop(key)
        train['datasets'].pop(key)
    train['train'].update(total_iter=4)
    train['logger'].update(print_freq=2, save_checkpoint_freq=4, use_tb_logger=False)
    (project / 'train.yml').write_text(yaml.safe_dump(train))
    run(['srdistill-train', '-opt', 'train.yml'], project, env)
    weights = project / 'experiments/wheel_edsr/models/net_g_latest.pth'
    assert weights.is_file()

    shutil.copytree(SET5, project / 'datasets/Set5')
    test = yaml.safe_load((ROOT / 'options/test/test_swinir_x4_demo.yml').read_text())
    test.update(name='wheel_edsr_test', model_type='SRModel', network_g=train['network_g'])
    test['path']['pretrain_network_g'] = 'experiments/wheel_edsr/models/net_g_latest.pth'
    (project / 'test.yml').write_text(yaml.safe_dump(test))
    run(['srdistill-test', '-opt', 'test.yml'], project, env)
    metrics = json.loads((project / 'results/wheel_edsr_test/metrics.json').read_text())
    assert metrics['results']['Set5']['psnr'] > 5
    assert not (ROOT / 'experiments' / 'wheel_edsr').exists() and not (ROOT / 'experiments' / 'pytest_distill').exists()


def test_wheel_command_errors_are_one_line(installed, tmp_path):
    """A bad option of an installed command is one line; ``srdistill-report`` (the experiment's former name) is
    installed as the same entry point."""
    bin_dir, env = installed
    proc = subprocess.run(['srdistill-experiment', '-opt', 'missing.yml'], cwd=tmp_path, capture_output=True, text=True,
                          env=env)
    assert proc.returncode == 2 and proc.stderr.strip() == 'error: -opt: missing.yml does not exist'
    code = ('from importlib.metadata import entry_points as e; s = e(group="console_scripts"); '
            'print(s["srdistill-report"].value == s["srdistill-experiment"].value)')
    assert run([bin_dir / 'python', '-c', code], tmp_path, env).stdout.strip() == 'True'
    assert (bin_dir / 'srdistill-report').is_file()


def test_wheel_zeroshot_command_super_resolves_a_photo_with_the_shipped_weights(installed, photo_dir, tmp_path):
    """``srdistill-zeroshot photo.png`` from an empty folder: the shipped directx2 weights with the default kernel
    and with an estimated one each write the x2 SR image (a given kernel file and the shipped models' scale check:
    test_zero_shot_inference.py and test_bad_inputs.py, through the clone)."""
    import cv2

    bin_dir, env = installed
    shutil.copyfile(photo_dir / 'coffee.png', tmp_path / 'photo.png')
    for name, extra in (('default', []), ('estimated', ['--kernel', 'estimate'])):
        proc = run(['srdistill-zeroshot', 'photo.png', '--output', name, '--steps', '1', *extra], tmp_path, env)
        summary = json.loads((tmp_path / name / 'results.json').read_text())
        assert 'mzsr_directx2.pth' in summary['model'] and str(ROOT) not in summary['model']
        sr = cv2.imread(str(tmp_path / name / 'photo_MZSR1.png'))
        assert sr.shape == (256, 256, 3) and '1 images' in proc.stdout
    assert np.load(tmp_path / 'estimated' / 'kernels' / 'photo.npy').sum() == pytest.approx(1., abs=1e-5)
