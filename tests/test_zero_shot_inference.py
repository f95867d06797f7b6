"""Real zero-shot use: given LR photos with kernel files, through the standalone inference script and the BasicSR
test pipeline; every bad input ends as one line and exit status 2 before any adaptation."""
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import scipy.io
import torch
import yaml
from basicsr.data import build_dataset

from srdistill_plugin.archs.mzsr_arch import MZSRNet
from srdistill.core.errors import SRDistillError
from srdistill.core.kernels import degrade, eval_kernel

from .conftest import run_main, run_tool

SCRIPT = 'inference/inference_mzsr.py'


@pytest.fixture()
def lr_photos(photo_dir, tmp_path) -> Path:
    """Two odd-sized LR photos made with their own kernels (.mat, the official format), their HR images, and a
    meta-learned-format checkpoint inside a BasicSR-like experiment folder (options copy with scale 2)."""
    root = tmp_path / 'photos'
    for sub in ('LR', 'HR', 'kernels'):
        (root / sub).mkdir(parents=True)
    for name, kernel_name, (h, w) in (('coffee', 'gd2.0', (58, 74)), ('rocket', 'gdani', (62, 54))):
        hr = cv2.imread(str(photo_dir / f'{name}.png'))[:h, :w]
        kernel = eval_kernel(kernel_name, size=15)[0]
        lr = degrade(torch.from_numpy(hr[:, :, ::-1] / 255.).permute(2, 0, 1)[None].float(), torch.from_numpy(kernel), 2)
        lr8 = (lr[0].permute(1, 2, 0).numpy()[:, :, ::-1].clip(0, 1) * 255).round().astype(np.uint8)
        cv2.imwrite(str(root / 'LR' / f'{name}.png'), lr8)
        cv2.imwrite(str(root / 'HR' / f'{name}.png'), hr)
        scipy.io.savemat(root / 'kernels' / f'{name}.mat', {'kernel': kernel})
    exp = root / 'experiments' / 'MZSR_meta'
    (exp / 'models').mkdir(parents=True)
    torch.manual_seed(0)
    torch.save({'params': MZSRNet().state_dict()}, exp / 'models' / 'net_g_latest.pth')
    (exp / 'options.yml').write_text(yaml.safe_dump({'name': 'MZSR_meta', 'scale': 2}))
    return root


def _args(root: Path, out: Path, *extra: str) -> list[str]:
    return [SCRIPT, '--input', str(root / 'LR'), '--kernel', str(root / 'kernels'), '--output', str(out),
            '--model', str(root / 'experiments' / 'MZSR_meta' / 'models' / 'net_g_latest.pth'), '--threads', '1',
            *extra]


def test_inference_adapts_every_odd_sized_photo_and_saves_sr_images(lr_photos, tmp_path):
    out = tmp_path / 'sr'
    run_tool(*_args(lr_photos, out, '--steps', '2', '--gt', str(lr_photos / 'HR')))
    summary = json.loads((out / 'results.json').read_text())
    assert [r['image'] for r in summary['images']] == ['coffee', 'rocket']
    assert all(r['adapt_time_s'] > 0 and 10 < r['psnr_y8'] < 60 for r in summary['images'])
    for name, (h, w) in (('coffee', (58, 74)), ('rocket', (62, 54))):
        assert cv2.imread(str(out / f'{name}_MZSR2.png')).shape == (h, w, 3)
    assert not list(out.glob('*.incomplete*'))
    run_tool(*_args(lr_photos, tmp_path / 'no_hr', '--steps', '1'))  # without HR: images, no metrics
    assert 'psnr_y8' not in json.loads((tmp_path / 'no_hr' / 'results.json').read_text())['images'][0]


