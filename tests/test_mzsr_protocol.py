"""MZSR/ZSSR on the papers' own protocol: the official LR construction, the paper's bicubic column, MATLAB bicubic,
official meta-training tasks, MAML++ weights, ZSSR's protocol pieces, kernels as users have them, odd sizes."""
import json
import re

import numpy as np
import pytest
import scipy.io
import torch
from basicsr.data import build_dataset
from basicsr.utils import tensor2img
from basicsr.utils.matlab_functions import imresize
from scipy import ndimage

from srdistill_plugin.archs.bicubic_arch import BicubicUpsampler
from srdistill_plugin.archs.mzsr_arch import MZSRNet
from srdistill.core.errors import SRDistillError
from srdistill.core.kernels import degrade, eval_kernel, find_kernel, kernel_shift, load_kernel, moment_covariance
from srdistill.core.maml import PAPER_ANNEAL_ITERS, multi_step_loss_weights
from srdistill.core.matlab_resize import matlab_resize
from srdistill.core.zero_shot import mzsr_adapt, mzsr_step_sizes
from srdistill.core.zssr import ZSSRConfig, back_project, zssr_father, zssr_infer, zssr_train
from srdistill_plugin.metrics.official_psnr import calculate_psnr_y8
from srdistill_plugin.zero_shot import training

from .conftest import ROOT, SET5

PAPER_BICUBIC_SET5 = {'gd0.2': 30.24, 'gd2.0': 28.73, 'gdani': 28.15, 'gb1.3': 30.54}


def _set5(kernel: str) -> torch.utils.data.Dataset:
    return build_dataset({'name': f'Set5_{kernel}', 'type': 'KernelDegradedDataset', 'phase': 'val', 'scale': 2,
                          'dataroot_gt': str(SET5 / 'HR'), 'io_backend': {'type': 'disk'}, 'kernel': kernel})


@pytest.mark.parametrize('kernel', sorted(PAPER_BICUBIC_SET5))
def test_set5_bicubic_column_equals_the_papers(kernel):
    """The test data path (KernelDegradedDataset -> bicubic -> the official PSNR) gives the paper's Table 1 column."""
    psnrs = []
    for item in _set5(kernel):
        sr = BicubicUpsampler(scale=2)(item['lq'][None])
        psnrs.append(calculate_psnr_y8(tensor2img(sr), tensor2img(item['gt']), crop_border=2))
    assert np.mean(psnrs) == pytest.approx(PAPER_BICUBIC_SET5[kernel], abs=0.02)


def test_gd2_lr_matches_the_official_construction_byte_for_byte():
    """Built independently: a 21x21 Gaussian of variance 2, scipy correlation (half-sample symmetric borders),
    pixels (0, 0), (0, 2), ... kept, rounded to 8 bits - how the official Input/g20 LR images were made."""
    r = np.arange(21) - 10
    x, y = np.meshgrid(r, r)
    kernel = np.exp(-(x ** 2 + y ** 2) / (2 * 2.0))
    kernel /= kernel.sum()
    assert np.abs(eval_kernel('gd2.0')[0] - kernel).max() < 1e-7
    for item in _set5('gd2.0'):
        hr = item['gt'].permute(1, 2, 0).double().numpy()
        blurred = np.stack([ndimage.correlate(hr[:, :, c], kernel, mode='reflect') for c in range(3)], -1)
        expected = np.round(np.clip(blurred[::2, ::2], 0, 1) * 255).astype(np.uint8)
        ours = np.round(item['lq'].permute(1, 2, 0).numpy() * 255).astype(np.uint8)
        assert (ours == expected).mean() > 0.9999  # float32 vs float64 may flip a rare .5 rounding


