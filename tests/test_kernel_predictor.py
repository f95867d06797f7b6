"""The learned kernel estimator's geometry and post-processing, against hand-computed references."""
import math

import numpy as np
import pytest
import torch

from srdistill.core.blur_synthesis import BlurSynthesis
from srdistill.core.kernel_predictor import (DIHEDRAL, KernelPredictor, PredictorSettings, _matrix, _transform,
                                             clip_coords,
                                             coords_from_params, coords_loss, covariance, covariance_error,
                                             dihedral_estimate, estimate_from_coords, params_from_coords, turn_back)
from srdistill.core.kernels import blur, gaussian_kernel


def test_log_euclidean_coordinates_by_hand():
    """lambda = (e^2, 1): m = 1, d = 1; along x (u, v) = (1, 0), at 45 degrees (0, 1), at 90 degrees (-1, 0)."""
    assert np.allclose(coords_from_params(math.e ** 2, 1., 0.), [1., 1., 0.])
    assert np.allclose(coords_from_params(math.e ** 2, 1., math.pi / 4), [1., 0., 1.])
    assert np.allclose(coords_from_params(math.e ** 2, 1., math.pi / 2), [1., -1., 0.])
    assert np.allclose(params_from_coords([1., 0., 1.]), (math.e ** 2, 1., math.pi / 4))
    assert params_from_coords([0.5, 0., 0.])[:2] == pytest.approx((math.exp(.5), math.exp(.5)))


def test_the_coordinates_are_the_matrix_logarithm_of_the_covariance():
    params = (3.7, 1.2, 2.1)
    m, u, v = coords_from_params(*params)
    w, vecs = np.linalg.eigh(covariance(params))
    log_cov = vecs @ np.diag(np.log(w)) @ vecs.T
    assert np.allclose(log_cov, [[m + u, v], [v, m - u]])