@pytest.mark.parametrize('case,message', [
    ('missing_kernel', "no kernel for image 'rocket'"),
    ('even_kernel', 'rocket.npy: kernel sides must be odd, got 4x4'),
    ('wrong_scale', 'was trained for scale 2, not --scale 4'),
    ('hr_size', 'HR is 30x30, but LR coffee.png is 37x29'),
    ('missing_model', 'model file does not exist'),
    ('bad_scale', 'option --scale: expected 2, 3 or 4, got 5'),
])
def test_bad_inference_inputs_are_one_line_and_exit_2(lr_photos, tmp_path, case, message, monkeypatch, capsys):
    extra: list[str] = []
    if case == 'missing_kernel':
        (lr_photos / 'kernels' / 'rocket.mat').unlink()
    elif case == 'even_kernel':
        (lr_photos / 'kernels' / 'rocket.mat').unlink()
        np.save(lr_photos / 'kernels' / 'rocket.npy', np.ones((4, 4)))
    elif case == 'wrong_scale':
        extra = ['--scale', '4']
    elif case == 'hr_size':
        cv2.imwrite(str(lr_photos / 'HR' / 'coffee.png'), np.zeros((30, 30, 3), np.uint8))
        extra = ['--gt', str(lr_photos / 'HR')]
    elif case == 'missing_model':
        (lr_photos / 'experiments' / 'MZSR_meta' / 'models' / 'net_g_latest.pth').unlink()
    elif case == 'bad_scale':
        extra = ['--scale', '5']
    out = tmp_path / 'sr'
    code, _, err = inference_in_process(_args(lr_photos, out, *extra), tmp_path, monkeypatch, capsys)
    assert code == 2, err[-2000:]
    assert message in err and len(err.strip().splitlines()) == 1
    assert not out.exists() or not any(out.glob('*.png'))  # nothing adapted, nothing written


def test_unwritable_output_folder_is_named(lr_photos, tmp_path, monkeypatch, capsys):
    blocker = tmp_path / 'file'
    blocker.write_text('not a folder')
    code, _, err = inference_in_process(_args(lr_photos, blocker / 'sr'), tmp_path, monkeypatch, capsys)
    assert code == 2 and 'output folder cannot be written' in err


def test_a_bad_input_through_the_script_is_one_line_exit_2(lr_photos, tmp_path):
    proc = run_tool(*_args(lr_photos, tmp_path / 'sr', '--scale', '5'), check=False)
    assert proc.returncode == 2 and proc.stderr.strip() == 'error: option --scale: expected 2, 3 or 4, got 5'


def inference_in_process(args: list[str], cwd: Path, monkeypatch, capsys) -> tuple[int, str, str]:
    """``inference/inference_mzsr.py <args[1:]>`` in this process (``args[0]`` is the script)."""
    from srdistill.cli import run_cli
    from srdistill.zero_shot.inference import main

    return run_main(lambda: run_cli(main), args[1:], cwd, monkeypatch, capsys)


def test_given_lr_dataset_pairs_hr_by_template_and_works_without_hr(lr_photos, tmp_path):
    lr_dir, kernel_dir = tmp_path / 'LR', tmp_path / 'kernels'
    lr_dir.mkdir()
    kernel_dir.mkdir()
    for p in (lr_photos / 'LR').iterdir():  # LR named as in the benchmark releases: <HR stem>x2
        (lr_dir / f'{p.stem}x2.png').write_bytes(p.read_bytes())
        (kernel_dir / f'{p.stem}x2.mat').write_bytes((lr_photos / 'kernels' / f'{p.stem}.mat').read_bytes())
    opt = {'name': 'given', 'type': 'ZeroShotLRDataset', 'phase': 'val', 'scale': 2, 'dataroot_lq': str(lr_dir),
           'kernel_dir': str(kernel_dir)}
    without = build_dataset(opt)
    assert 'gt' not in without[0] and without[0]['lq'].shape == (3, 29, 37)
    paired = build_dataset({**opt, 'dataroot_gt': str(lr_photos / 'HR'), 'filename_tmpl': '{}x2'})
    assert paired[0]['gt'].shape == (3, 58, 74) and paired[1]['gt'].shape == (3, 62, 54)
    with pytest.raises(SRDistillError, match='no HR image for it'):
        build_dataset({**opt, 'dataroot_gt': str(lr_photos / 'HR')})