def test_anisotropic_eval_kernel_has_the_papers_covariance():
    k = eval_kernel('gdani')[0]
    r = np.arange(21) - 10
    x, y = np.meshgrid(r, r)
    cov = np.array([[np.sum(k * x * x), np.sum(k * x * y)], [np.sum(k * x * y), np.sum(k * y * y)]])
    rot = np.array([[np.cos(-0.5), -np.sin(-0.5)], [np.sin(-0.5), np.cos(-0.5)]])
    assert np.allclose(cov, rot @ np.diag([4., 1.]) @ rot.T, atol=0.02)


@pytest.mark.parametrize('shape,scale', [((37, 50), 2), ((37, 50), 0.5), ((20, 33), 4), ((125, 181), 0.25)])
def test_matlab_resize_matches_basicsr_imresize(shape, scale):
    img = np.random.default_rng(0).random((*shape, 3))
    ours = matlab_resize(torch.from_numpy(img).permute(2, 0, 1)[None], scale)[0].permute(1, 2, 0).numpy()
    assert ours.shape == imresize(img, scale).shape and np.abs(ours - imresize(img, scale)).max() < 1e-6


def test_network_upsamples_like_matlab_and_to_odd_sizes():
    net = MZSRNet(num_layers=1)
    torch.nn.init.zeros_(net.body[0].weight)
    torch.nn.init.zeros_(net.body[0].bias)
    lr = torch.rand(1, 3, 13, 16)
    assert torch.allclose(net(lr), matlab_resize(lr, 2), atol=1e-6)
    assert net(lr, (25, 31)).shape == (1, 3, 25, 31)


@pytest.mark.parametrize('shape', [(125, 180), (125, 181), (63, 47)])
def test_zero_shot_adaptation_works_on_odd_sizes(shape):
    kernel = torch.from_numpy(eval_kernel('gd2.0')[0])
    lr = torch.rand(1, 3, *shape)
    adapted, _ = mzsr_adapt(MZSRNet(num_feat=8, num_layers=3), lr, kernel, 2, steps=2)
    assert adapted(lr).shape == (1, 3, 2 * shape[0], 2 * shape[1])
    cfg = ZSSRConfig(crop_size=32, max_iters=3, test_every=1)
    net = MZSRNet(num_feat=8, num_layers=3, bias=False, init_variance=0.1)
    zssr_train(net, lr, kernel, 2, cfg)
    assert zssr_infer(net, lr, kernel, 2, ZSSRConfig(output_flip=True)).shape == (1, 3, 2 * shape[0], 2 * shape[1])


def test_direct_subsampling_follows_the_official_grid_for_odd_sizes():
    img = torch.arange(7 * 5, dtype=torch.float64).reshape(1, 1, 7, 5)
    delta = torch.zeros(1, 1, dtype=torch.float64) + 1  # a 1x1 kernel: no blur
    out = degrade(img, delta, 2)
    rows = np.round(np.linspace(0, 7 - 2, 4)).astype(int)
    cols = np.round(np.linspace(0, 5 - 2, 3)).astype(int)
    assert torch.equal(out[0, 0], img[0, 0][rows][:, cols])


def _task_dataset(photo_dir, **extra):
    return build_dataset({'name': 'tasks', 'type': 'MZSRTaskDataset', 'dataroot_gt': str(photo_dir), 'phase': 'train',
                          'io_backend': {'type': 'disk'}, 'scale': 2, 'gt_size': 32, 'num_patches': 4, **extra})


def test_official_tasks_have_lr_to_hr_support_and_query_on_different_patches(photo_dir):
    np.random.seed(0)
    task = _task_dataset(photo_dir)[0]
    assert task['support_lq'].shape == task['query_lq'].shape == (4, 3, 16, 16)
    assert task['support_gt'].shape == task['query_gt'].shape == (4, 3, 32, 32)
    assert torch.allclose(degrade(task['support_gt'], task['kernel'], 2), task['support_lq'])
    assert torch.allclose(degrade(task['query_gt'], task['kernel'], 2), task['query_lq'])
    assert not torch.equal(task['support_gt'], task['query_gt'])
    son_task = _task_dataset(photo_dir, support='son_lr')[0]
    assert son_task['support_lq'].shape == (4, 3, 8, 8) and torch.equal(son_task['support_gt'], son_task['query_lq'])
    bicubic = _task_dataset(photo_dir, downsample='bicubic')[0]
    blurred = degrade(bicubic['support_gt'], bicubic['kernel'], 1)
    assert torch.allclose(bicubic['support_lq'], matlab_resize(blurred, 0.5), atol=1e-6)
    with pytest.raises(SRDistillError, match='datasets.train.support'):
        _task_dataset(photo_dir, support='son')


