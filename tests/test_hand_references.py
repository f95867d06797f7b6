"""Algorithms against references worked out by hand (or written out step by step in the test), not against the
code under test: the MAML inner step and query loss, MZSR's multi-step adaptation schedule, ZSSR's learning-rate
policy and back-projection, and the class-balanced sampler's uniformity within a class."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import stats
from torch import nn

from srdistill.core import zero_shot, zssr
from srdistill.core.class_balance import class_balanced_indices, class_members
from srdistill.core.errors import SRDistillError
from srdistill.core.kernels import degrade, eval_kernel
from srdistill.core.maml import PAPER_ANNEAL_ITERS, inner_step, multi_step_loss_weights, task_query_loss
from srdistill.core.mzsr_net import MZSRNet
from srdistill.core.zero_shot import mzsr_adapt
from srdistill.core.zssr import ZSSRConfig, back_project, zssr_infer, zssr_on_plateau, zssr_train


def scalar_net(w: float) -> nn.Module:
    """``y = w * x`` in float64."""
    net = nn.Linear(1, 1, bias=False).double()
    with torch.no_grad():
        net.weight.fill_(w)
    return net


SUPPORT = (torch.tensor([[1.], [2.]], dtype=torch.float64), torch.tensor([[2.], [2.]], dtype=torch.float64))
QUERY = (torch.tensor([[3.]], dtype=torch.float64), torch.tensor([[3.]], dtype=torch.float64))


def test_maml_inner_step_is_w_minus_lr_times_the_support_gradient():
    # L(w) = mean((w x - y)^2) on x = (1, 2), y = (2, 2) at w = 0.5: residuals (-1.5, -1), dL/dw = mean(2 x r) = -3.5;
    # one step of 0.1: w' = 0.5 + 0.35 = 0.85
    net = scalar_net(0.5)
    fast = inner_step(net, dict(net.named_parameters()), *SUPPORT, 0.1, F.mse_loss, first_order=False)
    assert fast['weight'].item() == pytest.approx(0.85, abs=1e-12)


def test_maml_query_loss_and_second_order_meta_gradient_by_hand():
    net = scalar_net(0.5)
    params = dict(net.named_parameters())
    weights = torch.tensor([1.], dtype=torch.float64)
    loss, per_step = task_query_loss(net, params, SUPPORT, QUERY, 0.1, weights, F.mse_loss, first_order=False)
    # query at w' = 0.85: (0.85 * 3 - 3)^2 = 0.2025
    assert loss.item() == pytest.approx(0.2025, abs=1e-12) and per_step == pytest.approx([0.2025], abs=1e-12)
    # d/dw = dLq/dw' * dw'/dw = 2 * (2.55 - 3) * 3 * (1 - 0.1 * mean(2 x^2)) = -2.7 * 0.5 = -1.35
    (grad, ) = torch.autograd.grad(loss, [params['weight']])
    assert grad.item() == pytest.approx(-1.35, abs=1e-12)
    first_order = task_query_loss(net, params, SUPPORT, QUERY, 0.1, weights, F.mse_loss, first_order=True)[0]
    (fo_grad, ) = torch.autograd.grad(first_order, [params['weight']])
    assert fo_grad.item() == pytest.approx(-2.7, abs=1e-12)  # FOMAML: dw'/dw taken as 1


def test_maml_weighted_multi_step_query_loss_by_hand():
    # step 2 from w1 = 0.85: residuals (-1.15, -0.3), dL/dw = mean(-2.3, -1.2) = -1.75, w2 = 1.025,
    # query (3.075 - 3)^2 = 0.005625; weighted 0.25 * 0.2025 + 0.75 * 0.005625 = 0.05484375
    net = scalar_net(0.5)
    weights = torch.tensor([0.25, 0.75], dtype=torch.float64)
    loss, per_step = task_query_loss(net, dict(net.named_parameters()), SUPPORT, QUERY, 0.1, weights, F.mse_loss)
    assert per_step == pytest.approx([0.2025, 0.005625], abs=1e-12)
    assert loss.item() == pytest.approx(0.05484375, abs=1e-12)


def test_maml_query_loss_reads_the_query_input_and_target():
    # the query above has x = y = 3; here x = 2, y = 3 at w' = 0.85: (1.7 - 3)^2 = 1.69
    net = scalar_net(0.5)
    query = (torch.tensor([[2.]], dtype=torch.float64), torch.tensor([[3.]], dtype=torch.float64))
    loss, _ = task_query_loss(net, dict(net.named_parameters()), SUPPORT, query, 0.1,
                              torch.tensor([1.], dtype=torch.float64), F.mse_loss)
    assert loss.item() == pytest.approx(1.69, abs=1e-12)


def test_maml_default_is_second_order():
    net = scalar_net(0.5)
    params = dict(net.named_parameters())
    loss, _ = task_query_loss(net, params, SUPPORT, QUERY, 0.1, torch.tensor([1.], dtype=torch.float64), F.mse_loss)
    (grad, ) = torch.autograd.grad(loss, [params['weight']])
    assert grad.item() == pytest.approx(-1.35, abs=1e-12)  # the second-order value above, not FOMAML's -2.7


@pytest.mark.parametrize('steps, current_iter, anneal_iters, expected', [
    # uniform at the start, whatever the number of steps
    (2, 0, 3233.3, [0.5, 0.5]),
    # halfway through the annealing: the early step falls halfway from 1/2 to 0.03/2 = 0.015 -> 0.2575, the last
    # takes the rest
    (2, 1000, 2000, [0.2575, 0.7425]),
    # 3 steps, annealing over 1 iteration, done: the early steps sit at 0.03/3 = 0.01, the last takes 0.98
    (3, 1, 1, [0.01, 0.01, 0.98]),
    (3, 5, 0, [1 / 3] * 3),  # no annealing (the released code): uniform throughout
    (1, 5000, 3233.3, [1.]),
    (2, 5000, 3233.3, [0.015, 0.985]),  # past the annealing: the floor stays
])
def test_maml_plus_plus_step_weights_by_hand(steps, current_iter, anneal_iters, expected):
    weights = multi_step_loss_weights(steps, current_iter, anneal_iters)
    assert weights.tolist() == pytest.approx(expected, abs=1e-7)


def test_the_paper_anneals_over_0_97_of_10000_over_3_iterations():
    assert PAPER_ANNEAL_ITERS == pytest.approx(3233.333, abs=1e-3)


def test_mzsr_adaptation_follows_a_hand_written_sgd_loop_with_the_official_step_sizes():
    torch.manual_seed(0)
    net = MZSRNet(num_feat=4, num_layers=2).double()
    lr = torch.rand(1, 3, 12, 14, dtype=torch.float64)
    kernel = torch.from_numpy(eval_kernel('gd2.0')[0]).double()
    adapted, _ = mzsr_adapt(net, lr, kernel, 2, steps=5, schedule='direct_x2')

    reference = MZSRNet(num_feat=4, num_layers=2).double()
    reference.load_state_dict(net.state_dict())
    son = degrade(lr, kernel, 2)
    for step_size in (2e-2, 1e-2, 1e-2, 1e-2, 5e-3):  # JWSoh/MZSR test.py, the direct x2 model
        loss = F.l1_loss(reference(son, lr.shape[-2:]), lr)
        grads = torch.autograd.grad(loss, list(reference.parameters()))
        with torch.no_grad():
            for p, g in zip(reference.parameters(), grads):
                p -= step_size * g
    for (name, a), b in zip(adapted.named_parameters(), reference.parameters()):
        assert torch.allclose(a, b, atol=1e-12), name
    assert not torch.allclose(next(net.parameters()), next(adapted.parameters()))  # the original is untouched


def test_zssr_plateau_test_on_hand_made_error_curves():
    steps = [0, 10, 20, 30]
    # a straight fall: slope -0.1 with no scatter (standard error 0): still learning, keep the rate
    assert not zssr_on_plateau(steps, [4., 3., 2., 1.], 1.5)
    # flat with scatter: slope +0.02 (Sxy 10 / Sxx 500): no fall at all, drop the rate
    assert zssr_on_plateau(steps, [1., 2., 1., 2.], 1.5)
    # slope -0.002 (Sxy -1 / Sxx 500) against residuals (.32, -.66, .36, -.02): its standard error
    # sqrt(0.668 / 2 / 500) = 0.026 exceeds 1.5 * 0.002, the fall is lost in the scatter: drop
    assert zssr_on_plateau(steps, [2.0, 1.0, 2.0, 1.6], 1.5)
    # slope -0.101 against residuals of a few hundredths: a real fall, keep the rate
    assert not zssr_on_plateau(steps, [4.0, 3.1, 1.9, 1.0], 1.5)


def test_zssr_learning_rate_only_ever_drops_tenfold(monkeypatch):
    made = []
    real_adam = torch.optim.Adam

    def recording_adam(*args, **kwargs):
        made.append(real_adam(*args, **kwargs))
        return made[-1]

    monkeypatch.setattr(torch.optim, 'Adam', recording_adam)
    cfg = ZSSRConfig(crop_size=16, max_iters=120, min_iters=10, test_every=5, check_every=10, slope_range=20,
                     lr=1e-3, min_lr=1e-30)
    rates = []
    monkeypatch.setattr(zssr, 'zssr_on_plateau', lambda *a: rates.append(made[0].param_groups[0]['lr']) or True)
    torch.manual_seed(0)
    lr_img = torch.rand(1, 3, 20, 20)
    zssr.zssr_train(MZSRNet(num_feat=4, num_layers=2, upscale=2), lr_img, torch.ones(3, 3) / 9, 2, cfg)
    # with every check on a plateau, the rate falls 10x at each allowed check (more than min_iters apart)
    assert rates[:3] == pytest.approx([1e-3, 1e-4, 1e-5])
    assert made[0].param_groups[0]['lr'] < 1e-5


def test_back_projection_of_a_constant_residual_by_hand():
    # a delta kernel makes the degradation plain subsampling; SR = 0 and LR = 0.3 everywhere: the residual is 0.3,
    # its bicubic upsampling is 0.3 (the weights sum to 1), so one back-projection gives 0.3 everywhere
    delta = torch.zeros(5, 5)
    delta[2, 2] = 1.
    out = back_project(torch.zeros(1, 1, 8, 8), torch.full((1, 1, 4, 4), 0.3), delta, 2)
    assert torch.allclose(out, torch.full((1, 1, 8, 8), 0.3), atol=1e-6)


def test_zssr_output_is_back_projected_twice_and_again_after_the_median():
    torch.manual_seed(0)
    net = MZSRNet(num_feat=4, num_layers=2)
    nn.init.zeros_(net.body[-1].weight)  # the output starts as the bicubic upsampling
    kernel = torch.from_numpy(eval_kernel('gd2.0')[0])
    lr = degrade(torch.rand(1, 3, 20, 24), kernel, 2)
    cfg = ZSSRConfig(kernel_shift=False)
    out = zssr_infer(net, lr, kernel, 2, cfg)
    with torch.no_grad():
        expected = net(lr).clamp(0, 1)
        for _ in range(4):  # two on the output, two after the (single-output) median
            expected = back_project(expected, lr, kernel, 2)
        plain = zssr_infer(net, lr, kernel, 2, ZSSRConfig(kernel_shift=False, back_projection_iters=0))
    assert torch.allclose(out, expected, atol=1e-6)
    assert (degrade(out, kernel, 2) - lr).abs().mean() < 0.7 * (degrade(plain, kernel, 2) - lr).abs().mean()


def test_class_members_by_hand():
    assert [m.tolist() for m in class_members([2, 0, 2, 1])] == [[1], [3], [0, 2]]
    with pytest.raises(SRDistillError, match=r'^ClassBalancedSampler: the dataset has no class_ids \(give it a '
                                             r'class_info file\)$'):
        class_members(None)


def test_class_balanced_draws_depend_on_the_seed_only():
    members = class_members([0, 0, 1, 1, 1])
    first = class_balanced_indices(members, 50, seed=7)
    torch.manual_seed(123)  # the global generator moves on; the draws must not
    torch.rand(10)
    assert class_balanced_indices(members, 50, seed=7) == first != class_balanced_indices(members, 50, seed=8)


def test_class_balanced_sampler_takes_its_rank_stride_of_the_epoch_stream():
    from srdistill_plugin.samplers.class_balanced_sampler import ClassBalancedSampler

    class FiveItems(torch.utils.data.Dataset):
        class_ids = [0, 0, 1, 1, 1]

        def __len__(self):
            return 5

    class NoClassIds(FiveItems):
        class_ids = None

    members = class_members(FiveItems.class_ids)
    sampler = ClassBalancedSampler(FiveItems(), num_replicas=2, rank=1)  # default ratio 1 and seed 0
    assert len(sampler) == 3  # ceil(5 * 1 / 2) per rank, as BasicSR's EnlargedSampler
    assert list(sampler) == class_balanced_indices(members, 6, seed=0)[1:6:2]  # epoch 0 before any set_epoch
    sampler.set_epoch(2)
    assert list(sampler) == class_balanced_indices(members, 6, seed=0 + 2)[1:6:2]  # seed + epoch
    assert len(ClassBalancedSampler(FiveItems(), num_replicas=2, rank=0, ratio=3)) == 8  # ceil(5 * 3 / 2)
    with pytest.raises(SRDistillError, match='no class_ids'):
        ClassBalancedSampler(NoClassIds(), num_replicas=1, rank=0)


def test_class_balanced_draws_are_uniform_within_each_class():
    members = class_members([0, 0, 0, 1, 1, 1, 1, 1])
    draws = np.array(class_balanced_indices(members, 40000, seed=3))
    counts = np.bincount(draws, minlength=8)
    per_class = [counts[:3], counts[3:]]
    assert sum(per_class[0]) == pytest.approx(20000, rel=0.03)  # classes equally often, not members
    for class_counts in per_class:
        assert class_counts.min() > 0  # every member, the last one included
        assert stats.chisquare(class_counts).pvalue > 1e-3  # uniform within the class (fixed seed)


def test_best_checkpoint_is_the_validation_argmax_and_the_earliest_on_ties():
    from srdistill_plugin.experiment.runner import best_on_validation

    assert best_on_validation({100: 30.1, 200: 30.5, 300: 30.5, 400: 30.2}) == 200
    assert best_on_validation({300: 30.5, 100: 30.1, 200: 30.5}) == 200  # order of the records does not matter
    assert best_on_validation({100: 29.0, 200: 28.0}) == 100


class _ToyDenoiser(nn.Module):
    """eps(x, t, c) = x * (c + 1): class 3 is the null class."""
    null_class = 3

    def forward(self, x, t, classes):
        return x * (classes.view(-1, 1, 1, 1).float() + 1)


def test_classifier_free_guidance_by_hand():
    from srdistill.core.synthesis import guided_noise

    net, x = _ToyDenoiser(), torch.full((3, 1, 1, 1), 2.)
    classes, t = torch.tensor([0, 1, 2]), torch.zeros(3)
    # eps_class = 2 * (c + 1) = (2, 4, 6); eps_null = 2 * 4 = 8; s = 4: 8 + 4 * (eps_class - 8) = (-16, -8, 0)
    assert guided_noise(net, x, t, classes, 4.).flatten().tolist() == [-16., -8., 0.]
    assert guided_noise(net, x, t, classes, 1.).flatten().tolist() == [2., 4., 6.]  # scale 1: the class prediction
    assert guided_noise(net, x, t, classes).flatten().tolist() == [2., 4., 6.]  # by default: no guidance


def test_guidance_scale_one_is_the_conditional_sample_and_a_model_without_null_class_is_refused():
    from srdistill.core.synthesis import guided_noise
    from srdistill_plugin.archs.diffusion_unet_arch import ClassConditionalUNet

    torch.manual_seed(0)
    net = ClassConditionalUNet(sample_size=8, num_classes=2, block_out_channels=(8, 8), attention_levels=(),
                               norm_num_groups=4, null_class=True).eval()
    assert net.null_class == 2 and net.unet.class_embedding.num_embeddings == 3
    x, t, c = torch.randn(2, 3, 8, 8), torch.tensor([5, 5]), torch.tensor([0, 1])
    with torch.no_grad():
        assert torch.allclose(guided_noise(net, x, t, c, 1.), net(x, t, c))
        eps_c, eps_n = net(x, t, c), net(x, t, torch.tensor([2, 2]))
        assert torch.allclose(guided_noise(net, x, t, c, 4.), eps_n + 4 * (eps_c - eps_n), atol=1e-5)
    plain = ClassConditionalUNet(sample_size=8, num_classes=2, block_out_channels=(8, 8), attention_levels=(),
                                 norm_num_groups=4)
    with pytest.raises(SRDistillError, match='needs a generator with an unconditional class'):
        guided_noise(plain, x, t, c, 4.)


def test_sdedit_with_an_oracle_noise_predictor_returns_the_seed_patch():
    # DDIM (eta 0) over t = 500, 0 from init noised to t = 500: a model that predicts the very noise that was added
    # gives x0 = init at each step, and the last step (alpha_prev = 1) returns it: the output is the seed patch
    from diffusers import DDIMScheduler

    from srdistill.core.synthesis import sample

    class Oracle(nn.Module):  # with a parameter: sampling must not build a graph
        def __init__(self, noise):
            super().__init__()
            self.noise, self.gain = noise, nn.Parameter(torch.ones(()))

        def forward(self, x, t, classes):
            return self.noise * self.gain

    init = torch.rand(2, 3, 4, 4)
    noise = torch.randn((2, 3, 4, 4), generator=torch.Generator().manual_seed(5))  # what sample draws first
    out = sample(Oracle(noise), DDIMScheduler(num_train_timesteps=1000), torch.tensor([0, 1]), 4, 2,
                 torch.Generator().manual_seed(5), init=init)  # strength 1 by default: the whole chain
    assert torch.allclose(out, init, atol=1e-5) and not out.requires_grad


def test_the_two_psnr_conventions_on_a_grey_level_step():
    """Grey 100 against grey 101 (BGR): Y = 16 + 219 * v / 255 is 101.88 and 102.74, so the official convention
    (Y rounded to 102 and 103) sees an error of 1 level, BasicSR's (float Y) one of 219 / 255."""
    from srdistill_plugin.metrics.y_channel import y_psnr, y_ssim

    hr, sr = np.full((32, 32, 3), 100, np.uint8), np.full((32, 32, 3), 101, np.uint8)
    assert y_psnr(sr, hr, 1, 'official') == pytest.approx(10 * np.log10(255 ** 2 / 1), abs=1e-9)
    assert y_psnr(sr, hr, 1, 'basicsr') == pytest.approx(10 * np.log10(255 ** 2 / (219 / 255) ** 2), abs=1e-4)
    assert y_ssim(hr, hr, 1) == pytest.approx(1)
    with pytest.raises(ValueError, match='PSNR convention'):
        y_psnr(sr, hr, 1, 'matlab')


