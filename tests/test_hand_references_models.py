"""Hand-computed references for the BasicSR models of kernel estimation and diffusion fine-tuning: the training step
against a hand-written loss and SGD update, the validation figures worked out by hand, and the diffusion objective
(noising, label dropout, timesteps, the weighted terms) against its formulas with the random draws taken again from a
twin seed. The networks are tiny or probes, so every expected value is written out here."""
import copy
import logging
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from basicsr.models import build_model
from basicsr.utils.registry import ARCH_REGISTRY
from torch import nn

import srdistill_plugin  # noqa: F401  (registers the models and archs)
from srdistill.core.diffusion_losses import embed, sobel_gradients
from srdistill.core.errors import SRDistillError
from srdistill.core.kernel_predictor import KernelPredictor, coords_from_params

SCHEDULER = {'type': 'MultiStepLR', 'milestones': [100], 'gamma': 0.5}


class ProbeDenoiser(nn.Module):
    """``eps = w * x_t`` (w starts at 0.5); records what it was called with."""

    def __init__(self, num_classes: int = 3, null_class: bool = False):
        super().__init__()
        self.num_classes, self.null_class = num_classes, num_classes if null_class else None
        self.w = nn.Parameter(torch.tensor(0.5))
        self.calls = []

    def forward(self, x, t, labels):
        self.calls.append((x.detach().clone(), t.clone(), labels.clone()))
        return self.w * x


if 'ProbeDenoiser' not in ARCH_REGISTRY:
    ARCH_REGISTRY.register(ProbeDenoiser)


def diffusion_options(train_diffusion: dict, **train) -> dict:
    return {'name': 'hand_diffusion', 'model_type': 'DiffusionDistillModel', 'num_gpu': 0, 'is_train': True,
            'dist': False, 'network_g': {'type': 'ProbeDenoiser', 'num_classes': 3, 'null_class': True},
            'diffusion': {'num_train_timesteps': 10}, 'path': {'pretrain_network_g': None, 'resume_state': None},
            'train': {'optim_g': {'type': 'SGD', 'lr': 0.1}, 'scheduler': SCHEDULER, 'diffusion': train_diffusion,
                      **train}}


def cosine_alpha_bar(steps: int) -> torch.Tensor:
    """The squared-cosine schedule written out: abar(s) = cos^2((s + 0.008) / 1.008 pi/2), beta_i = min(1 -
    abar((i+1)/T) / abar(i/T), 0.999), alpha_bar = cumprod(1 - beta)."""
    abar = lambda s: math.cos((s + 0.008) / 1.008 * math.pi / 2) ** 2  # noqa: E731
    betas = [min(1 - abar((i + 1) / steps) / abar(i / steps), 0.999) for i in range(steps)]
    return torch.tensor(np.cumprod([1 - b for b in betas]), dtype=torch.float32)


def twin_draws(seed: int, x0: torch.Tensor, dropout: float, max_t: int):
    """The draws of one ``losses()`` call, in its order (label dropout if on, noise, timesteps), and what they make:
    ``(drop, noise, t, alpha_bar (N, 1, 1, 1), x_t = sqrt(a) x0 + sqrt(1 - a) noise)`` under 10 cosine steps."""
    torch.manual_seed(seed)
    drop = torch.rand(len(x0)) < dropout if dropout else torch.zeros(len(x0), dtype=torch.bool)
    noise = torch.randn_like(x0)
    t = torch.randint(0, max_t, (len(x0), ))
    a = cosine_alpha_bar(10)[t].view(-1, 1, 1, 1)
    return drop, noise, t, a, a.sqrt() * x0 + (1 - a).sqrt() * noise


def batch():
    torch.manual_seed(0)
    return {'gt': torch.rand(4, 3, 8, 8), 'class_id': torch.tensor([0, 1, 2, 1])}