def test_min_variance_widens_the_task_kernels_below_the_official_floor(photo_dir):
    np.random.seed(0)
    smallest = {m: min(np.linalg.eigvalsh(moment_covariance(_task_dataset(photo_dir, min_variance=m)[i]['kernel']
                                                            .numpy())).min() for i in range(20))
                for m in (1., 0.2)}
    assert smallest[1.] > 0.95 and smallest[0.2] < 0.9  # the official floor is variance 1 (15x15 truncation aside)
    with pytest.raises(SRDistillError, match=re.escape('option datasets.train.min_variance: expected a number in '
                                                       '(0, 5)')):
        _task_dataset(photo_dir, min_variance=5.)


def test_maml_plus_plus_weights_follow_the_papers_formula():
    n = 5
    for it in (0, 1000, 3000, 5000):
        official_pre = max(1 / n - it / n / (10000 / 3), 0.03 / n)
        official_last = min(1 / n + it * (n - 1) / n / (10000 / 3), 1 - (n - 1) * 0.03 / n)
        weights = multi_step_loss_weights(n, it)
        assert weights[0].item() == pytest.approx(official_pre, abs=1e-6)
        assert weights[-1].item() == pytest.approx(official_last, abs=1e-6)
    assert PAPER_ANNEAL_ITERS == pytest.approx(3233.3, abs=0.1)
    assert torch.allclose(multi_step_loss_weights(n, 50000, anneal_iters=0), torch.full((n, ), 0.2))


def test_official_step_size_schedules():
    assert mzsr_step_sizes(6) == [2e-2, 1e-2, 1e-2, 1e-2, 5e-3, 5e-3]
    assert mzsr_step_sizes(5, 'bicubic_x2') == [1e-2, 1e-2, 1e-2, 1e-3, 1e-3]
    assert mzsr_step_sizes(6, 'direct_x4') == [1e-2, 5e-3, 5e-3, 5e-3, 5e-3, 1e-3]
    assert mzsr_step_sizes(3, 'task_lr') == [1e-2] * 3  # the step size the start was meta-trained for
    with pytest.raises(SRDistillError, match='unknown adaptation schedule'):
        mzsr_step_sizes(1, 'fast')


def test_zssr_fathers_as_the_official_augmentation():
    lr = np.random.default_rng(0).random((40, 50, 3)).astype(np.float32)
    cfg = ZSSRConfig(crop_size=16, leave_as_is=1., no_interpolate=0.)
    father = zssr_father(lr, cfg, np.random.default_rng(1))
    hits = [(i, j) for i in range(25) for j in range(35) if np.allclose(lr[i:i + 16, j:j + 16], father, atol=1e-6)]
    assert hits  # a plain crop, no interpolation
    affine = zssr_father(lr, ZSSRConfig(crop_size=16, leave_as_is=0., no_interpolate=0.), np.random.default_rng(2))
    assert affine.shape == (16, 16, 3) and not any(
        np.allclose(lr[i:i + 16, j:j + 16], affine, atol=1e-3) for i in range(25) for j in range(35))


