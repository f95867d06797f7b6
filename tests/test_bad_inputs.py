"""Bad inputs across the commands: one line naming the option or file, exit 2, nothing left behind."""
import numpy as np
import pytest
import yaml

from .conftest import ROOT, SET5, run_tool


@pytest.fixture(scope='module')
def lr_photo(tmp_path_factory):
    import cv2

    folder = tmp_path_factory.mktemp('lr')
    cv2.imwrite(str(folder / 'photo.png'), cv2.imread(str(SET5 / 'LR_bicubic' / 'X4' / 'img_002x4.png')))
    (folder / 'empty.mat').write_bytes(b'')
    (folder / 'short.mat').write_bytes(np.random.default_rng(0).bytes(21))
    return folder


@pytest.mark.parametrize('args, message', [
    (['--threads', '-3'], 'option --threads: expected an integer >= 1, got -3'),
    (['--kernel', 'estimate', '--estimate-iters', '-5'], 'option --estimate-iters: expected an integer >= 1, got -5'),
    (['--kernel', '{folder}/empty.mat'], '{folder}/empty.mat: cannot read a kernel'),
    (['--kernel', '{folder}/short.mat'], '{folder}/short.mat: cannot read a kernel'),
    (['--gt', str(SET5 / 'HR'), '--filename-tmpl', '{{'], "option filename_tmpl: '{{' is not a template"),
])
def test_zeroshot_bad_inputs(lr_photo, tmp_path, args, message):
    out = tmp_path / 'out'
    args = [a.format(folder=lr_photo) for a in args]
    proc = run_tool('-m', 'srdistill.zero_shot.cli', str(lr_photo / 'photo.png'), '--output', str(out), *args,
                    check=False)
    line = proc.stderr.strip().splitlines()[-1]
    assert proc.returncode == 2 and line.startswith('error: ' + message.format(folder=lr_photo)), line
    assert not out.exists()  # the folder this run made is gone again


@pytest.mark.parametrize('args, message', [
    (['--crop-size', '-64', '--step', '32'], 'option crop_size: expected an integer >= 0, got -64'),
    (['--output-is-a-file'], 'exists and is not a folder (--output names the folder of the LMDBs)'),
])
def test_prepare_bad_inputs(tmp_path, args, message):
    output = tmp_path / 'out'
    if args == ['--output-is-a-file']:
        output.write_text('not a folder')
        args = []
    proc = run_tool('tools/prepare_data.py', '--skimage', '--output', str(output), *args, check=False)
    line = proc.stderr.strip().splitlines()[-1]
    assert proc.returncode == 2 and message in line, line
    assert sorted(p.name for p in tmp_path.iterdir()) == (['out'] if output.is_file() else [])


@pytest.mark.parametrize('total_iter', [0, -5])
def test_a_training_of_no_iterations_is_refused(tmp_path, total_iter):
    opt = yaml.safe_load((ROOT / 'options' / 'mzsr_pretrain_x2_cpu.yml').read_text())
    opt['train']['total_iter'] = total_iter
    opt['path']['experiments_root'] = str(tmp_path / 'exp')
    (tmp_path / 'train.yml').write_text(yaml.safe_dump(opt))
    proc = run_tool('tools/train.py', '-opt', str(tmp_path / 'train.yml'), check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith(f'error: option train.total_iter: expected an integer >= 1, '
                                                           f'got {total_iter}')
    assert not (tmp_path / 'exp').exists()


def test_smoke_of_no_iterations_is_refused():
    proc = run_tool('tools/smoke.py', '--iters', '-1', check=False)
    assert proc.returncode == 2 and proc.stderr.strip().splitlines()[-1] == (
        'error: option --iters: expected an integer >= 1, got -1')


def test_the_zero_shot_dataset_reads_kernels_and_never_estimates_them(tmp_path):
    from basicsr.data import build_dataset

    from srdistill.core.errors import SRDistillError

    with pytest.raises(SRDistillError, match='option datasets.photos.kernel: give kernel_dir or kernel_file; to '
                                             'estimate the kernels first run python tools/estimate_kernel.py'):
        build_dataset({'name': 'photos', 'type': 'ZeroShotLRDataset', 'dataroot_lq': str(SET5 / 'HR'), 'scale': 2,
                       'kernel': 'estimate', 'kernel_dir': str(tmp_path / 'kernels'), 'phase': 'val'})
    assert not (tmp_path / 'kernels').exists()


def test_the_commands_estimation_default_is_the_estimators():
    from srdistill.core.kernel_estimation import KernelGANConfig
    from srdistill.zero_shot.inference import KERNELGAN_ITERS

    assert KERNELGAN_ITERS == KernelGANConfig.max_iters