@pytest.mark.parametrize('transform', DIHEDRAL)
def test_turn_back_undoes_what_a_flip_or_rotation_does_to_a_blurred_image(transform):
    """Blurring then transforming = transforming then blurring with the kernel the transformed image shows; that
    kernel's coordinates turned back are the original's."""
    params = (4., 1., 0.3)
    img = torch.rand(1, 1, 33, 33, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    seen = _transform(blur(img, torch.from_numpy(gaussian_kernel(15, *params)).double()), *transform)
    # the transformed image's kernel, found by hand among the candidates of the same eigenvalues
    candidates = [(4., 1., t) for t in (0.3, math.pi - 0.3, math.pi / 2 - 0.3, math.pi / 2 + 0.3)]
    errors = [float((blur(_transform(img, *transform), torch.from_numpy(gaussian_kernel(15, *c)).double())
                     - seen)[..., 7:-7, 7:-7].abs().max()) for c in candidates]
    shown = candidates[int(np.argmin(errors))]
    assert min(errors) < 1e-6
    back = turn_back(torch.tensor(coords_from_params(*shown)), *transform).numpy()
    assert np.allclose(back, coords_from_params(*params))


def test_the_dihedral_mean_of_an_equivariant_estimate_is_that_estimate():
    """A network that answers the kernel each view really shows (``A S A^T``, checked against blurring above):
    averaging its eight views, turned back, returns the truth."""
    params = (3., 1.5, 1.0)

    class Oracle(KernelPredictor):
        def estimate(self, lr):
            view = next(t for t in DIHEDRAL if torch.equal(_transform(self.image, *t), lr))
            a = _matrix(*view)
            w, vecs = np.linalg.eigh(a @ covariance(params) @ a.T)
            shown = coords_from_params(w[1], w[0], math.atan2(vecs[1, 1], vecs[0, 1]))
            return torch.tensor(shown)[None].float()

    oracle = Oracle()
    oracle.image = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    assert np.allclose(dihedral_estimate(oracle, oracle.image)[0].numpy(), coords_from_params(*params), atol=1e-6)


def test_clip_keeps_the_orientation_and_moves_eigenvalues_into_range():
    coords, clipped = clip_coords(coords_from_params(9., 0.05, 0.7), 0.2, 5.)
    assert clipped and np.allclose(params_from_coords(coords), (5., 0.2, 0.7))
    coords, clipped = clip_coords(coords_from_params(3., 1., 0.7), 0.2, 5.)
    assert not clipped and np.allclose(params_from_coords(coords), (3., 1., 0.7))


def test_shrink_is_the_log_euclidean_mean_with_the_default():
    """Half-way between variance 8 (isotropic) and the default 2: variance 4 = sqrt(8 x 2)."""
    settings = PredictorSettings(shrink=0.5, max_variance=10.)
    estimate = estimate_from_coords(coords_from_params(8., 8., 0.), settings)
    assert estimate.params[:2] == pytest.approx((4., 4.))
    assert estimate.kernel.shape == (15, 15) and estimate.kernel.sum() == pytest.approx(1., abs=1e-6)
    assert estimate_from_coords(coords_from_params(8., 8., 0.), PredictorSettings(shrink=1.)).params[:2] == \
        pytest.approx((2., 2.))


def test_loss_and_covariance_error_by_hand():
    assert float(coords_loss(torch.tensor([[1., 0., 0.]]), torch.tensor([[0., 0., 1.]]))) == pytest.approx(4.)
    assert covariance_error((2., 2., 0.), (1., 1., 0.)) == pytest.approx(1.)
    assert covariance_error((4., 1., math.pi / 2), (4., 1., 0.)) == pytest.approx(math.sqrt(18 / 17))


def test_synthesis_draws_both_families_and_degrades_to_8_bits():
    synthesis = BlurSynthesis(broad_share=0.5, noise_prob=0., jpeg_prob=0.)
    rng = np.random.default_rng(0)
    draws = [synthesis.draw_params(rng) for _ in range(400)]
    assert all(0.2 <= l2 <= l1 <= 5. and 0 <= t < math.pi for l1, l2, t in draws)
    assert sum(l2 < 1 for _, l2, _ in draws) > 50  # the broad family reaches below MZSR's lower bound 1
    hr = np.random.default_rng(1).random((40, 40, 3)).astype(np.float32)
    lr = synthesis.degrade(hr, (2., 2., 0.), rng)
    assert lr.shape == (20, 20, 3) and np.allclose(lr * 255, np.round(lr * 255), atol=1e-4)
    crop = synthesis.sharpened_crop(np.zeros((100, 60, 3), np.float32), 48, rng, centre=True)
    assert crop.shape == (48, 48, 3)


def test_a_clipped_estimate_is_logged_and_a_broken_estimator_is_one_line(tmp_path):
    from srdistill.core.errors import SRDistillError
    from srdistill.core.kernel_predictor import estimate_folder_kernels, load_predictor, save_predictor

    net = KernelPredictor(num_feat=4, dilations=(1, ))
    torch.nn.init.zeros_(net.head.weight)
    with torch.no_grad():
        net.head.bias.copy_(torch.tensor([math.log(50.), 0., 0., 0.]))  # every location says variance 50
    save_predictor(tmp_path / 'est.pth', net, PredictorSettings(), {'note': 'test'})
    net, settings, record = load_predictor(tmp_path / 'est.pth')
    assert record == {'note': 'test'} and settings == PredictorSettings()
    lines = []
    records = estimate_folder_kernels([('a', torch.rand(3, 30, 30))], tmp_path / 'k', net, settings, log=lines.append)
    assert records['a']['clipped'] and records['a']['lambda1'] == pytest.approx(5.) and len(lines) == 1
    assert 'was clipped to the trained range [0.2, 5.0]' in lines[0] and (tmp_path / 'k' / 'a.mat').is_file()
    with torch.no_grad():
        net.head.bias.fill_(float('nan'))
    with pytest.raises(SRDistillError, match='not finite'):
        estimate_folder_kernels([('b', torch.rand(3, 30, 30))], tmp_path / 'k', net, settings)
    (tmp_path / 'cut.pth').write_bytes((tmp_path / 'est.pth').read_bytes()[:100])
    with pytest.raises(SRDistillError, match='not a kernel-estimator file'):
        load_predictor(tmp_path / 'cut.pth')


def test_noise_then_8_bits_then_jpeg():
    """Noise of sigma 0 and no JPEG: only the rounding; JPEG changes a noisy image but keeps its mean level."""
    from srdistill.core.blur_synthesis import noisy_jpeg

    img = np.full((16, 16, 3), 100.4 / 255, np.float32)
    assert np.array_equal(noisy_jpeg(img, np.random.default_rng(0)) * 255, np.full((16, 16, 3), 100.))
    noisy = noisy_jpeg(img, np.random.default_rng(0), noise_sigma=2.) * 255
    assert 1.5 < noisy.std() < 2.5 and abs(noisy.mean() - 100.4) < 0.3
    jpeg = noisy_jpeg(img, np.random.default_rng(0), noise_sigma=2., jpeg_quality=75) * 255
    assert not np.array_equal(jpeg, noisy) and abs(jpeg.mean() - 100.4) < 0.5


def test_the_shrinkage_choice_by_hand():
    """Two pairs: shrink 0 and 0.5 tie on the mean (30.1), the smaller wins; default (shrink 1) 29.9, true 30.3: the
    chosen estimate closes (30.1 - 29.9) / (30.3 - 29.9) = 50 % of the gap and beats the default on one pair of two."""
    from srdistill_plugin.zero_shot.estimator_choice import choose_shrink, gap_closed, paired_share

    rows = [{'mzsr_shrink0': 30.4, 'mzsr_shrink0.5': 30.2, 'mzsr_shrink1': 29.8, 'mzsr_true': 30.5},
            {'mzsr_shrink0': 29.8, 'mzsr_shrink0.5': 30.0, 'mzsr_shrink1': 30.0, 'mzsr_true': 30.1}]
    shrink, means = choose_shrink(rows, (0., 0.5, 1.))
    assert shrink == 0. and means['mzsr_shrink1'] == pytest.approx(29.9)
    assert gap_closed(means, shrink) == pytest.approx(0.5) and paired_share(rows, shrink) == 0.5
    assert gap_closed({**means, 'mzsr_true': 29.92}, shrink) is None  # a gap under 0.05 dB


@pytest.mark.parametrize('theta, expected', [(math.pi / 4, [[30., 0.], [0., 4.]]),  # the diagonal onto the x axis
                                             (0., [[17., -13.], [-13., 17.]])])  # R(-45) diag(30, 4) R(-45)^T
def test_turning_by_45_degrees_moves_a_kernels_covariance_by_hand(theta, expected):
    """A wide Gaussian drawn as an image, turned: its second moments are the covariance turned by -45 degrees, so
    the original's diagonal coordinate v becomes the turned image's u. The turned square is inscribed in the input's."""
    from srdistill.core.kernel_predictor import turn_45
    from srdistill.core.kernels import moment_covariance

    img = torch.from_numpy(gaussian_kernel(61, 30., 4., theta)).double()[None, None]
    turned = turn_45(torch.nn.functional.pad(img, (10, 10)))  # a wide LR: its central square is turned
    assert turned.shape[-2:] == (43, 43)  # int(61 / sqrt(2))
    assert np.allclose(moment_covariance(turned[0, 0].numpy()), expected, atol=0.15)
    assert coords_from_params(30., 4., theta)[2] == pytest.approx(coords_from_params(30., 4., theta - math.pi / 4)[1])


def test_the_diagonal_gain_is_the_least_squares_fit_through_zero():
    """u = (1, 2), v = (2, 5): g = (1 * 2 + 2 * 5) / (1 + 4) = 2.4."""
    from srdistill.core.kernel_predictor import fit_diagonal_gain

    assert fit_diagonal_gain(np.array([1., 2.]), np.array([2., 5.])) == pytest.approx(2.4)


def test_the_diagonal_read_out_replaces_only_v_and_its_gain_is_saved(tmp_path):
    """With a gain, v is the gain times the u that the dihedral estimate finds on the turned LR; m and u are the
    plain dihedral estimate's. A file written before the gain existed loads with gain 0 (the network's own v)."""
    from srdistill.core.kernel_predictor import load_predictor, raw_coords, save_predictor, turn_45

    net = KernelPredictor(num_feat=4, dilations=(1, 2))
    lr = torch.rand(1, 3, 40, 52, generator=torch.Generator().manual_seed(1))
    plain, on_turned = dihedral_estimate(net, lr)[0].numpy(), dihedral_estimate(net, turn_45(lr))[0].numpy()
    assert np.allclose(raw_coords(net, lr, 0.), plain)
    assert np.allclose(raw_coords(net, lr, 1.5), [plain[0], plain[1], 1.5 * on_turned[1]])
    save_predictor(tmp_path / 'est.pth', net, PredictorSettings(diagonal_gain=1.5), {})
    assert load_predictor(tmp_path / 'est.pth')[1].diagonal_gain == 1.5
    saved = torch.load(tmp_path / 'est.pth', weights_only=True)
    del saved['settings']['diagonal_gain']
    torch.save(saved, tmp_path / 'old.pth')
    assert load_predictor(tmp_path / 'old.pth')[1] == PredictorSettings()