def test_given_lr_options_run_through_the_basicsr_test_entry(lr_photos, tmp_path):
    """options/test/mzsr_x2_given_lr.yml as a user points it at their photos: SR images saved, no HR needed."""
    model = lr_photos / 'experiments' / 'MZSR_meta' / 'models' / 'net_g_latest.pth'
    run_tool('tools/test.py', '-opt', 'options/test/mzsr_x2_given_lr.yml', '--force_yml',
             f'datasets:test_1:dataroot_lq={lr_photos / "LR"}', f'datasets:test_1:kernel_dir={lr_photos / "kernels"}',
             f'path:pretrain_network_g={model}', f'path:results_root={tmp_path / "results"}')
    saved = sorted(p.name for p in (tmp_path / 'results').rglob('visualization/**/*.png'))
    assert len(saved) == 2 and saved[0].startswith('coffee')


def test_zssr_runs_through_the_model_with_its_official_options(lr_photos):
    from basicsr.models import build_model

    opt = {'name': 'zssr', 'model_type': 'MZSRModel', 'scale': 2, 'num_gpu': 0, 'is_train': False, 'dist': False,
           'network_g': {'type': 'MZSRNet', 'num_feat': 8, 'num_layers': 3}, 'path': {'pretrain_network_g': None},
           'val': {'adaptation': {'mode': 'zssr', 'max_iters': 4, 'crop_size': 32, 'output_flip': True}}}
    model = build_model(opt)
    item = build_dataset({'name': 'given', 'type': 'ZeroShotLRDataset', 'phase': 'val', 'scale': 2,
                          'dataroot_lq': str(lr_photos / 'LR'), 'kernel_dir': str(lr_photos / 'kernels')})[0]
    model.feed_data({k: (v[None] if torch.is_tensor(v) else [v]) for k, v in item.items()})
    model.test()
    assert model.output.shape == (1, 3, 58, 74) and model.output.min() >= 0 and model.output.max() <= 1
    opt['val']['adaptation']['crop'] = 32
    model = build_model(opt)
    model.feed_data({k: (v[None] if torch.is_tensor(v) else [v]) for k, v in item.items()})
    with pytest.raises(SRDistillError, match=r"unknown ZSSR option\(s\) \['crop'\]"):
        model.test()


def test_inference_estimates_each_kernel_with_kernelgan(lr_photos, photo_dir, tmp_path):
    lr_dir = tmp_path / 'big_lr'
    lr_dir.mkdir()
    cv2.imwrite(str(lr_dir / 'coffee.png'), cv2.imread(str(photo_dir / 'coffee.png'))[:100, :120])
    out = tmp_path / 'sr'
    run_tool(SCRIPT, '--input', str(lr_dir), '--kernel', 'estimate-kernelgan', '--estimate-iters', '3', '--output',
             str(out),
             '--steps', '1', '--model', str(lr_photos / 'experiments' / 'MZSR_meta' / 'models' / 'net_g_latest.pth'))
    assert (out / 'kernels' / 'coffee.mat').is_file() and cv2.imread(str(out / 'coffee_MZSR1.png')).shape == (200, 240, 3)
    small = run_tool(SCRIPT, '--input', str(lr_photos / 'LR'), '--kernel', 'estimate-kernelgan', '--output',
                     str(tmp_path / 's'),
                     '--model', str(lr_photos / 'experiments' / 'MZSR_meta' / 'models' / 'net_g_latest.pth'), check=False)
    assert small.returncode == 2 and "smaller than the estimator's 64px crop" in small.stderr
    assert not (tmp_path / 's' / 'kernels').exists()  # nothing estimated before the check


def test_estimation_does_not_start_when_an_hr_image_does_not_fit(lr_photos, photo_dir, tmp_path):
    lr_dir, hr_dir = tmp_path / 'lr', tmp_path / 'hr'
    lr_dir.mkdir()
    hr_dir.mkdir()
    cv2.imwrite(str(lr_dir / 'coffee.png'), cv2.imread(str(photo_dir / 'coffee.png'))[:100, :120])
    cv2.imwrite(str(hr_dir / 'coffee.png'), np.zeros((50, 50, 3), np.uint8))
    out = tmp_path / 'sr'
    proc = run_tool(SCRIPT, '--input', str(lr_dir), '--kernel', 'estimate', '--output', str(out), '--gt', str(hr_dir),
                    '--model', str(lr_photos / 'experiments' / 'MZSR_meta' / 'models' / 'net_g_latest.pth'),
                    check=False)
    assert proc.returncode == 2 and 'HR is 50x50, but LR coffee.png is 120x100' in proc.stderr
    assert not (out / 'kernels').exists()