def test_diffusion_objective_noising_dropout_and_sharpness_term_by_hand():
    model = build_model(diffusion_options({'max_timestep': 5, 'lambda_sr': 2.0}, class_dropout_prob=0.5))
    data = batch()
    model.feed_data(data)
    torch.manual_seed(7)
    losses, total = model.losses()
    x0 = data['gt'] * 2 - 1
    drop, noise, t, a, x_t = twin_draws(7, x0, 0.5, 5)
    seen_x, seen_t, seen_labels = model.net_g.calls[-1]
    assert torch.equal(seen_t, t) and (t < 5).all()
    assert torch.equal(seen_labels, torch.where(drop, torch.tensor(3), data['class_id'])) and drop.any()
    assert torch.allclose(seen_x, x_t, atol=1e-5)
    eps = 0.5 * x_t
    assert list(losses) == ['l_eps', 'l_sr']
    assert losses['l_eps'].item() == pytest.approx(((eps - noise) ** 2).mean().item(), rel=1e-5)
    x0_pred = ((x_t - (1 - a).sqrt() * eps) / a.sqrt()).clamp(-1, 1)
    l_sr = (a * (sobel_gradients(x0_pred) - sobel_gradients(x0)).abs()).mean()
    assert losses['l_sr'].item() == pytest.approx(l_sr.item(), rel=1e-4)
    assert total.item() == pytest.approx(losses['l_eps'].item() + 2 * l_sr.item(), rel=1e-5)


def test_diffusion_representativeness_and_diversity_by_hand():
    # first call: the real memory holds this batch's embeddings of x0 (pushed first), the generated one is empty:
    # rep = mean_i (1 - min over class c_i's real embeddings of <real, e_i>), div = 0; second call: div = mean_i max
    # over the first call's generated embeddings of class c_i of <gen, e_i>
    model = build_model(diffusion_options({'lambda_rep': 1.0, 'lambda_div': 0.5}))
    data = batch()
    model.feed_data(data)
    x0, classes = data['gt'] * 2 - 1, data['class_id']
    emb_of = []
    for seed in (1, 2):
        torch.manual_seed(seed)
        losses, total = model.losses()
        _, noise, t, a, x_t = twin_draws(seed, x0, 0., 10)
        emb_of.append(embed(((x_t - (1 - a).sqrt() * 0.5 * x_t) / a.sqrt()).clamp(-1, 1)))
    real = embed(x0)
    members = {c: [i for i in range(4) if classes[i] == c] for c in range(3)}
    # the real memory after two pushes of the same batch: each member twice (newest first)
    rep = np.mean([1 - min(float(real[j] @ emb_of[1][i]) for j in members[int(classes[i])]) for i in range(4)])
    div = np.mean([max(float(emb_of[0][j] @ emb_of[1][i]) for j in members[int(classes[i])]) for i in range(4)])
    assert losses['l_rep'].item() == pytest.approx(rep, abs=1e-5)
    assert losses['l_div'].item() == pytest.approx(div, abs=1e-5)
    assert total.item() == pytest.approx(losses['l_eps'].item() + rep + 0.5 * div, abs=1e-5)


def test_diffusion_training_step_and_ema_by_hand():
    # total = mean((w x_t - noise)^2) at w = 0.5: d/dw = mean(2 (w x_t - noise) x_t); SGD 0.1; EMA 0.9 of (0.5, w')
    model = build_model(diffusion_options({}, ema_decay=0.9))
    data = batch()
    model.feed_data(data)
    x0 = data['gt'] * 2 - 1
    torch.manual_seed(3)
    model.optimize_parameters(1)
    _, noise, t, a, x_t = twin_draws(3, x0, 0., 10)
    grad = (2 * (0.5 * x_t - noise) * x_t).mean().item()
    assert model.net_g.w.item() == pytest.approx(0.5 - 0.1 * grad, rel=1e-5)
    assert model.net_g_ema.w.item() == pytest.approx(0.9 * 0.5 + 0.1 * (0.5 - 0.1 * grad), rel=1e-5)
    assert model.log_dict['l_eps'] == pytest.approx(((0.5 * x_t - noise) ** 2).mean().item(), rel=1e-5)


def test_diffusion_options_refused_in_one_line():
    with pytest.raises(SRDistillError, match=r'^option train.class_dropout_prob: expected a probability in \[0, 1\), '
                                             r'got 1.0$'):
        build_model(diffusion_options({}, class_dropout_prob=1.0))
    opt = diffusion_options({}, class_dropout_prob=0.1)
    opt['network_g']['null_class'] = False
    with pytest.raises(SRDistillError, match=r'^option train.class_dropout_prob: the network has no null class to '
                                             r'drop labels to \(set network_g.null_class: true\)$'):
        build_model(opt)
    assert build_model(diffusion_options({})).max_timestep == 10


