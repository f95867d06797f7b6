"""MZSR: kernels, degradation shapes, the meta-gradient through the inner loop, meta-training and adaptation."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from basicsr.data import build_dataset
from basicsr.models import build_model

from srdistill_plugin.archs.mzsr_arch import MZSRNet
from srdistill.core.errors import SRDistillError
from srdistill.core.kernels import (EVAL_KERNELS, degrade, eval_kernel, gaussian_kernel, load_kernel,
                                           random_mzsr_kernel)
from srdistill.core.maml import multi_step_loss_weights, task_query_loss
from srdistill.core.zero_shot import mzsr_adapt, mzsr_step_sizes

from .conftest import SET5


def kernel_covariance(k: np.ndarray) -> np.ndarray:
    r = np.arange(k.shape[0]) - k.shape[0] // 2
    x, y = np.meshgrid(r, r, indexing='xy')
    return np.array([[np.sum(k * x * x), np.sum(k * x * y)], [np.sum(k * x * y), np.sum(k * y * y)]])


def test_kernels_are_normalised_and_anisotropic_as_asked():
    rng = np.random.default_rng(0)
    for _ in range(20):
        k = random_mzsr_kernel(rng, scale=2)
        assert k.shape == (15, 15) and k.sum() == pytest.approx(1, abs=1e-5) and k.min() >= 0
        eig = np.linalg.eigvalsh(kernel_covariance(k))
        assert 0.8 < eig[0] <= eig[1] < 5.2  # lambda2 <= lambda1 in [1, 2.5 s] (truncation shrinks them a bit)
    k = gaussian_kernel(15, 4.0, 1.0, theta=0)
    cov = kernel_covariance(k)
    assert cov[0, 0] == pytest.approx(4.0, rel=0.02) and cov[1, 1] == pytest.approx(1.0, rel=0.02)
    assert np.allclose(eval_kernel('gd2.0')[0], eval_kernel('gd2.0')[0].T) and set(EVAL_KERNELS) == {
        'gd0.2', 'gd2.0', 'gdani', 'gb1.3'}


@pytest.mark.parametrize('downsample', ['direct', 'bicubic'])
def test_lr_and_son_shapes_for_odd_sizes(downsample):
    hr = torch.rand(1, 3, 67, 45)
    k = torch.from_numpy(eval_kernel('gd2.0')[0])
    lr = degrade(hr, k, 2, downsample)
    son = degrade(lr, k, 2, downsample)
    assert lr.shape == (1, 3, 34, 23) and son.shape == (1, 3, 17, 12)  # ceil(H / s), as the official code


def test_blur_is_a_normalised_convolution():
    flat = torch.full((1, 3, 20, 20), 0.3)
    assert torch.allclose(degrade(flat, torch.from_numpy(random_mzsr_kernel(np.random.default_rng(1), 2)), 2), flat[..., ::2, ::2])


def _tiny_task(dtype=torch.float64):
    torch.manual_seed(0)
    net = MZSRNet(num_feat=4, num_layers=3, upscale=1).to(dtype)
    data = [torch.rand(2, 3, 8, 8, dtype=dtype) for _ in range(4)]
    return net, (data[0], data[1]), (data[2], data[3])


def _outer_loss(net, params, support, query, first_order):
    weights = torch.tensor([0.5, 0.5], dtype=torch.float64)
    return task_query_loss(net, params, support, query, 0.5, weights, F.mse_loss, first_order)[0]


def test_meta_gradient_matches_finite_differences_through_the_inner_loop():
    net, support, query = _tiny_task()
    params = dict(net.named_parameters())
    grads = torch.autograd.grad(_outer_loss(net, params, support, query, False), list(params.values()))
    fo_grads = torch.autograd.grad(_outer_loss(net, params, support, query, True), list(params.values()))
    direction = [torch.randn_like(p) for p in params.values()]
    eps = 1e-6

    def shifted(sign):
        return {n: (p + sign * eps * d).detach() for (n, p), d in zip(params.items(), direction)}

    with torch.enable_grad():
        plus = _outer_loss(net, {n: p.requires_grad_() for n, p in shifted(1).items()}, support, query, False)
        minus = _outer_loss(net, {n: p.requires_grad_() for n, p in shifted(-1).items()}, support, query, False)
    numeric = (plus - minus).item() / (2 * eps)
    analytic = sum((g * d).sum() for g, d in zip(grads, direction)).item()
    first_order = sum((g * d).sum() for g, d in zip(fo_grads, direction)).item()
    assert analytic == pytest.approx(numeric, rel=1e-5)
    assert abs(first_order - numeric) > 100 * abs(analytic - numeric)  # first-order really drops a term


def test_multi_step_loss_weights_anneal_to_the_last_step():
    assert torch.allclose(multi_step_loss_weights(5, 0, 100), torch.full((5, ), 0.2))
    late = multi_step_loss_weights(5, 1000, 100)
    assert late.sum() == pytest.approx(1) and late[0] == pytest.approx(0.006) and late[-1] > 0.97


def _mzsr_options(photo_dir):
    return {
        'name': 'pytest_mzsr', 'model_type': 'MZSRModel', 'scale': 2, 'num_gpu': 0, 'is_train': True, 'dist': False,
        'network_g': {'type': 'MZSRNet', 'num_feat': 16, 'num_layers': 4, 'upscale': 2},
        'path': {'pretrain_network_g': None, 'resume_state': None},
        'train': {'optim_g': {'type': 'Adam', 'lr': 1e-3}, 'scheduler': {'type': 'MultiStepLR', 'milestones': [100],
                  'gamma': 0.5}, 'pixel_opt': {'type': 'L1Loss', 'loss_weight': 1.0},
                  'meta': {'inner_lr': 0.01, 'inner_steps': 2, 'first_order': False, 'anneal_iters': 10}},
        'datasets': {'train': {'name': 'tasks', 'type': 'MZSRTaskDataset', 'dataroot_gt': str(photo_dir),
                               'io_backend': {'type': 'disk'}, 'phase': 'train', 'scale': 2, 'gt_size': 48,
                               'num_patches': 4, 'kernel_size': 11, 'tasks_per_epoch': 10}},
    }


def test_meta_iterations_lower_the_query_loss(photo_dir):
    opt = _mzsr_options(photo_dir)
    torch.manual_seed(0)
    np.random.seed(0)
    dataset = build_dataset(opt['datasets']['train'])
    batch = {k: torch.stack([dataset[i][k] for i in range(2)]) for k in dataset[0]}
    model = build_model(opt)
    model.feed_data(batch)
    model.optimize_parameters(1)
    start = model.get_current_log()['l_query_final']
    for it in range(2, 16):
        model.optimize_parameters(it)
    assert model.get_current_log()['l_query_final'] < 0.8 * start


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return -10 * math.log10(F.mse_loss(a.clamp(0, 1), b).item())


def test_one_adaptation_step_improves_a_toy_image():
    """Blocky toy image blurred by g^d_2.0: one official-size step on (son -> LR) sharpens LR -> HR too."""
    blocks = torch.rand(1, 3, 6, 6, generator=torch.Generator().manual_seed(0))
    hr = F.interpolate(blocks, size=(96, 96), mode='nearest')
    k = torch.from_numpy(eval_kernel('gd2.0')[0])
    lr = degrade(hr, k, 2)
    net = MZSRNet(num_layers=1, upscale=2)  # bicubic + one linear filter, starting at plain bicubic
    torch.nn.init.zeros_(net.body[-1].weight)
    torch.nn.init.zeros_(net.body[-1].bias)
    with torch.no_grad():
        before = psnr(net(lr), hr)
    adapted, seconds = mzsr_adapt(net, lr, k, 2, steps=1)
    with torch.no_grad():
        assert psnr(adapted(lr), hr) > before + 0.01
    assert seconds > 0 and mzsr_step_sizes(6) == [2e-2, 1e-2, 1e-2, 1e-2, 5e-3, 5e-3]


def test_bad_inputs_give_clear_errors(photo_dir, tmp_path):
    with pytest.raises(SRDistillError, match='missing.npy: kernel file does not exist'):
        load_kernel(tmp_path / 'missing.npy')
    with pytest.raises(SRDistillError, match='the 21x21 kernel is larger than the 6x6 image'):
        degrade(torch.rand(1, 3, 6, 6), torch.from_numpy(eval_kernel('gd2.0')[0]), 2)
    opt = _mzsr_options(photo_dir)
    opt['network_g']['upscale'] = 4
    with pytest.raises(SRDistillError, match=r'network_g.upscale \(4\) does not match scale \(2\)'):
        build_model(opt)
    with pytest.raises(SRDistillError, match='exactly one of kernel_file, kernel_dir'):
        build_dataset({'name': 'x', 'type': 'KernelDegradedDataset', 'dataroot_gt': str(SET5 / 'HR'), 'scale': 2})