def test_kernel_shift_moves_the_centre_of_mass_as_the_official_code():
    k = eval_kernel('gd2.0')[0]
    shifted = kernel_shift(k, 2)
    centre = np.array(ndimage.center_of_mass(shifted))
    pad = (shifted.shape[0] - 21) // 2
    assert shifted.sum() == pytest.approx(1, abs=1e-4)
    assert np.allclose(centre - pad, np.array(k.shape) / 2 + 0.5 * (2 - 1), atol=1e-3)


def test_back_projection_makes_the_sr_consistent_with_the_lr():
    kernel = torch.from_numpy(eval_kernel('gd2.0')[0])
    hr = torch.rand(1, 3, 48, 48)
    lr = degrade(hr, kernel, 2)
    sr = matlab_resize(lr, 2)
    before = (degrade(sr, kernel, 2) - lr).abs().mean()
    for _ in range(3):
        sr = back_project(sr, lr, kernel, 2)
    assert (degrade(sr, kernel, 2) - lr).abs().mean() < 0.7 * before


def test_kernels_load_from_mat_npy_and_text_of_any_odd_size(tmp_path):
    k = eval_kernel('gdani', size=13)[0]
    scipy.io.savemat(tmp_path / 'a.mat', {'kernel': k})
    scipy.io.savemat(tmp_path / 'b.mat', {'Kernel': k * 3})  # ZSSR's key; normalised on load
    np.save(tmp_path / 'c.npy', k)
    np.savetxt(tmp_path / 'd.txt', k)
    for name in ('a.mat', 'b.mat', 'c.npy', 'd.txt'):
        assert np.allclose(load_kernel(tmp_path / name), k, atol=1e-6)
    assert find_kernel(tmp_path, 'c') == tmp_path / 'c.npy'


@pytest.mark.parametrize('array,message', [
    (np.ones((4, 4)), 'kernel sides must be odd, got 4x4'),
    (-np.ones((3, 3)), 'kernel cannot be normalised'),
    (np.ones((3, 3, 3)), 'must be a 2-D array'),
])
def test_bad_kernels_are_named(tmp_path, array, message):
    np.save(tmp_path / 'k.npy', array)
    with pytest.raises(SRDistillError, match=message):
        load_kernel(tmp_path / 'k.npy')


def test_bad_kernel_files_and_folders_are_named(tmp_path):
    scipy.io.savemat(tmp_path / 'x.mat', {'a': np.ones((3, 3, 2)), 'note': 'no kernel here'})
    with pytest.raises(SRDistillError, match=r'x.mat: expected one 2-D array'):
        load_kernel(tmp_path / 'x.mat')
    with pytest.raises(SRDistillError, match="no kernel for image 'bird'"):
        find_kernel(tmp_path, 'bird')
    with pytest.raises(SRDistillError, match='the 21x21 kernel is larger than the 8x8 image'):
        degrade(torch.rand(1, 3, 8, 8), torch.from_numpy(eval_kernel('gd2.0')[0]), 2)


def test_the_benchmarks_protocol_functions_give_the_papers_bicubic_column_and_the_datasets_lr():
    """zero_shot.protocol (what the benchmarks call) makes the same LR as the validation dataset and reads the
    paper's Set5 bicubic figure for g^d_2.0."""
    from srdistill_plugin.metrics.y_channel import tensor_psnr
    from srdistill_plugin.zero_shot.protocol import benchmark_images, official_lr

    psnrs = []
    for (_, hr), item in zip(benchmark_images(SET5, 2), _set5('gd2.0')):
        lr, _, downsample = official_lr(hr, 'gd2.0', 2)
        assert downsample == 'direct' and torch.equal(lr[0], item['lq'])
        psnrs.append(tensor_psnr(BicubicUpsampler(scale=2)(lr), hr, 2))
    assert np.mean(psnrs) == pytest.approx(PAPER_BICUBIC_SET5['gd2.0'], abs=0.02)