class LatentProbe(ProbeDenoiser):
    """A latent model probe: ``encode`` halves the side by 2 x 2 means and doubles the values; ``decode`` repeats
    pixels and triples them (so a decoded prediction can leave [-1, 1])."""

    def encode(self, x):
        return 2 * torch.nn.functional.avg_pool2d(x, 2)

    def decode(self, z):
        return 3 * z.repeat_interleave(2, -1).repeat_interleave(2, -2)


if 'LatentProbe' not in ARCH_REGISTRY:
    ARCH_REGISTRY.register(LatentProbe)


def test_diffusion_schedule_options_typed_out():
    from srdistill_plugin.models.diffusion_distill_model import schedule_options

    assert schedule_options({}) == {'num_train_timesteps': 1000, 'beta_schedule': 'squaredcos_cap_v2'}
    sd = {'num_train_timesteps': '500', 'beta_schedule': 'scaled_linear', 'beta_start': '0.00085', 'beta_end': 0.012,
          'other': 1}
    assert schedule_options(sd) == {'num_train_timesteps': 500, 'beta_schedule': 'scaled_linear',
                                    'beta_start': 0.00085, 'beta_end': 0.012}


def test_diffusion_latent_model_noises_latents_and_reads_sharpness_in_pixels():
    # x0 = encode(gt); the sharpness term decodes the predicted latent and clamps it to [-1, 1] before Sobel
    opt = diffusion_options({'lambda_sr': 1.0})
    opt['network_g']['type'] = 'LatentProbe'
    model = build_model(opt)
    data = batch()
    model.feed_data(data)
    torch.manual_seed(4)
    losses, _ = model.losses()
    gt = data['gt'] * 2 - 1
    x0 = 2 * torch.nn.functional.avg_pool2d(gt, 2)
    _, noise, t, a, x_t = twin_draws(4, x0, 0., 10)
    assert model.net_g.calls[-1][0].shape == (4, 3, 4, 4) and torch.allclose(model.net_g.calls[-1][0], x_t, atol=1e-5)
    x0_pred = (x_t - (1 - a).sqrt() * 0.5 * x_t) / a.sqrt()  # not clamped: a latent
    image = (3 * x0_pred.repeat_interleave(2, -1).repeat_interleave(2, -2)).clamp(-1, 1)
    expected = (a * (sobel_gradients(image) - sobel_gradients(gt)).abs()).mean()
    assert losses['l_sr'].item() == pytest.approx(expected.item(), rel=1e-4)


def test_diffusion_one_minimax_term_alone_and_the_memory_size():
    # lambda_rep alone still computes both terms (only one weighted); memories hold memory_size per class (64 default)
    model = build_model(diffusion_options({'lambda_rep': 1.0}))
    model.feed_data(batch())
    losses, _ = model.losses()
    assert list(losses) == ['l_eps', 'l_rep', 'l_div']
    assert model.real_memory.size == 64 and model.generated_memory.size == 64
    model = build_model(diffusion_options({'lambda_div': 1.0, 'memory_size': 1}))
    assert model.real_memory.size == 1 and model.generated_memory.size == 1
    model.feed_data(batch())
    model.losses()
    model.losses()
    assert model.real_memory.get(1).shape[0] == 1  # class 1 has two members; one kept