def test_sdedit_timesteps_respace_the_ddim_chain_below_strength():
    """DDIM's leading spacing of T = 1000 in n = max(steps, ceil(steps / strength)) steps is every (1000 // n)-th
    timestep from 0; SDEdit keeps those below strength * T."""
    from diffusers import DDIMScheduler

    from srdistill.core.synthesis import ddim_timesteps

    scheduler = DDIMScheduler(num_train_timesteps=1000)
    assert ddim_timesteps(scheduler, 5, 0.5).tolist() == [400, 300, 200, 100, 0]  # n = 10, 500 itself excluded
    assert ddim_timesteps(scheduler, 10, 0.3).tolist() == [29 * k for k in range(10, -1, -1)]  # n = 34
    assert ddim_timesteps(scheduler, 4, 1).tolist() == [750, 500, 250, 0]  # strength 1: the whole chain
    assert ddim_timesteps(scheduler, 1, 1).tolist() == [0]
    for steps, strength in ((0, 0.5), (5, 0), (5, 1.5)):
        with pytest.raises(ValueError, match=rf'^ddim_timesteps: steps {steps} must be >= 1 and strength '
                                             rf'{strength} in \(0, 1\]$'):
            ddim_timesteps(scheduler, steps, strength)


def test_synthesis_in_a_latent_space_and_its_output_range_by_hand():
    """An oracle noise predictor returns decode(encode(seed)) through a latent model (a grid of half the side); a
    model that predicts no noise gives x0 = x_t / sqrt(alpha_bar_t) at the one step t = 0, clamped to [-1, 1] and
    mapped to [0, 1]; DDPM draws its step noise from the given generator only."""
    from diffusers import DDIMScheduler, DDPMScheduler

    from srdistill.core.synthesis import sample

    class PoolingLatent:  # a latent grid of half the side: encode averages 2x2 blocks, decode repeats them
        def __init__(self, noise):
            self.noise = noise

        def __call__(self, x, t, classes):
            return self.noise

        def encode(self, x):
            return F.avg_pool2d(x, 2)

        def decode(self, z):
            return F.interpolate(z, scale_factor=2, mode='nearest')

        def latent_shape(self, size):
            return (3, size // 2, size // 2)

    init = torch.rand(2, 3, 4, 4)
    noise = torch.randn((2, 3, 2, 2), generator=torch.Generator().manual_seed(5))
    out = sample(PoolingLatent(noise), DDIMScheduler(num_train_timesteps=1000), torch.tensor([0, 1]), 4, 2,
                 torch.Generator().manual_seed(5), init=init, strength=1.)
    assert torch.allclose(out, F.interpolate(F.avg_pool2d(init, 2), scale_factor=2, mode='nearest'), atol=1e-5)

    scheduler = DDIMScheduler(num_train_timesteps=1000, clip_sample=False)  # as for a latent model: sample clamps
    out = sample(lambda x, t, classes: torch.zeros_like(x), scheduler, torch.tensor([0, 1]), 4, 1,
                 torch.Generator().manual_seed(7))
    x0 = torch.randn((2, 3, 4, 4), generator=torch.Generator().manual_seed(7)) / scheduler.alphas_cumprod[0].sqrt()
    assert torch.allclose(out, (x0.clamp(-1, 1) + 1) / 2, atol=1e-6) and (out == 0).any() and (out == 1).any()

    # SDEdit at strength 0.5 in 2 steps noises the seed to t = 250 (timesteps 250, 0); predicting no noise then gives
    # x0 = x_250 / sqrt(alpha_bar_250) = seed + sqrt((1 - a) / a) * noise
    init = torch.rand(2, 3, 4, 4)
    out = sample(lambda x, t, classes: torch.zeros_like(x), scheduler, torch.tensor([0, 1]), 4, 2,
                 torch.Generator().manual_seed(9), init=init, strength=0.5)
    a = scheduler.alphas_cumprod[250]
    x0 = init * 2 - 1 + ((1 - a) / a).sqrt() * torch.randn((2, 3, 4, 4), generator=torch.Generator().manual_seed(9))
    assert torch.allclose(out, (x0.clamp(-1, 1) + 1) / 2, atol=1e-5)

    def ddpm(seed: int) -> torch.Tensor:
        torch.manual_seed(seed)  # the global generator must play no part
        return sample(lambda x, t, classes: torch.zeros_like(x), DDPMScheduler(num_train_timesteps=1000),
                      torch.tensor([0]), 4, 3, torch.Generator().manual_seed(3))
    assert torch.equal(ddpm(0), ddpm(1))


def test_synthesis_preview_grid_by_hand():
    """One row per class, ``per_row`` images each (an empty slot black), every image in a 2-pixel white gutter."""
    from srdistill.core.synthesis import preview_grid

    grid = preview_grid([np.full((2, 2, 3), v, np.uint8) for v in (10, 20, 30)], [0, 0, 1], per_row=2)
    expected = np.full((12, 12), 255)
    expected[2:4, 2:4], expected[2:4, 8:10], expected[8:10, 2:4], expected[8:10, 8:10] = 10, 20, 30, 0
    assert grid.shape == (12, 12, 3) and (grid == expected[:, :, None]).all()
    assert preview_grid([np.zeros((2, 2, 3), np.uint8)], [0]).shape == (6, 48, 3)  # 8 per row by default


@pytest.mark.parametrize('schedule, expected', [  # JWSoh/MZSR test.py, per released model; task_lr: config.py
    ('direct_x2', [2e-2, 1e-2, 1e-2, 1e-2, 5e-3, 5e-3, 5e-3]),
    ('multiscale', [1e-2, 1e-2, 1e-2, 5e-3, 5e-3, 5e-3, 5e-3]),
    ('bicubic_x2', [1e-2, 1e-2, 1e-2, 1e-3, 1e-3, 1e-3, 1e-3]),
    ('direct_x4', [1e-2, 5e-3, 5e-3, 5e-3, 5e-3, 1e-3, 1e-3]),
    ('task_lr', [1e-2] * 7)])
def test_mzsr_step_sizes_are_the_official_schedules(schedule, expected):
    assert zero_shot.mzsr_step_sizes(7, schedule) == expected


def test_mzsr_adaptation_defaults_to_the_direct_x2_schedule_and_times_itself(monkeypatch):
    assert zero_shot.mzsr_step_sizes(5) == [2e-2, 1e-2, 1e-2, 1e-2, 5e-3]
    torch.manual_seed(0)
    net, lr, kernel = MZSRNet(num_feat=4, num_layers=2), torch.rand(1, 3, 8, 8), torch.ones(3, 3) / 9
    readings = iter([100.0])  # a clock that reads 100 s at the first call (the start), 103.5 s at every later one
    monkeypatch.setattr(zero_shot.time, 'perf_counter', lambda: next(readings, 103.5))
    default, seconds = mzsr_adapt(net, lr, kernel, 2, steps=2)
    assert seconds == 3.5  # the adaptation's own start and end
    explicit, _ = mzsr_adapt(net, lr, kernel, 2, steps=2, step_sizes=[2e-2, 1e-2])
    assert all(torch.equal(a, b) for a, b in zip(default.parameters(), explicit.parameters()))


def test_mzsr_adaptation_refuses_a_short_schedule_and_zero_steps_return_an_untouched_copy():
    with pytest.raises(SRDistillError, match=r"^unknown adaptation schedule 'direct'; choose from \['bicubic_x2', "):
        zero_shot.mzsr_step_sizes(1, 'direct')
    net, lr = MZSRNet(num_feat=4, num_layers=2), torch.rand(1, 3, 8, 8)
    with pytest.raises(SRDistillError, match='^3 adaptation steps need 3 step sizes, got 2$'):
        mzsr_adapt(net, lr, torch.ones(3, 3) / 9, 2, steps=3, step_sizes=[1e-2, 1e-2])
    net.train()
    same, seconds = mzsr_adapt(net, lr, torch.ones(3, 3) / 9, 2, steps=0)
    assert same is not net and not same.training and net.training and seconds >= 0
    assert all(torch.equal(a, b) for a, b in zip(same.parameters(), net.parameters()))
    adapted, _ = mzsr_adapt(net, lr, torch.ones(3, 3) / 9, 2, steps=2, step_sizes=[1e-2, 0.])
    assert all(p.grad is None for p in adapted.parameters())  # no gradient left behind on the returned copy


def test_zssr_defaults_are_the_official_x2_given_kernel_conf():
    # assafshocher/ZSSR configs.py: Config, with X2_GIVEN_KERNEL_CONF's output_flip, rotation and back-projections
    official = dict(crop_size=128, lr=0.001, max_iters=3000, min_iters=256, test_every=50, check_every=60,
                    slope_range=256, change_ratio=1.5, min_lr=9e-6, leave_as_is=0.05, no_interpolate=0.45,
                    min_scale=0.5, scale_diff_sigma=0.25, shear_sigma=0.1, allow_rotation=False, kernel_shift=True,
                    back_projection_iters=2, output_flip=False, noise_std=0.0, history=[])
    assert vars(ZSSRConfig()) == official


def exact_crop_offset(father: np.ndarray, lr: np.ndarray) -> tuple[int, int] | None:
    """The integer offset at which ``father`` is a crop of ``lr`` (None if it is none)."""
    if father.shape[0] > lr.shape[0] or father.shape[1] > lr.shape[1]:
        return None
    windows = np.lib.stride_tricks.sliding_window_view(lr, father.shape)[:, :, 0]  # every crop of that size
    hits = np.argwhere(np.abs(windows - father).max(axis=(2, 3, 4)) < 1e-6)
    return (int(hits[0][0]), int(hits[0][1])) if len(hits) else None


def test_zssr_fathers_are_plain_crops_half_the_time_as_the_official_augmentation_draws_them():
    rng = np.random.default_rng(0)
    lr = rng.random((20, 24, 3)).astype(np.float32)
    cfg = ZSSRConfig(crop_size=8)
    as_is = ZSSRConfig(crop_size=8, leave_as_is=1.)
    offsets = [exact_crop_offset(zssr.zssr_father(lr, as_is, np.random.default_rng(s)), lr) for s in range(20)]
    assert None not in offsets and len(set(offsets)) > 10  # anywhere in the image, never interpolated
    # leave_as_is + no_interpolate = 0.5 of the fathers are exact crops (no rotation allowed); the rest are warped
    exact = sum(exact_crop_offset(zssr.zssr_father(lr, cfg, rng), lr) is not None for _ in range(200))
    assert stats.binomtest(exact, 200, 0.5).pvalue > 0.01, exact
    for seed in range(10):  # an LR smaller than the crop: at the corner, with a zero border
        small = zssr.zssr_father(lr[:5, :6], as_is, np.random.default_rng(seed))
        assert np.allclose(small[:5, :6], lr[:5, :6]) and not small[5:].any() and not small[:, 6:].any()
    # a plain crop is never turned or mirrored, even where turns are allowed for the other fathers
    plain = ZSSRConfig(crop_size=8, leave_as_is=1., allow_rotation=True)
    assert all(exact_crop_offset(zssr.zssr_father(lr, plain, np.random.default_rng(s)), lr) is not None
               for s in range(20))


def test_an_affine_zssr_father_by_hand():
    # no plain crops, no scale spread or shear: the father is the LR scaled by s about its centre c and shifted by
    # (sx, sy): father(x, y) = LR((x + sx - cx) / s + cx, (y + sy - cy) / s + cy), read where that is inside the LR
    cfg = ZSSRConfig(crop_size=8, leave_as_is=0., no_interpolate=0., scale_diff_sigma=0., shear_sigma=0.)
    h, w = 32, 40
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    lr = np.stack([0.01 * xx + 0.005 * yy, 0.02 * yy, 0.2 + 0 * xx], -1)  # linear: cubic interpolation is exact,
    # up to OpenCV's 1/32-pixel grid of interpolation positions (at most 0.02 / 64 / s here)
    draws = np.random.default_rng(3)
    draws.random()  # the mode
    s = draws.random() * (1 - cfg.min_scale) + cfg.min_scale
    draws.standard_normal(), draws.standard_normal(), draws.standard_normal()  # scale spread and shears: 0 here
    sx, sy = draws.random() * max(s * w - 8, 0), draws.random() * max(s * h - 8, 0)
    father = zssr.zssr_father(lr, cfg, np.random.default_rng(3))
    y, x = np.mgrid[0:8, 0:8].astype(np.float64)
    src_x, src_y = (x + sx - w / 2) / s + w / 2, (y + sy - h / 2) / s + h / 2
    inside = (src_x >= 2) & (src_x <= w - 3) & (src_y >= 2) & (src_y <= h - 3)
    expected = np.stack([0.01 * src_x + 0.005 * src_y, 0.02 * src_y, 0.2 + 0 * src_x], -1)
    assert inside.sum() >= 16 and s < 0.99
    assert np.allclose(father[inside], expected[inside], atol=2e-3)


def test_zssr_stops_below_min_lr_and_keeps_every_reconstruction_check():
    torch.manual_seed(0)
    net, lr = MZSRNet(num_feat=4, num_layers=2), torch.rand(1, 3, 12, 12)
    assert zssr.zssr_train(net, lr, torch.ones(3, 3) / 9, 2, ZSSRConfig(crop_size=8, lr=1e-6, min_lr=1e-5)) == 1
    cfg = ZSSRConfig(crop_size=8, max_iters=23, test_every=5, min_iters=1000)
    seen = []
    assert zssr.zssr_train(net, lr, torch.ones(3, 3) / 9, 2, cfg, on_test=lambda it, n: seen.append(it)) == 23
    assert seen == [it for it, _ in cfg.history] == [0, 5, 10, 15, 20]


def test_zssr_self_ensemble_of_a_symmetric_upsampler_changes_nothing():
    # with the last layer zeroed the net is a bicubic upsampler, which commutes with rotations and flips: the median
    # of the 8 views, each turned back, is the single output
    net = MZSRNet(num_feat=4, num_layers=2)
    nn.init.zeros_(net.body[-1].weight)
    lr = torch.rand(1, 3, 10, 14)
    kernel = torch.from_numpy(eval_kernel('gd2.0')[0])
    one = zssr_infer(net, lr, kernel, 2, ZSSRConfig(kernel_shift=False))
    eight = zssr_infer(net, lr, kernel, 2, ZSSRConfig(kernel_shift=False, output_flip=True))
    assert torch.allclose(one, eight, atol=1e-5)
    assert one.shape == (1, 3, 20, 28)


class ColumnRamp(nn.Module):
    """A "network" that sees orientation: x2 nearest upsampling plus 0.1 x (column / width) of its own input."""

    def forward(self, x):
        up = x.repeat_interleave(2, -2).repeat_interleave(2, -1)
        return up + 0.1 * torch.arange(up.shape[-1], dtype=x.dtype) / up.shape[-1]


def test_the_self_ensemble_is_numpys_median_of_the_official_eight_views():
    # ZSSR's final_test written out in NumPy: view k = rot90(k), mirrored (fliplr) for k >= 4; undone as
    # rot90(fliplr(out), -k); np.median over the 8 (the mean of the two middle values, not torch's lower one)
    lr = torch.rand(1, 1, 5, 7, dtype=torch.float64) * 0.5
    net, image = ColumnRamp(), lr[0, 0].numpy()
    outputs = []
    for k in range(8):
        view = np.rot90(image, k) if k < 4 else np.fliplr(np.rot90(image, k))
        out = net(torch.from_numpy(view.copy())[None, None])[0, 0].numpy()
        outputs.append(np.rot90(out, -k) if k < 4 else np.rot90(np.fliplr(out), -k))
    expected = np.median(outputs, 0)
    np.testing.assert_allclose(zero_shot.self_ensemble(net, lr)[0, 0].numpy(), expected, rtol=0, atol=1e-12)
    assert not np.allclose(expected, np.sort(outputs, 0)[3])  # the lower middle value would differ
    cfg = ZSSRConfig(kernel_shift=False, output_flip=True, back_projection_iters=0)
    np.testing.assert_allclose(zssr_infer(net, lr, torch.ones(1, 1, dtype=torch.float64), 2, cfg)[0, 0].numpy(),
                               expected, rtol=0, atol=1e-12)


def test_which_axes_each_ensemble_view_runs_backwards_by_numpy():
    # view k = np.rot90(image, k), np.fliplr of it for k >= 4: its top-left pixel is the image's last row and/or column
    image = np.arange(12).reshape(3, 4)
    for k, flags in enumerate(zero_shot.REVERSED_AXES):
        view = np.rot90(image, k) if k < 4 else np.fliplr(np.rot90(image, k))
        row, col = divmod(int(view[0, 0]), 4)
        assert flags == (row == 2, col == 3), k


class ZeroInsertion(nn.Module):
    """x2 "upsampling" that puts LR pixel (i, j) at HR (2i, 2j), zeros elsewhere: the direct grid's own inverse."""

    def forward(self, x):
        out = torch.zeros(*x.shape[:-2], 2 * x.shape[-2], 2 * x.shape[-1], dtype=x.dtype)
        out[..., ::2, ::2] = x
        return out


def test_the_direct_grid_shift_lines_every_view_up_with_the_unturned_one():
    # read backwards, an LR of HR pixels 0, 2, 4, ... holds pixels 1, 3, 5, ... of the turned HR: each turned view's
    # output lands one HR pixel off until moved back (grid_shift 1); then all 8 agree away from the last row/column
    lr = torch.rand(1, 1, 4, 5, dtype=torch.float64)
    net, single = ZeroInsertion(), ZeroInsertion()(lr)
    for k, (moved, unmoved) in enumerate(zip(zero_shot.dihedral_outputs(net, lr, grid_shift=1),
                                             zero_shot.dihedral_outputs(net, lr))):
        assert torch.equal(moved[..., :-1, :-1], single[..., :-1, :-1]), k
        assert torch.equal(unmoved[..., :-1, :-1], single[..., :-1, :-1]) == (k in (0, 7)), k  # 0, 7: no axis reversed
    ensemble = zero_shot.self_ensemble(net, lr, grid_shift=1)
    assert torch.equal(ensemble[..., :-1, :-1], single[..., :-1, :-1])
    assert not torch.equal(zero_shot.self_ensemble(net, lr)[..., :-1, :-1], single[..., :-1, :-1])


@pytest.mark.parametrize('test_every, check_every, slope_range, window, min_iters, checked', [
    (1, 10, 2, 4, 9, [19, 29, 39, 49]), (1, 10, 6, 6, 9, [19, 29, 39, 49]), (1, 10, 2, 4, 8, [9, 19, 29, 39, 49]),
    (1, 10, 2, 4, 15, [19, 39]), (5, 20, 20, 4, 0, [19, 39])])  # a slope with an error bar needs >= 4 points: 4 checks by iteration 19
def test_zssr_consults_its_plateau_test_every_check_every_iterations_once_min_iters_have_passed(
        monkeypatch, test_every, check_every, slope_range, window, min_iters, checked):
    calls = []
    monkeypatch.setattr(zssr, 'zssr_on_plateau',
                        lambda steps, errors, ratio: calls.append((steps[-1], len(steps), len(errors), ratio)) or True)
    cfg = ZSSRConfig(crop_size=8, max_iters=50 if test_every == 1 else 40, min_iters=min_iters, test_every=test_every,
                     check_every=check_every, slope_range=slope_range, change_ratio=1.7, min_lr=1e-30)
    torch.manual_seed(0)
    zssr.zssr_train(MZSRNet(num_feat=4, num_layers=2), torch.rand(1, 3, 12, 12), torch.ones(3, 3) / 9, 2, cfg)
    # checks at iterations check_every - 1, 2 check_every - 1, ...; each needs more than min_iters since the last
    # drop (or the start, iteration 0): at min_iters 9, iteration 9 is not past it, 19 is; every drop restarts the
    # count; the plateau test reads the last `window` reconstruction checks (the last at the check's iteration or
    # before it)
    assert calls == [(it - it % test_every, window, window, 1.7) for it in checked]


def test_zssr_adds_noise_of_noise_std_to_each_training_son_and_clamps_it(monkeypatch):
    def half(img: torch.Tensor, *args) -> torch.Tensor:  # every son a flat 0.5
        return torch.full((*img.shape[:2], img.shape[-2] // 2, img.shape[-1] // 2), 0.5)

    monkeypatch.setattr(zssr, 'degrade', half)
    monkeypatch.setattr(torch, 'randn_like', torch.ones_like)  # "noise" of exactly +1 std
    for noise_std, son_value in ((0.2, 0.7), (0.7, 1.0)):  # 0.5 + 0.7 is clamped to 1
        net, seen = MZSRNet(num_feat=4, num_layers=2), []
        forward = net.forward
        monkeypatch.setattr(net, 'forward', lambda x, size=None: seen.append(x) or forward(x, size))
        zssr.zssr_train(net, torch.rand(1, 3, 12, 12), torch.ones(3, 3) / 9, 2,
                             ZSSRConfig(crop_size=8, max_iters=1, noise_std=noise_std))
        assert torch.allclose(seen[0], torch.full_like(seen[0], son_value))  # the training son, noisy
        assert torch.equal(seen[1], torch.full_like(seen[1], 0.5))  # the reconstruction check: the clean son


def test_zssr_reconstruction_error_is_the_mse_of_the_clamped_lr_rebuilt_from_its_son():
    torch.manual_seed(0)
    net = MZSRNet(num_feat=4, num_layers=2)
    nn.init.constant_(net.body[-1].bias, 0.6)  # outputs above 1 where the image is bright: the clamp matters
    lr, kernel = torch.rand(1, 3, 12, 14), torch.ones(3, 3) / 9
    cfg = ZSSRConfig(crop_size=8, max_iters=5, lr=0.)  # Adam at rate 0: the net never moves (then below min_lr)
    zssr.zssr_train(net, lr, kernel, 2, cfg)
    with torch.no_grad():
        rebuilt = net(degrade(lr, zssr.zssr_kernel(kernel, 2, cfg), 2), (12, 14))
    assert (rebuilt > 1).any()
    assert cfg.history == [(0, pytest.approx(((rebuilt.clamp(0, 1) - lr) ** 2).mean().item(), rel=1e-6))]


def test_zssr_runs_on_at_exactly_min_lr_and_draws_its_fathers_with_seed_0_by_default():
    torch.manual_seed(0)
    net, lr = MZSRNet(num_feat=4, num_layers=2), torch.rand(1, 3, 12, 12)
    assert zssr.zssr_train(net, lr, torch.ones(3, 3) / 9, 2, ZSSRConfig(crop_size=8, max_iters=3, lr=1e-5,
                                                                              min_lr=1e-5)) == 3
    assert zssr.zssr_train(net, lr, torch.ones(3, 3) / 9, 2, ZSSRConfig(crop_size=8, max_iters=0)) == 0
    nets = [MZSRNet(num_feat=4, num_layers=2) for _ in range(3)]
    for other in nets[1:]:
        other.load_state_dict(nets[0].state_dict())
    cfg = ZSSRConfig(crop_size=8, max_iters=3)
    for other, seed in zip(nets, ({}, {'seed': 0}, {'seed': 1})):
        zssr.zssr_train(other, lr, torch.ones(3, 3) / 9, 2, cfg, **seed)
    same, other = ([torch.equal(a, b) for a, b in zip(nets[0].parameters(), n.parameters())] for n in nets[1:])
    assert all(same) and not all(other)


def test_an_affine_zssr_father_with_spread_and_shear_by_hand():
    # scale s, spread d, shears (a, b), no turn: father(p) = LR(c + D^-1 H^-1 (p + shift - c)) with
    # D = diag(s + d/2, s - d/2) and H = [[1, a], [b, 1]], so H^-1 = [[1, -a], [-b, 1]] / (1 - ab)
    cfg = ZSSRConfig(crop_size=8, leave_as_is=0., no_interpolate=0., min_scale=0.8, scale_diff_sigma=0.3,
                     shear_sigma=0.2)
    h, w = 32, 40
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    lin = np.stack([0.01 * xx + 0.005 * yy, 0.02 * yy, 0.2 + 0 * xx], -1)
    draws = np.random.default_rng(11)
    draws.random()  # the mode
    s = draws.random() * 0.2 + 0.8
    d = draws.standard_normal() * 0.3
    a, b = draws.standard_normal() * 0.2, draws.standard_normal() * 0.2
    sx, sy = draws.random() * max(s * w - 8, 0), draws.random() * max(s * h - 8, 0)
    father = zssr.zssr_father(lin, cfg, np.random.default_rng(11))
    y, x = np.mgrid[0:8, 0:8].astype(np.float64)
    u, v = x + sx - w / 2, y + sy - h / 2
    src_x = w / 2 + (u - a * v) / (1 - a * b) / (s + d / 2)
    src_y = h / 2 + (v - b * u) / (1 - a * b) / (s - d / 2)
    inside = (src_x >= 2) & (src_x <= w - 3) & (src_y >= 2) & (src_y <= h - 3)
    expected = np.stack([0.01 * src_x + 0.005 * src_y, 0.02 * src_y, 0.2 + 0 * src_x], -1)
    assert inside.sum() >= 16 and abs(d) > 0.05 and min(abs(a), abs(b)) > 0.05  # a real spread and shear
    assert np.allclose(father[inside], expected[inside], atol=2e-3)
    # a sharp edge overshoots under cubic interpolation: the father is clipped back to [0, 1]
    edge = np.zeros((h, w, 3), np.float32)
    edge[:, w // 2:] = 1
    fathers = np.stack([zssr.zssr_father(edge, cfg, np.random.default_rng(k)) for k in range(20)])
    assert fathers.min() == 0 and fathers.max() == 1 and ((fathers > 0) & (fathers < 1)).any()


def test_zssr_fathers_with_rotations_allowed_are_turned_and_flipped_crops_or_a_rotated_warp_by_hand():
    rng = np.random.default_rng(1)
    lr = rng.random((14, 14, 3)).astype(np.float32)
    turned = ZSSRConfig(crop_size=6, leave_as_is=0., no_interpolate=1., allow_rotation=True)
    views = [np.rot90(v, k) for v in (lr, lr[:, ::-1]) for k in range(4)]
    found = set()
    for seed in range(40):  # no interpolation: a crop of one of the 8 turns and flips of the LR
        father = zssr.zssr_father(lr, turned, np.random.default_rng(seed))
        found |= {i for i, v in enumerate(views) if exact_crop_offset(father, np.ascontiguousarray(v)) is not None}
    assert len(found) == 8  # every quarter turn, with and without the mirror
    quarters = []
    for seed in range(200):  # each quarter turn equally often
        father = zssr.zssr_father(lr, turned, np.random.default_rng(seed))
        quarters += [i % 4 for i, v in enumerate(views)
                     if exact_crop_offset(father, np.ascontiguousarray(v)) is not None][:1]
    assert stats.chisquare(np.bincount(quarters, minlength=4)).pvalue > 0.01, np.bincount(quarters)
    # an affine father at scale 1 without spread or shear, turned by theta: with c the centre, r the mirror (+-1)
    # and (sx, sy) the shift, father(p) = LR(c + diag(r, 1) R(theta)^T (p + s - c)), R = [[cos, sin], [-sin, cos]]
    cfg = ZSSRConfig(crop_size=8, leave_as_is=0., no_interpolate=0., min_scale=1., scale_diff_sigma=0., shear_sigma=0.,
                     allow_rotation=True)
    h, w = 32, 32
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    lin = np.stack([0.01 * xx + 0.005 * yy, 0.02 * yy, 0.2 + 0 * xx], -1)
    draws = np.random.default_rng(5)
    draws.random(), draws.random(), draws.standard_normal()  # the mode, the scale (1), its spread (0)
    theta = draws.random() * 2 * np.pi
    draws.standard_normal(), draws.standard_normal()  # the shears (0)
    mirror = np.sign(draws.standard_normal())
    sx, sy = draws.random() * (w - 8), draws.random() * (h - 8)
    father = zssr.zssr_father(lin, cfg, np.random.default_rng(5))
    y, x = np.mgrid[0:8, 0:8].astype(np.float64)
    u, v = x + sx - w / 2, y + sy - h / 2
    src_x = w / 2 + mirror * (np.cos(theta) * u - np.sin(theta) * v)
    src_y = h / 2 + np.sin(theta) * u + np.cos(theta) * v
    inside = (src_x >= 2) & (src_x <= w - 3) & (src_y >= 2) & (src_y <= h - 3)
    expected = np.stack([0.01 * src_x + 0.005 * src_y, 0.02 * src_y, 0.2 + 0 * src_x], -1)
    assert inside.sum() >= 16 and 0.2 < theta % (np.pi / 2) < np.pi / 2 - 0.2  # a real, not a quarter, turn
    assert np.allclose(father[inside], expected[inside], atol=2e-3)


def test_back_projection_clamps_its_output_to_the_unit_range():
    # a checkerboard SR under a 3x3 box blur, subsampled every other pixel (all of one colour): away from the
    # border every LR pixel of its degradation is 5/9; against an all-white LR the residual is 4/9, so the white
    # squares would reach 13/9 and are clamped to 1, the black ones become 4/9
    yy, xx = torch.meshgrid(torch.arange(24), torch.arange(24), indexing='ij')
    sr = ((yy + xx) % 2 == 0).float()[None, None]
    out = back_project(sr, torch.ones(1, 1, 12, 12), torch.ones(3, 3) / 9, 2)[0, 0, 8:-8, 8:-8]
    white = sr[0, 0, 8:-8, 8:-8] == 1
    assert torch.allclose(out[white], torch.ones(1)) and torch.allclose(out[~white], torch.full((1, ), 4 / 9))


def test_zssr_self_ensemble_is_the_median_of_the_eight_turned_back_outputs():
    torch.manual_seed(0)
    net = MZSRNet(num_feat=4, num_layers=2)  # random weights: not symmetric, each view gives another output
    nn.init.constant_(net.body[-1].bias, 0.3)  # and some outputs above 1, clamped before the median
    lr = torch.rand(1, 3, 10, 14)
    cfg = ZSSRConfig(kernel_shift=False, output_flip=True, back_projection_iters=0)
    views = [(quarter, mirror) for mirror in (False, True) for quarter in range(4)]
    outputs = []
    with torch.no_grad():
        for quarter, mirror in views:  # turn (then mirror), upscale, clamp, undo the mirror, then the turn
            view = torch.rot90(lr, quarter, dims=(2, 3))
            out = net(view.flip(3) if mirror else view).clamp(0, 1)
            outputs.append(torch.rot90(out.flip(3) if mirror else out, 4 - quarter, dims=(2, 3)))
    expected = torch.from_numpy(np.median(torch.stack(outputs).numpy(), 0))  # ZSSR's np.median
    assert (torch.stack(outputs).amax(0) - torch.stack(outputs).amin(0)).max() > 0.01  # the views do differ
    assert torch.allclose(zssr_infer(net, lr, torch.ones(3, 3) / 9, 2, cfg), expected, atol=1e-6)
    with torch.no_grad():  # without the self-ensemble: the one output of the LR as it is
        single = net(lr).clamp(0, 1)
    assert torch.allclose(zssr_infer(net, lr, torch.ones(3, 3) / 9, 2, ZSSRConfig(kernel_shift=False,
                                                                                   back_projection_iters=0)), single)


def scalar_mzsr_options(scale: int, meta: dict | None = None, adaptation: dict | None = None) -> dict:
    """BasicSR options of an ``MZSRModel`` on a one-layer, one-channel ``MZSRNet`` (SGD 0.1, L1)."""
    import srdistill_plugin  # noqa: F401  (registers MZSRModel and MZSRNet)

    return {'name': 'hand_mzsr', 'model_type': 'MZSRModel', 'scale': scale, 'num_gpu': 0, 'is_train': True,
            'dist': False, 'network_g': {'type': 'MZSRNet', 'num_in_ch': 1, 'num_feat': 1, 'num_layers': 1,
                                         'upscale': scale},
            'path': {'pretrain_network_g': None, 'resume_state': None},
            'train': {'optim_g': {'type': 'SGD', 'lr': 0.1}, 'pixel_opt': {'type': 'L1Loss', 'loss_weight': 1.0},
                      'scheduler': {'type': 'MultiStepLR', 'milestones': [100], 'gamma': 0.5}, 'meta': meta or {}},
            'val': {'adaptation': adaptation} if adaptation else {}}


def start_scalar_network(net: nn.Module) -> None:
    """The hand tests' start: centre tap w = 0.5, bias b = 0.1 (every other tap 0), i.e. f(x) = 1.5 x + 0.1."""
    with torch.no_grad():
        net.body[0].weight.zero_()
        net.body[0].weight[0, 0, 1, 1] = 0.5
        net.body[0].bias.fill_(0.1)


def two_scalar_tasks(first_support_gt: float = 2.) -> dict:
    """Two tasks of one 1x1 pixel each (tasks, patches, C, H, W): task 1 support 1 -> ``first_support_gt``, query
    2 -> 1; task 2 support 1 -> 0, query 1 -> 3."""
    pixels = lambda *values: torch.tensor(values).view(2, 1, 1, 1, 1)  # noqa: E731
    return {'support_lq': pixels(1., 1.), 'support_gt': pixels(first_support_gt, 0.),
            'query_lq': pixels(2., 1.), 'query_gt': pixels(1., 3.)}


def test_mzsr_model_meta_settings_typed_out():
    """The paper's meta-training defaults (inner step 1e-2, five inner steps, second order, MAML++ annealing over
    3233.3 iterations), the released code's uniform weights, and the refusals, each as one line."""
    from basicsr.models import build_model

    model = build_model(scalar_mzsr_options(2))
    assert (model.inner_lr, model.inner_steps, model.first_order) == (0.01, 5, False)
    assert model.anneal_iters == pytest.approx(0.97 * 10000 / 3)
    assert build_model(scalar_mzsr_options(2, {'loss_weights': 'uniform'})).anneal_iters == 0
    with pytest.raises(SRDistillError, match=r"^option train.meta.loss_weights: expected 'annealed' or 'uniform', "
                                             r"got 'flat'$"):
        build_model(scalar_mzsr_options(2, {'loss_weights': 'flat'}))
    opt = scalar_mzsr_options(2)
    opt['network_g']['upscale'] = 4
    with pytest.raises(SRDistillError, match=r'^option network_g.upscale \(4\) does not match scale \(2\)$'):
        build_model(opt)


def test_mzsr_model_test_adapts_as_its_options_say(monkeypatch):
    """``test()`` hands the options to the hand-checked adaptations: no steps = the start network; MZSR with the
    options' steps, schedule (default direct_x2) and step sizes; ZSSR on a fresh network without biases,
    N(0, 0.1 / fan_in) weights; unknown options and modes are one line each."""
    from basicsr.models import build_model

    from srdistill_plugin.models import mzsr_model

    torch.manual_seed(0)
    lq, gt = torch.rand(1, 1, 12, 12), torch.rand(1, 1, 24, 24)
    kernel = torch.from_numpy(eval_kernel('gd2.0', 7)[0])
    data = {'lq': lq, 'gt': gt, 'kernel': kernel[None], 'downsample': ['direct']}

    def output(adaptation: dict) -> torch.Tensor:
        model = build_model(scalar_mzsr_options(2, adaptation=adaptation))
        with torch.no_grad():
            model.net_g.body[0].weight.fill_(0.05)
        model.feed_data(data)
        model.test()
        return model.output, model.net_g

    out, net = output({'mode': 'mzsr', 'steps': 0})
    assert torch.allclose(out, net(lq))
    for adaptation, schedule, sizes in (({'mode': 'mzsr', 'steps': 2}, 'direct_x2', None),
                                        ({'mode': 'mzsr', 'steps': 2, 'schedule': 'bicubic_x2'}, 'bicubic_x2', None),
                                        ({'mode': 'mzsr', 'steps': 1, 'step_sizes': [0.3]}, 'direct_x2', [0.3])):
        out, net = output(adaptation)
        adapted, _ = zero_shot.mzsr_adapt(net, lq, kernel, 2, adaptation['steps'], 'direct', sizes, schedule)
        with torch.no_grad():
            assert torch.allclose(out, adapted(lq)) and not torch.allclose(out, net(lq))

    built = []
    real_build = mzsr_model.build_network
    monkeypatch.setattr(mzsr_model, 'build_network', lambda o: built.append(dict(o)) or real_build(o))
    output({'mode': 'zssr', 'max_iters': 2, 'min_iters': 1, 'crop_size': 8})
    assert built[-1]['bias'] is False and built[-1]['init_variance'] == 0.1 and built[-1]['num_in_ch'] == 1
    with pytest.raises(SRDistillError, match=r"^option val.adaptation: unknown ZSSR option\(s\) \['max_iter'\]; known: "):
        output({'mode': 'zssr', 'max_iter': 2})
    with pytest.raises(SRDistillError, match=r"^option val.adaptation: unknown ZSSR option\(s\) \['history'\]; "):
        output({'mode': 'zssr', 'history': []})  # filled by the run, never an option
    with pytest.raises(SRDistillError, match=r"^option val.adaptation.mode: expected 'mzsr' or 'zssr', got 'zsr'$"):
        output({'mode': 'zsr'})


def test_mzsr_model_reads_its_options_and_data_by_name():
    from basicsr.models import build_model

    model = build_model(scalar_mzsr_options(2, {'first_order': True, 'anneal_iters': 100, 'inner_lr': 0.5,
                                                'inner_steps': 3}))
    assert (model.first_order, model.anneal_iters, model.inner_lr, model.inner_steps) == (True, 100.0, 0.5, 3)
    batch = {'lq': torch.zeros(1, 1, 4, 4), 'kernel': torch.ones(1, 1, 1)}
    model.feed_data(batch)
    assert model.downsample == 'direct'  # the default degradation
    model.feed_data({**batch, 'downsample': ['bicubic']})
    assert model.downsample == 'bicubic'


def test_mzsr_model_without_adaptation_options_evaluates_the_start():
    """No ``val.adaptation`` (or one without a mode) means MZSR with 0 steps: the network as it is."""
    from basicsr.models import build_model

    lq = torch.rand(1, 1, 6, 6)
    for adaptation in (None, {'steps': 0}, {'mode': 'mzsr'}):
        model = build_model(scalar_mzsr_options(2, adaptation=adaptation))
        model.feed_data({'lq': lq, 'kernel': torch.ones(1, 1, 1)})
        model.test()
        with torch.no_grad():
            assert torch.equal(model.output, model.net_g(lq))


def test_mzsr_model_logs_the_first_and_last_step_and_keeps_an_ema_by_hand():
    """Three inner steps on the scalar network of the next test, task 1's support target now 2.5 (never reached, so
    every sign stays): task 1 (0.5, 0.1) -> (0.6, 0.2) -> (0.7, 0.3) -> (0.8, 0.4), query losses 2.4, 2.7, 3.0;
    task 2 as below plus (0.2, -0.2), query losses 1.6, 1.8, 2.0. Logged: first step (2.4 + 1.6) / 2 = 2.0, last
    (3.0 + 2.0) / 2 = 2.5. The meta-gradient is still (0.5, 0), so w = 0.45; with ``ema_decay`` 0.5 the EMA copy
    holds 0.5 * 0.5 + 0.5 * 0.45 = 0.475, and ``test()`` adapts the EMA network."""
    from basicsr.models import build_model

    opt = scalar_mzsr_options(1, {'inner_lr': 0.1, 'inner_steps': 3, 'loss_weights': 'uniform'})
    opt['train']['ema_decay'] = 0.5
    model = build_model(opt)
    start_scalar_network(model.net_g)
    start_scalar_network(model.net_g_ema)
    model.feed_data(two_scalar_tasks(first_support_gt=2.5))
    model.optimize_parameters(1)
    assert model.get_current_log()['l_query_step1'] == pytest.approx(2.0)
    assert model.get_current_log()['l_query_final'] == pytest.approx(2.5)
    assert model.net_g.body[0].weight[0, 0, 1, 1].item() == pytest.approx(0.45)
    assert model.net_g_ema.body[0].weight[0, 0, 1, 1].item() == pytest.approx(0.475)
    model.feed_data({'lq': torch.full((1, 1, 1, 1), 2.), 'kernel': torch.ones(1, 1, 1)})
    model.test()
    assert model.output.item() == pytest.approx(2 * 1.475 + 0.1)  # the EMA network, not net_g (2 * 1.45 + 0.1)


def test_mzsr_model_zssr_runs_the_hand_checked_functions_with_the_run_seed(monkeypatch):
    """ZSSR in ``test()``: a fresh network of ``network_g`` with ZSSR's settings and the options' ``network``
    overrides, trained by ``zssr_train`` with the run's ``manual_seed`` (0 without one) and read by ``zssr_infer``,
    as calling them directly on the same fresh weights does."""
    import copy

    from basicsr.models import build_model

    from srdistill_plugin.models import mzsr_model

    torch.manual_seed(0)
    lq = torch.rand(1, 1, 12, 12)
    kernel = torch.from_numpy(eval_kernel('gd2.0', 7)[0])
    fresh = {}
    real_build = mzsr_model.build_network

    def build(options):
        net = real_build(options)
        fresh.update(options=dict(options), state=copy.deepcopy(net.state_dict()))
        return net

    monkeypatch.setattr(mzsr_model, 'build_network', build)
    adaptation = {'mode': 'zssr', 'max_iters': 3, 'min_iters': 1, 'crop_size': 8, 'network': {'num_feat': 2}}
    for manual_seed in (None, 5):
        opt = scalar_mzsr_options(2, adaptation=adaptation)
        if manual_seed is not None:
            opt['manual_seed'] = manual_seed
        model = build_model(opt)
        model.feed_data({'lq': lq, 'kernel': kernel[None]})
        model.test()
        assert fresh['options']['num_feat'] == 2 and fresh['options']['bias'] is False
        net = real_build(fresh['options'])
        net.load_state_dict(fresh['state'])
        cfg = ZSSRConfig(max_iters=3, min_iters=1, crop_size=8)
        zssr_train(net, lq, kernel, 2, cfg, 'direct', seed=manual_seed or 0)
        assert torch.allclose(model.output, zssr_infer(net, lq, kernel, 2, cfg, 'direct'))


def test_mzsr_model_averages_the_meta_gradient_over_ranks(monkeypatch):
    """Two ranks that drew the same tasks must step as one process does: the summed gradient divided by the
    number of ranks (all-reduce stands in as a doubling, two ranks)."""
    from basicsr.models import build_model

    import srdistill_plugin.models.mzsr_model as mzsr_model

    weights = []
    for ranks in (1, 2):
        opt = scalar_mzsr_options(1, {'inner_lr': 0.1, 'inner_steps': 2, 'loss_weights': 'uniform'})
        model = build_model(opt)
        model.opt['dist'] = ranks == 2
        monkeypatch.setattr(mzsr_model.dist, 'all_reduce', lambda t: t.mul_(2))
        monkeypatch.setattr(mzsr_model.dist, 'get_world_size', lambda: 2)
        start_scalar_network(model.net_g)
        model.feed_data(two_scalar_tasks())
        model.optimize_parameters(1)
        weights.append(model.net_g.body[0].weight[0, 0, 1, 1].item())
    assert weights == pytest.approx([0.45, 0.45])


def test_mzsr_model_meta_step_by_hand():
    """One meta-iteration of ``MZSRModel`` on a scalar network, worked out by hand. On a 1x1 image the one-layer
    ``MZSRNet`` without upsampling is ``f(x) = x (1 + w) + b`` (w: the centre tap); under L1 every gradient is a sign
    and every Hessian zero, so each inner step moves (w, b) by -0.1 * sign(r) * (x, 1) and the meta-gradient is the
    weighted sum of the query gradients. Two inner steps, uniform weights 1/2, SGD 0.1 on the mean over two tasks.

    Task 1 (support 1 -> 2, query 2 -> 1): (0.5, 0.1) -> (0.6, 0.2) -> (0.7, 0.3); query losses 2.4, 2.7, gradient (2, 1).
    Task 2 (support 1 -> 0, query 1 -> 3): (0.5, 0.1) -> (0.4, 0.0) -> (0.3, -0.1); query losses 1.6, 1.8,
    gradient (-1, -1). Mean meta-gradient (0.5, 0): w 0.5 - 0.1 * 0.5 = 0.45, b stays 0.1."""
    from basicsr.models import build_model

    model = build_model(scalar_mzsr_options(1, {'inner_lr': 0.1, 'inner_steps': 2, 'first_order': False,
                                                'loss_weights': 'uniform'}))
    conv = model.net_g.body[0]
    start_scalar_network(model.net_g)
    model.feed_data(two_scalar_tasks())
    model.optimize_parameters(1)
    assert conv.weight[0, 0, 1, 1].item() == pytest.approx(0.45)
    assert conv.bias.item() == pytest.approx(0.1)
    assert model.get_current_log()['l_query_step1'] == pytest.approx(2.0)   # (2.4 + 1.6) / 2
    assert model.get_current_log()['l_query_final'] == pytest.approx(2.25)  # (2.7 + 1.8) / 2