def test_the_meta_transfer_chain_starts_every_arm_from_the_pretraining(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(training, 'train_run', lambda options, overrides, cwd, threads: calls.append(
        (options, overrides)) or 1.5)
    pretrain = training.TrainingRun('pre', 'p.yml', ('train:total_iter=3', ))
    arms = {'a': training.TrainingRun('meta_a', 'm.yml', ('x=1', )), 'b': training.TrainingRun('meta_b', 'n.yml')}
    nets, seconds = training.meta_transfer_chain(tmp_path, tmp_path / 'exp', ['c=2'], pretrain, arms)
    assert nets == {'pretrained': tmp_path / 'exp/pre/models/net_g_latest.pth',
                    'a': tmp_path / 'exp/meta_a/models/net_g_latest.pth',
                    'b': tmp_path / 'exp/meta_b/models/net_g_latest.pth'}
    assert seconds == {'pretrain_s': 1.5, 'meta_a_s': 1.5, 'meta_b_s': 1.5}
    start = f'path:pretrain_network_g={nets["pretrained"]}'
    assert calls == [('p.yml', ['c=2', f'path:experiments_root={tmp_path / "exp"}', 'name=pre', 'train:total_iter=3']),
                     ('m.yml', ['c=2', f'path:experiments_root={tmp_path / "exp"}', 'name=meta_a', 'x=1', start]),
                     ('n.yml', ['c=2', f'path:experiments_root={tmp_path / "exp"}', 'name=meta_b', start])]
    calls.clear()  # a given start (the converted official network): no pretraining, every arm from that file
    nets, seconds = training.meta_transfer_chain(tmp_path, tmp_path / 'exp', [], tmp_path / 'official.pth', arms)
    assert nets['pretrained'] == tmp_path / 'official.pth' and set(seconds) == {'meta_a_s', 'meta_b_s'}
    assert [c[0] for c in calls] == ['m.yml', 'n.yml']
    assert all(c[1][-1] == f'path:pretrain_network_g={tmp_path / "official.pth"}' for c in calls)


def test_training_time_and_curve_come_from_the_train_loops_record(tmp_path):
    with pytest.raises(SRDistillError, match='scripts/record_from_logs.py'):
        training.training_seconds(tmp_path)
    (tmp_path / 'training.json').write_text(json.dumps({
        'validation': {'1200': {'Set5_gd2.0': {'psnr': 33.1795, 'ssim': 0.93}}, '200': {'Set5_gd2.0': {'psnr': 34.6}}},
        'stretches': [{'from': 0, 'to': 200, 'seconds': 62.5, 'device': 'cpu'},
                      {'from': 200, 'to': 1200, 'seconds': 3600, 'device': 'cpu'}]}))
    assert training.training_seconds(tmp_path) == pytest.approx(3662.5)
    assert training.validation_curve(tmp_path) == {200: 34.6, 1200: 33.1795}


def test_a_run_older_than_the_record_gets_it_from_its_logs(tmp_path):
    """scripts/record_from_logs.py: one stretch per log (a chunk counted to where the next resumed), BasicSR's "Time
    consumed" where it finished, else its first to its last timestamp; each validation at the iteration before it."""
    import subprocess
    import sys

    (tmp_path / 'train_a.log').write_text(
        '2026-11-30 14:24:57,500 INFO: Start training from epoch: 0, iter: 0\n'
        '2026-11-30 14:45:34,638 INFO: [MZSR_..][epoch:  0, iter:     200, lr:(1.000e-04,)] [eta: 1:21:32] l_pix: 2.5e-02\n'
        '2026-11-30 14:45:39,980 INFO: Validation Set5_gd2.0\n\t # psnr: 34.6197\tBest: 34.6197 @ 200 iter\n'
        '\t # ssim: 0.9396\tBest: 0.9396 @ 200 iter\n\n'
        '2026-11-30 15:39:17,500 INFO: [MZSR_..][epoch:  1, iter:     300, lr:(1.000e-04,)]\n')
    (tmp_path / 'train_b.log').write_text(
        '2026-11-30 16:00:00,000 INFO: Start training from epoch: 1, iter: 200\n'
        '2026-11-30 17:32:30,482 INFO: [MZSR_..][epoch:  1, iter:   1,200, lr:(1.000e-04,)]\n'
        '2026-11-30 17:32:36,122 INFO: Validation Set5_gd2.0\n\t # psnr: 33.1795\tBest: 34.6197 @ 200 iter\n'
        '2026-11-30 17:32:40,000 INFO: End of training. Time consumed: 1:00:00\n')
    proc = subprocess.run([sys.executable, str(ROOT / 'scripts/record_from_logs.py'), str(tmp_path)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    record = json.loads((tmp_path / 'training.json').read_text())
    assert record['stretches'] == [{'from': 0, 'to': 200, 'seconds': 4460.0, 'device': 'not recorded (logs)'},
                                   {'from': 200, 'to': 1200, 'seconds': 3600.0, 'device': 'not recorded (logs)'}]
    assert record['validation'] == {'200': {'Set5_gd2.0': {'psnr': 34.6197, 'ssim': 0.9396}},
                                    '1200': {'Set5_gd2.0': {'psnr': 33.1795}}}
    assert record['log'] == [{'iter': 200, 'lr': [1e-4], 'losses': {'l_pix': 0.025}},
                             {'iter': 300, 'lr': [1e-4], 'losses': {}}, {'iter': 1200, 'lr': [1e-4], 'losses': {}}]
    again = subprocess.run([sys.executable, str(ROOT / 'scripts/record_from_logs.py'), str(tmp_path)],
                           capture_output=True, text=True)
    assert again.returncode == 2 and 'training.json exists' in again.stderr


def test_a_checkpoint_average_is_the_mean_of_the_window_and_is_written_once(tmp_path):
    from srdistill_plugin.zero_shot.checkpoints import average_checkpoint

    models = tmp_path / 'run' / 'models'
    models.mkdir(parents=True)
    for it, value in ((100, 1.), (200, 2.), (300, 4.)):
        torch.save({'params': {'w': torch.full((2, 2), value)}}, models / f'net_g_{it}.pth')
    torch.save({'params': {'w': torch.zeros(2, 2)}}, models / 'net_g_latest.pth')  # not a numbered checkpoint
    out = average_checkpoint(models, 300, 200, tmp_path / 'avg' / 'net_g_300.pth')
    saved = torch.load(out, weights_only=True)
    assert saved['members'] == [200, 300] and torch.equal(saved['params']['w'], torch.full((2, 2), 3.))
    before = out.read_bytes()
    torch.save({'params': {'w': torch.full((2, 2), 9.)}}, models / 'net_g_250.pth')
    assert average_checkpoint(models, 300, 200, out).read_bytes() == before  # written once
    assert not list(out.parent.glob('*.incomplete*'))


def test_adaptation_steps_and_zssr_iterations_show_on_a_progress_bar(capsys):
    from srdistill.core.mzsr_net import MZSRNet
    from srdistill.core.zero_shot import mzsr_adapt
    from srdistill.core.zssr import ZSSRConfig, zssr_train

    net = MZSRNet(num_feat=4, num_layers=2, upscale=2)
    lr_img, kernel = torch.rand(1, 3, 12, 12), torch.ones(3, 3) / 9
    mzsr_adapt(net, lr_img, kernel, 2, 3, step_sizes=[1e-3] * 3, progress='photo')
    zssr_train(net, lr_img, kernel, 2, ZSSRConfig(crop_size=8, max_iters=4, test_every=2), progress='ZSSR')
    err = capsys.readouterr().err
    assert re.search(r'photo: .*/3 ', err) and re.search(r'ZSSR: .*/4 ', err), err  # a bar of 3 steps, of 4 iterations
    mzsr_adapt(net, lr_img, kernel, 2, 3, step_sizes=[1e-3] * 3)  # no label: no bar
    assert capsys.readouterr().err == ''