def test_diffusion_weights_ema_and_checkpoints_as_basicsr(tmp_path):
    # no ema_decay: no EMA network, and a step works; with one, the EMA starts as a copy of the network, or from the
    # checkpoint's params_ema (params into net_g); save() writes both under net_g_<iter>.pth
    model = build_model(diffusion_options({}))
    assert not hasattr(model, 'net_g_ema')
    model.feed_data(batch())
    model.optimize_parameters(1)
    model = build_model(diffusion_options({}, ema_decay=0.5))
    assert model.net_g_ema.w.item() == 0.5
    torch.save({'params': {'w': torch.tensor(0.25)}, 'params_ema': {'w': torch.tensor(0.75)}}, tmp_path / 'w.pth')
    opt = diffusion_options({}, ema_decay=0.5)
    opt['path'].update(pretrain_network_g=str(tmp_path / 'w.pth'))
    model = build_model(opt)
    assert (model.net_g.w.item(), model.net_g_ema.w.item()) == (0.25, 0.75)
    opt['path']['param_key_g'] = 'params_ema'
    assert build_model(opt).net_g.w.item() == 0.75
    torch.save({'params': {'w': torch.tensor(0.25), 'extra': torch.zeros(1)}}, tmp_path / 'extra.pth')
    opt = diffusion_options({})
    opt['path'].update(pretrain_network_g=str(tmp_path / 'extra.pth'))
    with pytest.raises(RuntimeError, match='Unexpected key'):
        build_model(opt)
    opt['path']['strict_load_g'] = False
    assert build_model(opt).net_g.w.item() == 0.25
    for ema, keys in ((0.5, {'params', 'params_ema'}), (0, {'params'})):
        opt = diffusion_options({}, ema_decay=ema)
        opt['path'].update(models=str(tmp_path / f'models{ema}'), training_states=str(tmp_path / f'states{ema}'))
        (tmp_path / f'models{ema}').mkdir()
        (tmp_path / f'states{ema}').mkdir()
        build_model(opt).save(0, 3)
        assert set(torch.load(tmp_path / f'models{ema}' / 'net_g_3.pth')) == keys


# --- the kernel estimator's model -----------------------------------------------------------------------------------

def predictor_options() -> dict:
    return {'name': 'hand_kernel', 'model_type': 'KernelPredictorModel', 'num_gpu': 0, 'is_train': True,
            'dist': False, 'network_g': {'type': 'KernelPredictor', 'num_feat': 4, 'dilations': [1, 2]},
            'path': {'pretrain_network_g': None, 'resume_state': None},
            'train': {'optim_g': {'type': 'SGD', 'lr': 0.1}, 'scheduler': SCHEDULER}, 'val': {}}


def test_kernel_model_training_step_by_hand():
    # loss = mean over images of 2 ||estimate - target||^2; one SGD step of 0.1 on it, as a hand-written loop does
    torch.manual_seed(0)
    model = build_model(predictor_options())
    reference = copy.deepcopy(model.net_g)
    lq, target = torch.rand(2, 3, 12, 12), torch.tensor([[0.5, 0.2, -0.1], [1.0, 0., 0.3]])
    model.feed_data({'lq': lq, 'kernel_coords': target})
    model.optimize_parameters(1)
    loss = (2 * ((reference.estimate(lq) - target) ** 2).sum(1)).mean()
    loss.backward()
    assert model.log_dict['l_coords'] == pytest.approx(loss.item(), rel=1e-5)
    for (name, p), q in zip(model.net_g.named_parameters(), reference.parameters()):
        assert torch.allclose(p, q - 0.1 * q.grad, atol=1e-6), name


class Isotropic(KernelPredictor):
    """Reads one isotropic variance in every direction, from every view."""

    def __init__(self, variance: float):
        super().__init__(num_feat=4, dilations=(1, ))
        self.variance = variance

    def estimate(self, lr):
        return torch.tensor([[math.log(self.variance), 0., 0.]]).expand(len(lr), 3)