def test_estimation_does_not_start_when_an_image_cannot_be_decoded(lr_photos, photo_dir, tmp_path):
    lr_dir = tmp_path / 'lr'
    lr_dir.mkdir()
    cv2.imwrite(str(lr_dir / 'coffee.png'), cv2.imread(str(photo_dir / 'coffee.png'))[:100, :120])
    whole = (lr_dir / 'coffee.png').read_bytes()
    (lr_dir / 'cut.png').write_bytes(whole[:len(whole) // 2])  # a valid header, then the data stops
    out = tmp_path / 'sr'
    proc = run_tool(SCRIPT, '--input', str(lr_dir), '--kernel', 'estimate', '--output', str(out),
                    '--model', str(lr_photos / 'experiments' / 'MZSR_meta' / 'models' / 'net_g_latest.pth'),
                    check=False)
    assert proc.returncode == 2 and 'cut.png' in proc.stderr.strip().splitlines()[-1], proc.stderr
    assert not out.exists()  # nothing estimated, nothing written, the folder it made removed


def test_the_zeroshot_command_takes_a_kernel_file_with_the_shipped_weights(photo_dir, tmp_path):
    """``srdistill-zeroshot photo.png --kernel k.npy``: the shipped directx2 weights adapt to the given kernel and
    write the x2 SR image (the wheel test runs the default and the estimated kernel)."""
    cv2.imwrite(str(tmp_path / 'photo.png'), cv2.imread(str(photo_dir / 'coffee.png')))
    np.save(tmp_path / 'k.npy', eval_kernel('gdani')[0])
    proc = run_tool('-m', 'srdistill.zero_shot.cli', 'photo.png', '--output', 'given', '--steps', '1', '--kernel',
                    'k.npy', cwd=tmp_path)
    summary = json.loads((tmp_path / 'given' / 'results.json').read_text())
    assert summary['model'].endswith('mzsr_directx2.pth') and '1 images' in proc.stdout
    assert cv2.imread(str(tmp_path / 'given' / 'photo_MZSR1.png')).shape == (256, 256, 3)


def test_ensemble_moves_the_turned_views_back_on_the_direct_grid_only(photo_dir, tmp_path, monkeypatch):
    """``--ensemble``: the self-ensemble gets ``grid_shift`` = scale - 1 for a direct-subsampling model (its LR holds
    HR pixels 0, 2, 4, ...) and 0 for the bicubic one (MATLAB's grid is symmetric under flips); the summary says so."""
    from srdistill.zero_shot import inference

    cv2.imwrite(str(tmp_path / 'photo.png'), cv2.imread(str(photo_dir / 'coffee.png'))[:32, :40])
    shifts = []
    monkeypatch.setattr(inference, 'self_ensemble', lambda net, lq, grid_shift: shifts.append(grid_shift) or net(lq))
    for model, kernel in (('directx2', 'gd2.0'), ('bicubicx2', 'gb1.3')):
        summary = inference.main([str(tmp_path / 'photo.png'), '--output', str(tmp_path / model), '--model', model,
                                  '--kernel', kernel, '--steps', '0', '--ensemble'])
        assert summary['ensemble'] and (tmp_path / model / 'photo_MZSR0.png').is_file()
    assert shifts == [1, 0]
    assert not inference.main([str(tmp_path / 'photo.png'), '--output', str(tmp_path / 'plain'), '--kernel', 'gd2.0',
                               '--steps', '0'])['ensemble'] and shifts == [1, 0]


def test_the_zeroshot_command_estimates_each_kernel_with_the_learned_estimator(photo_dir, tmp_path):
    """``--kernel estimate``: the shipped estimator's kernel of each LR is saved (15x15, sum 1, a Gaussian of the
    recorded variances) and used; an LR below 24 px stops the run before any estimate or adaptation."""
    from srdistill.core.kernels import gaussian_kernel

    cv2.imwrite(str(tmp_path / 'photo.png'), cv2.imread(str(photo_dir / 'coffee.png'))[:96, :128])
    run_tool('-m', 'srdistill.zero_shot.cli', 'photo.png', '--output', 'est', '--steps', '1', '--kernel', 'estimate',
             cwd=tmp_path)
    kernel = np.load(tmp_path / 'est' / 'kernels' / 'photo.npy')
    record = json.loads((tmp_path / 'est' / 'kernels' / 'kernels.json').read_text())['images']['photo']
    assert kernel.shape == (15, 15) and kernel.sum() == pytest.approx(1., abs=1e-5)
    assert np.allclose(kernel, gaussian_kernel(15, record['lambda1'], record['lambda2'], record['theta']), atol=1e-6)
    assert 0.2 <= record['lambda2'] <= record['lambda1'] <= 5.
    assert cv2.imread(str(tmp_path / 'est' / 'photo_MZSR1.png')).shape == (192, 256, 3)
    summary = json.loads((tmp_path / 'est' / 'results.json').read_text())  # the command benchmark's time breakdown
    assert summary['kernel_time_s'] > 0 and summary['images'][0]['infer_time_s'] > 0
    cv2.imwrite(str(tmp_path / 'tiny.png'), cv2.imread(str(photo_dir / 'coffee.png'))[:20, :30])
    proc = run_tool('-m', 'srdistill.zero_shot.cli', 'tiny.png', '--output', 'tiny', '--kernel', 'estimate',
                    cwd=tmp_path, check=False)
    assert proc.returncode == 2 and "the LR is 30x20, smaller than the kernel estimator's 24 px" in proc.stderr
    assert not (tmp_path / 'tiny').exists()


def test_an_estimator_for_another_scale_is_refused_in_one_line(photo_dir, tmp_path):
    from srdistill.core.kernel_predictor import KernelPredictor, PredictorSettings, save_predictor

    save_predictor(tmp_path / 'x4.pth', KernelPredictor(num_feat=4, dilations=(1, )), PredictorSettings(scale=4), {})
    cv2.imwrite(str(tmp_path / 'photo.png'), cv2.imread(str(photo_dir / 'coffee.png'))[:64, :64])
    proc = run_tool('-m', 'srdistill.zero_shot.cli', 'photo.png', '--output', 'o', '--kernel', 'estimate',
                    '--estimator', 'x4.pth', cwd=tmp_path, check=False)
    assert proc.returncode == 2 and 'the learned estimator is for x4 direct subsampling, this run is x2 direct' in \
        proc.stderr.strip().splitlines()[-1]


def test_the_default_kernel_is_the_estimate_only_where_the_estimator_won_on_validation(tmp_path, monkeypatch):
    """The shipped estimator's record says it beat g^d_2.0 for directx2 on its held-out photographs: directx2's
    default is ``estimate``; bicubicx2 keeps g^b_1.3, a given kernel is kept, and an estimator whose record says it
    lost, or won with other directx2 weights than the shipped ones, leaves directx2 on g^d_2.0."""
    from srdistill.core.kernel_predictor import KernelPredictor, PredictorSettings, load_predictor, save_predictor
    from srdistill.zero_shot import inference, zoo

    record = load_predictor(zoo.ESTIMATOR_FILE)[2]
    assert record['wins_on_validation'] and record['mzsr_model'] == 'directx2'

    def kernel(*extra):
        return inference.resolve_model(inference.parse_args(['x.png', '--output', 'o', *extra])).kernel

    assert kernel() == 'estimate' and kernel('--model', 'bicubicx2') == 'gb1.3' and kernel('--kernel', 'gd0.2') == 'gd0.2'
    for name, change in (('lost', {'wins_on_validation': False}), ('other_weights', {'mzsr_hash': '0123456789'})):
        save_predictor(tmp_path / f'{name}.pth', KernelPredictor(num_feat=4, dilations=(1, )), PredictorSettings(),
                       {**record, **change})
        monkeypatch.setattr(zoo, 'ESTIMATOR_FILE', tmp_path / f'{name}.pth')
        assert kernel() == 'gd2.0', name  # lost, or won with weights other than the shipped ones