def test_kernel_model_validation_figures_by_hand():
    # estimate (3, 3, 0) against truths (3, 3, 0) and (2, 2, 0); default (2, 2, 0):
    # error 0 and ||diag(1, 1)|| / ||diag(2, 2)|| = 0.5 -> 0.25; the default's ||diag(1, 1)|| / ||diag(3, 3)|| = 1/3
    # and 0 -> 1/6; closer than the default: yes, no -> 0.5; log-Euclidean: 0 and 2 (ln 3 - ln 2)^2 -> (ln 1.5)^2
    model = build_model(predictor_options())
    model.net_g = Isotropic(3.)
    truths = torch.tensor([[3., 3., 0.], [2., 2., 0.]])
    log = []
    model.nondist_validation(_Loader([{'lq': torch.zeros(1, 3, 8, 8), 'kernel_params': torch.tensor([[2.5, 2.5, 0.]]),
                                       'kernel_coords': torch.zeros(1, 3)}]), 50, _TbLogger(log), False)
    # truth (2.5, 2.5): both errors ||0.5 I|| / ||2.5 I|| = 0.2, so the estimate is not closer than the default
    assert model.metric_results['cov_error'] == pytest.approx(0.2, abs=1e-6)
    assert model.metric_results['default_cov_error'] == pytest.approx(0.2, abs=1e-6)
    assert model.metric_results['closer_than_default'] == 0.
    assert [tag for tag, _, _ in log] == [f'metrics/hand/{m}' for m in ('cov_error', 'default_cov_error',
                                                                        'closer_than_default', 'log_euclidean')]
    assert all(it == 50 for _, _, it in log) and log[0][1] == pytest.approx(0.2, abs=1e-6)
    model = build_model(predictor_options())
    model.net_g = Isotropic(3.)
    data = {'lq': torch.zeros(2, 3, 8, 8), 'kernel_params': truths,
            'kernel_coords': torch.from_numpy(np.stack([coords_from_params(*p) for p in truths.tolist()])).float()}
    model.nondist_validation(_Loader([data]), 100, None, False)
    values = model.metric_results
    assert values['cov_error'] == pytest.approx(0.25, abs=1e-6)
    assert values['default_cov_error'] == pytest.approx(1 / 6, abs=1e-6)
    assert values['closer_than_default'] == pytest.approx(0.5)
    assert values['log_euclidean'] == pytest.approx(math.log(1.5) ** 2, rel=1e-5)
    best = model.best_metric_results['hand']
    assert best['cov_error'] == {'better': 'lower', 'val': pytest.approx(0.25, abs=1e-6), 'iter': 100}
    assert best['closer_than_default']['iter'] == 100
    # a later, worse validation keeps the best (variance 4: errors 1/3 and 1 -> 2/3); a given default kernel is read
    # ((3, 3, 0): 0 and 0.5 -> 0.25)
    model.net_g = Isotropic(4.)
    model.opt['val']['default_kernel'] = [3., 3., 0.]
    model.nondist_validation(_Loader([data]), 200, None, False)
    assert model.metric_results['default_cov_error'] == pytest.approx(0.25, abs=1e-6)
    assert model.metric_results['cov_error'] == pytest.approx(2 / 3, abs=1e-6)
    assert model.best_metric_results['hand']['cov_error']['iter'] == 100
    assert model.best_metric_results['hand']['default_cov_error']['val'] == pytest.approx(1 / 6, abs=1e-6)


class _Loader(list):
    """A list of batches with the ``dataset.opt['name']`` a BasicSR dataloader has."""
    dataset = SimpleNamespace(opt={'name': 'hand'})


class _TbLogger:
    """Records ``add_scalar`` calls as (tag, value, iteration)."""

    def __init__(self, calls: list):
        self.calls = calls

    def add_scalar(self, tag, value, it):
        self.calls.append((tag, value, it))


def test_kernel_model_logs_its_validation_like_basicsr(caplog):
    # one line per metric under 'Validation <name>', each with its best and the iteration of the best
    model = build_model(predictor_options())
    model.net_g = Isotropic(3.)
    data = {'lq': torch.zeros(1, 3, 8, 8), 'kernel_params': torch.tensor([[3., 3., 0.]]),
            'kernel_coords': torch.tensor([[math.log(3.), 0., 0.]])}
    logger = logging.getLogger('basicsr')  # BasicSR's logger does not propagate: listen to it directly
    logger.addHandler(caplog.handler)
    try:
        with caplog.at_level('INFO', logger='basicsr'):
            model.nondist_validation(_Loader([data]), 7, None, False)
    finally:
        logger.removeHandler(caplog.handler)
    message = next(r.getMessage() for r in caplog.records if r.getMessage().startswith('Validation hand'))
    assert message.splitlines() == ['Validation hand', '\t # cov_error: 0.0000\tBest: 0.0000 @ 7 iter',
                                    '\t # default_cov_error: 0.3333\tBest: 0.3333 @ 7 iter',
                                    '\t # closer_than_default: 1.0000\tBest: 1.0000 @ 7 iter',
                                    '\t # log_euclidean: 0.0000\tBest: 0.0000 @ 7 iter']
    # the distributed path validates on rank 0 only
    model.opt['rank'] = 1
    model.metric_results = None
    model.dist_validation(_Loader([data]), 8, None, False)
    assert model.metric_results is None
    model.opt['rank'] = 0
    model.dist_validation(_Loader([data]), 8, None, False)
    assert model.metric_results['cov_error'] == pytest.approx(0., abs=1e-6)


def test_kernel_model_loads_and_saves_its_weights(tmp_path):
    # pretrain_network_g with param_key_g and strict_load_g as BasicSR reads them; save() writes net_g_<iter>.pth
    torch.manual_seed(1)
    source = KernelPredictor(num_feat=4, dilations=(1, 2))
    other = KernelPredictor(num_feat=4, dilations=(1, 2))
    torch.save({'params': other.state_dict(), 'params_ema': source.state_dict()}, tmp_path / 'w.pth')
    opt = predictor_options()
    opt['path'].update(pretrain_network_g=str(tmp_path / 'w.pth'), param_key_g='params_ema')
    model = build_model(opt)
    assert all(torch.equal(a, b) for a, b in zip(model.net_g.state_dict().values(), source.state_dict().values()))
    opt['path'].pop('param_key_g')
    model = build_model(opt)  # default key: params
    assert all(torch.equal(a, b) for a, b in zip(model.net_g.state_dict().values(), other.state_dict().values()))
    extra = {**other.state_dict(), 'head.extra': torch.zeros(1)}
    torch.save({'params': extra}, tmp_path / 'extra.pth')
    opt['path']['pretrain_network_g'] = str(tmp_path / 'extra.pth')
    with pytest.raises(RuntimeError, match='Unexpected key'):
        build_model(opt)  # strict by default
    opt['path']['strict_load_g'] = False
    build_model(opt)
    opt = predictor_options()
    opt['path'].update(models=str(tmp_path / 'models'), training_states=str(tmp_path / 'states'))
    (tmp_path / 'models').mkdir()
    (tmp_path / 'states').mkdir()
    model = build_model(opt)
    model.save(0, 5)
    assert (tmp_path / 'models' / 'net_g_5.pth').is_file() and (tmp_path / 'states' / '5.state').is_file()


class DitProbe(ProbeDenoiser):
    """Stands for a DiT, whose label embedding drops labels itself."""
    is_dit = True


if 'DitProbe' not in ARCH_REGISTRY:
    ARCH_REGISTRY.register(DitProbe)


def test_diffusion_leaves_label_dropout_to_a_dit():
    opt = diffusion_options({}, class_dropout_prob=0.5)
    opt['network_g']['type'] = 'DitProbe'
    model = build_model(opt)
    data = batch()
    model.feed_data(data)
    torch.manual_seed(7)
    model.losses()
    assert torch.equal(model.net_g.calls[-1][2], data['class_id'])


class RandomProbe(ProbeDenoiser):
    """A probe whose weight starts at a random value (two builds differ)."""

    def __init__(self, num_classes: int = 3, null_class: bool = False):
        super().__init__(num_classes, null_class)
        self.w.data = torch.rand(())


if 'RandomProbe' not in ARCH_REGISTRY:
    ARCH_REGISTRY.register(RandomProbe)


def test_diffusion_ema_starts_as_the_network_and_loads_strictly(tmp_path):
    opt = diffusion_options({}, ema_decay=0.9)
    opt['network_g']['type'] = 'RandomProbe'
    model = build_model(opt)
    assert model.net_g_ema.w.item() == model.net_g.w.item()
    # the EMA weights are read as strictly as the network's: an unexpected key in params_ema alone is refused,
    # unless strict_load_g is false
    torch.save({'params': {'w': torch.tensor(0.25)}, 'params_ema': {'w': torch.tensor(0.75), 'extra': torch.zeros(1)}},
               tmp_path / 'w.pth')
    opt = diffusion_options({}, ema_decay=0.9)
    opt['path'].update(pretrain_network_g=str(tmp_path / 'w.pth'))
    with pytest.raises(RuntimeError, match='Unexpected key'):
        build_model(opt)
    opt['path']['strict_load_g'] = False
    assert build_model(opt).net_g_ema.w.item() == 0.75
