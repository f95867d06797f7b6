"""Hand-computed references for kernel estimation and the zero-shot building blocks: the learned estimator's
log-Euclidean algebra, its flips/rotations and post-processing, KernelGAN's fixed parts, MATLAB bicubic resizing,
the MZSR network, the official PSNR and the zero-shot inputs. Every expected value is written out here (worked in
the comments) or measured independently (second moments, scipy's correlation), never produced by the function under
test."""
import dataclasses
import json
import math
import re

import numpy as np
import pytest
import torch
from scipy import signal

from srdistill.core import kernel_estimation as ke
from srdistill.core.errors import SRDistillError
from srdistill.core.kernel_estimation import (KernelGANConfig, LinearDownscaler, PatchDiscriminator, TermWeights,
                                              _crop_sampler, _edge_map, bicubic_half_kernel, bicubic_prior_loss, boundary_mask,
                                              center_kernel, kernel_psnr, kernel_terms, postprocess_kernel,
                                              x4_from_x2, zeroize_negligible)
from srdistill.core.kernel_predictor import (DIHEDRAL, VIEWS, KernelPredictor, PredictorSettings, _matrix, _transform,
                                             clip_coords, coords_from_params, coords_loss, covariance, covariance_error,
                                             dihedral_estimate, estimate_from_coords, estimate_folder_kernels,
                                             fit_diagonal_gain, load_predictor, params_from_coords, predict_kernel,
                                             raw_coords, save_predictor, turn_45, turn_back)
from srdistill.core.kernels import gaussian_kernel
from srdistill.core.matlab_resize import matlab_resize
from srdistill.core.mzsr_net import MZSRNet
from srdistill.core.official_psnr import psnr_y8, y8

E = math.e
# Keys' cubic (a = -0.5) at the distances a x2 resize meets: 1.5|t|^3 - 2.5|t|^2 + 1 for |t| <= 1,
# -0.5|t|^3 + 2.5|t|^2 - 4|t| + 2 for 1 < |t| <= 2
CUBIC = {0.25: 0.8671875, 0.75: 0.2265625, 1.25: -0.0703125, 1.75: -0.0234375}


def moment_coords(kernel: np.ndarray) -> np.ndarray:
    """(m, u, v) of a kernel image measured from its second moments (x = column, y = row) through numpy's eigh."""
    ys, xs = np.mgrid[:kernel.shape[0], :kernel.shape[1]].astype(np.float64)
    k = kernel / kernel.sum()
    mx, my = (k * xs).sum(), (k * ys).sum()
    cov = np.array([[(k * (xs - mx) ** 2).sum(), (k * (xs - mx) * (ys - my)).sum()],
                    [(k * (xs - mx) * (ys - my)).sum(), (k * (ys - my) ** 2).sum()]])
    w, vecs = np.linalg.eigh(cov)
    log_cov = vecs @ np.diag(np.log(w)) @ vecs.T
    return np.array([0.5 * (log_cov[0, 0] + log_cov[1, 1]), 0.5 * (log_cov[0, 0] - log_cov[1, 1]), log_cov[0, 1]])


# --- the learned estimator's coordinates ---------------------------------------------------------------------------

def test_predictor_coords_of_params_by_hand():
    # eigenvalues e^2 and 1: m = (2 + 0) / 2 = 1, d = (2 - 0) / 2 = 1; theta 0 -> (u, v) = (1, 0); pi/4 -> (0, 1);
    # pi/2 -> (-1, 0)
    np.testing.assert_allclose(coords_from_params(E ** 2, 1., 0.), [1, 1, 0], atol=1e-12)
    np.testing.assert_allclose(coords_from_params(E ** 2, 1., math.pi / 4), [1, 0, 1], atol=1e-12)
    np.testing.assert_allclose(coords_from_params(E ** 2, 1., math.pi / 2), [1, -1, 0], atol=1e-12)
    # eigenvalues 4 and 4: m = ln 4, no elongation
    np.testing.assert_allclose(coords_from_params(4., 4., 0.3), [math.log(4), 0, 0], atol=1e-12)


def test_predictor_params_of_coords_by_hand():
    # (1, 0, 1): d = 1 -> e^2 and e^0, theta = atan2(1, 0) / 2 = pi/4
    np.testing.assert_allclose(params_from_coords((1., 0., 1.)), (E ** 2, 1., math.pi / 4), rtol=1e-12)
    # (0, -1, 0): d = 1 -> e and 1/e, theta = atan2(0, -1) / 2 = pi/2
    np.testing.assert_allclose(params_from_coords((0., -1., 0.)), (E, 1 / E, math.pi / 2), rtol=1e-12)
    # (0, 0, -1): theta = atan2(-1, 0) / 2 = -pi/4, wrapped into [0, pi): 3 pi/4
    np.testing.assert_allclose(params_from_coords((0., 0., -1.)), (E, 1 / E, 3 * math.pi / 4), rtol=1e-12)
    # (0.5, 3, 4): d = 5 -> e^5.5 and e^-4.5
    l1, l2, _ = params_from_coords((0.5, 3., 4.))
    assert (l1, l2) == (pytest.approx(E ** 5.5), pytest.approx(E ** -4.5))


def test_predictor_clip_moves_each_eigenvalue_and_keeps_the_angle():
    # (10, 0.1) at 0.3 into [0.2, 5]: (5, 0.2) at 0.3, flagged; (4, 1) inside: unchanged, not flagged
    coords, moved = clip_coords(coords_from_params(10., 0.1, 0.3), 0.2, 5.)
    np.testing.assert_allclose(params_from_coords(coords), (5., 0.2, 0.3), rtol=1e-9)
    assert moved is True
    coords, moved = clip_coords(coords_from_params(4., 1., 0.3), 0.2, 5.)
    np.testing.assert_allclose(params_from_coords(coords), (4., 1., 0.3), rtol=1e-9)
    assert moved is False
    # only the larger one out of range: (6, 1) -> (5, 1)
    coords, moved = clip_coords(coords_from_params(6., 1., 0.), 0.2, 5.)
    np.testing.assert_allclose(params_from_coords(coords)[:2], (5., 1.), rtol=1e-9)
    assert moved is True
    # only the smaller one: (1, 0.1) -> (1, 0.2)
    coords, moved = clip_coords(coords_from_params(1., 0.1, 0.), 0.2, 5.)
    np.testing.assert_allclose(params_from_coords(coords)[:2], (1., 0.2), rtol=1e-9)
    assert moved is True


def test_predictor_turn_back_of_each_transform_by_hand():
    # log S = [[m + u, v], [v, m - u]] = [[0.8, 0.2], [0.2, 0.2]] for (0.5, 0.3, 0.2); back = A^T log S A:
    # transpose swaps the diagonal (u -> -u); a flip of one axis negates the off-diagonal (v -> -v);
    # transpose then flip x: A = [[0, -1], [1, 0]], A^T L A = [[c, -b], [-b, a]] -> (m, -u, -v)
    coords = torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64)
    expected = {(False, False, False): [0.5, 0.3, 0.2], (False, True, False): [0.5, 0.3, -0.2],
                (False, False, True): [0.5, 0.3, -0.2], (False, True, True): [0.5, 0.3, 0.2],
                (True, False, False): [0.5, -0.3, 0.2], (True, True, False): [0.5, -0.3, -0.2],
                (True, False, True): [0.5, -0.3, -0.2], (True, True, True): [0.5, -0.3, 0.2]}
    assert sorted(DIHEDRAL) == sorted(expected)
    for t, back in expected.items():
        np.testing.assert_allclose(turn_back(coords, *t).numpy(), back, atol=1e-12, err_msg=str(t))


def test_predictor_turn_back_undoes_what_each_transform_does_to_a_kernel_image():
    # a kernel image transformed like an LR, measured by its moments, turned back = the original's moments
    kernel = gaussian_kernel(31, 4., 1., 0.5)
    original = moment_coords(kernel)
    np.testing.assert_allclose(original, coords_from_params(4., 1., 0.5), atol=0.02)  # the frame: x = column
    for t in DIHEDRAL:
        seen = moment_coords(_transform(torch.from_numpy(kernel), *t).numpy())
        back = turn_back(torch.from_numpy(seen), *t).numpy()
        np.testing.assert_allclose(back, original, atol=1e-9, err_msg=str(t))


class FixedPredictor(KernelPredictor):
    """A predictor whose maps are given: coordinates (1, 3, 1, 2) and confidence logits (1, 1, 1, 2)."""

    def __init__(self, coords, logits):
        super().__init__(num_feat=4, dilations=(1, ))
        self.maps = torch.tensor(coords, dtype=torch.float64)[None, :, None, :], \
            torch.tensor(logits, dtype=torch.float64)[None, None, None, :]

    def forward(self, lr):
        return self.maps


class ConstantEstimate(KernelPredictor):
    """A predictor that reads the same coordinates from every view."""

    def __init__(self, coords):
        super().__init__(num_feat=4, dilations=(1, ))
        self.coords = torch.tensor([coords], dtype=torch.float64)

    def estimate(self, lr):
        return self.coords


def test_predictor_estimate_is_the_confidence_weighted_mean():
    # logits 0 and ln 3: softmax weights 1/4 and 3/4 -> 0.25 * (1, 2, 3) + 0.75 * (5, 6, -1) = (4, 5, 0)
    net = FixedPredictor([[1., 5.], [2., 6.], [3., -1.]], [0., math.log(3)])
    np.testing.assert_allclose(net.estimate(torch.zeros(1, 3, 1, 2)).numpy(), [[4., 5., 0.]], atol=1e-12)


def test_predictor_dihedral_mean_of_a_view_blind_reading():
    # the same (m, u, v) read in all eight views: turned back, u is negated by the four transposed ones and v by the
    # four with exactly one flip, so the mean is (m, 0, 0)
    net = ConstantEstimate([0.7, 0.4, -0.3])
    np.testing.assert_allclose(dihedral_estimate(net, torch.zeros(1, 3, 8, 8)).numpy(), [[0.7, 0., 0.]], atol=1e-12)


def test_predictor_fewer_views_average_by_hand():
    # the rotations (0, 90, 180, 270 degrees): 90 and 270 negate both u and v, 180 neither -> (m, 0, 0); the image and
    # its transpose: the transpose negates u only -> (m, 0, v); one view: the reading itself
    net = ConstantEstimate([0.7, 0.4, -0.3])
    lr = torch.zeros(1, 3, 8, 8)
    np.testing.assert_allclose(dihedral_estimate(net, lr, 4).numpy(), [[0.7, 0., 0.]], atol=1e-12)
    np.testing.assert_allclose(dihedral_estimate(net, lr, 2).numpy(), [[0.7, 0., -0.3]], atol=1e-12)
    np.testing.assert_allclose(dihedral_estimate(net, lr, 1).numpy(), [[0.7, 0.4, -0.3]], atol=1e-12)


def test_predictor_four_views_are_the_rotations():
    quarter = np.array([[0., -1.], [1., 0.]])  # (x, y) -> (-y, x)
    rotations = [np.linalg.matrix_power(quarter, k) for k in range(4)]
    for t in VIEWS[4]:
        assert sum(np.array_equal(_matrix(*t), r) for r in rotations) == 1, t
    assert len({tuple(_matrix(*t).ravel()) for t in VIEWS[4]}) == 4
    assert [_matrix(*t).tolist() for t in VIEWS[2]] == [[[1., 0.], [0., 1.]], [[0., 1.], [1., 0.]]]


def test_predictor_settings_reject_an_unknown_number_of_views():
    with pytest.raises(SRDistillError, match='views must be one of'):
        PredictorSettings(views=3)


def test_the_fewest_views_within_the_tolerance_by_hand():
    from srdistill_plugin.zero_shot.estimator_choice import fewest_views
    # at 96 px four views are 0.88 % worse than eight (kept), two 0.53 %; at 160 px two are 2.1 % worse (dropped)
    errors = {96: {8: 0.2850, 4: 0.2875, 2: 0.2865, 1: 0.3030}, 160: {8: 0.2733, 4: 0.2727, 2: 0.2791, 1: 0.2859}}
    assert fewest_views(errors) == 4
    assert fewest_views({96: errors[96]}) == 2
    assert fewest_views(errors, tolerance=0.) == 8  # no fewer views is as good at both sizes
    assert fewest_views({1: {8: 0.30, 4: 0.31, 2: 0.32, 1: 0.33}}) == 8


def test_predictor_turn_45_makes_the_diagonal_the_x_axis():
    # a kernel elongated along x = y (theta = pi/4, v > 0) seen as an image: turned by 45 degrees it is elongated
    # along x (u > 0, v ~ 0); along x = -y (theta = 3 pi/4) along y (u < 0); the inscribed square of 41: int(41 / 1.414)
    for theta, sign in ((math.pi / 4, 1), (3 * math.pi / 4, -1)):
        kernel = torch.from_numpy(gaussian_kernel(41, 6., 1., theta)).float()
        turned = turn_45(kernel[None, None])[0, 0].double().numpy()
        assert turned.shape == (28, 28)
        m, u, v = moment_coords(np.clip(turned, 0, None))
        assert sign * u > 0.8 and abs(v) < 0.05  # d = ln(6) / 2 = 0.90
        assert m == pytest.approx(0.5 * math.log(6.), abs=0.05)
    # a non-square LR: its central square is turned
    assert turn_45(torch.zeros(2, 3, 20, 30)).shape == (2, 3, 14, 14)
    # pixel for pixel: the picture of (6, 1) along x = y turned is the picture of (6, 1) along x, cut to the inscribed
    # 28 from 6 (bicubic resampling leaves 0.0019 of its 0.065 peak; a grid stretched by 41/40 would leave 0.0029)
    turned = turn_45(torch.from_numpy(gaussian_kernel(41, 6., 1., math.pi / 4)).float()[None, None])[0, 0].numpy()
    assert np.abs(turned - gaussian_kernel(41, 6., 1., 0.)[6:34, 6:34]).max() < 0.0024


def test_predictor_diagonal_gain_by_hand():
    # least squares without intercept: g = sum(x y) / sum(x^2): (1*2 + 2*4) / (1 + 4) = 2; (1*1 + 1*3) / 2 = 2
    assert fit_diagonal_gain([1., 2.], [2., 4.]) == pytest.approx(2.)
    assert fit_diagonal_gain([1., 1.], [1., 3.]) == pytest.approx(2.)
    assert fit_diagonal_gain([1., -1.], [0.5, 0.]) == pytest.approx(0.25)


class MomentReader(KernelPredictor):
    """Reads the coordinates of its input's first plane taken as a kernel picture (second moments)."""

    def __init__(self):
        super().__init__(num_feat=4, dilations=(1, ))

    def estimate(self, lr):
        return torch.from_numpy(moment_coords(np.clip(lr[0, 0].double().numpy(), 0, None)))[None]


def test_predictor_raw_coords_take_v_from_the_turned_image_times_the_gain():
    # a kernel picture of (6, 1) along x = y: m = ln(6) / 2 = 0.896, u = 0, v = ln(6) / 2. Every view's moments turned
    # back are the picture's own, so gain 0 gives them; a gain g gives v = g * (u of the picture turned by 45
    # degrees) = g * 0.896
    d = 0.5 * math.log(6.)
    picture = torch.from_numpy(gaussian_kernel(41, 6., 1., math.pi / 4)).float()[None, None].expand(1, 3, 41, 41)
    np.testing.assert_allclose(raw_coords(MomentReader(), picture, 0.), [d, 0., d], atol=0.02)
    raw = raw_coords(MomentReader(), picture, 2.)
    np.testing.assert_allclose(raw[:2], [d, 0.], atol=0.02)
    assert raw[2] == pytest.approx(2 * d, abs=0.1)


def test_predictor_post_processing_by_hand():
    # clip (10, 10) into [0.2, 5] -> (5, 5); shrink 0.5 toward (2, 2): m = (ln 5 + ln 2) / 2 -> sqrt(10) for both
    settings = PredictorSettings(shrink=0.5)
    est = estimate_from_coords(coords_from_params(10., 10., 0.), settings)
    assert est.clipped is True
    np.testing.assert_allclose(est.params[:2], (math.sqrt(10), math.sqrt(10)), rtol=1e-9)
    np.testing.assert_allclose(est.raw_params[:2], (10., 10.), rtol=1e-9)
    assert est.kernel.shape == (15, 15) and est.kernel.sum() == pytest.approx(1.)
    np.testing.assert_allclose(est.kernel, gaussian_kernel(15, math.sqrt(10), math.sqrt(10)), rtol=1e-6)
    # no shrink: (4, 1, 0.3) stays; shrink 1: the default (2, 2, 0)
    est = estimate_from_coords(coords_from_params(4., 1., 0.3), PredictorSettings())
    np.testing.assert_allclose(est.params, (4., 1., 0.3), rtol=1e-9)
    assert est.clipped is False
    est = estimate_from_coords(coords_from_params(4., 1., 0.3), PredictorSettings(shrink=1.))
    np.testing.assert_allclose(est.params[:2], (2., 2.), rtol=1e-9)
    # shrink 0.25 of (e^2, 1, 0) = (1, 1, 0) toward (2, 2, 0) = (ln 2, 0, 0): (0.75 + 0.25 ln 2, 0.75, 0)
    est = estimate_from_coords([1., 1., 0.], PredictorSettings(shrink=0.25, max_variance=10.))
    m, d = 0.75 + 0.25 * math.log(2), 0.75
    np.testing.assert_allclose(est.params, (math.exp(m + d), math.exp(m - d), 0.), rtol=1e-9, atol=1e-12)


def test_predictor_refuses_a_broken_network():
    net = ConstantEstimate([float('nan'), 0., 0.])
    with pytest.raises(SRDistillError, match=r'^the kernel estimator returned \[nan, nan, nan\] \(not finite\)'):
        predict_kernel(net, torch.zeros(3, 8, 8), PredictorSettings())
    # a 3-D LR is taken as one image
    est = predict_kernel(ConstantEstimate([math.log(3.), 0., 0.]), torch.zeros(3, 8, 8), PredictorSettings())
    np.testing.assert_allclose(est.params[:2], (3., 3.), rtol=1e-9)


def test_predictor_loss_and_covariance_error_by_hand():
    # ||log S - log T||_F^2 = 2 dm^2 + 2 du^2 + 2 dv^2: (1, 0, 0) -> 2; (0, 1, 1) -> 4; mean over the batch 3
    pred = torch.tensor([[1., 0., 0.], [0., 1., 1.]])
    assert coords_loss(pred, torch.zeros(2, 3)).item() == pytest.approx(3.)
    # (4, 1) turned by pi/2: [[1, 0], [0, 4]]; (2, 1) turned by pi/4: [[1.5, 0.5], [0.5, 1.5]]
    np.testing.assert_allclose(covariance((4., 1., math.pi / 2)), [[1., 0.], [0., 4.]], atol=1e-12)
    np.testing.assert_allclose(covariance((2., 1., math.pi / 4)), [[1.5, 0.5], [0.5, 1.5]], atol=1e-12)
    # diag(4, 1) against diag(2, 2): ||diag(2, -1)|| / ||diag(2, 2)|| = sqrt(5 / 8)
    assert covariance_error((4., 1., 0.), (2., 2., 0.)) == pytest.approx(math.sqrt(5 / 8))


def test_predictor_file_round_trip_and_refusals(tmp_path):
    torch.manual_seed(0)
    net = KernelPredictor(num_feat=8, dilations=(1, 2, 1))
    settings = PredictorSettings(shrink=0.3, default=(1.5, 1.5, 0.), diagonal_gain=1.7)
    save_predictor(tmp_path / 'p.pth', net, settings, {'iterations': 5})
    loaded, loaded_settings, record = load_predictor(tmp_path / 'p.pth')
    assert loaded_settings == settings and record == {'iterations': 5} and loaded.receptive_field == 1 + 2 * 4
    x = torch.rand(1, 3, 12, 12)
    assert torch.equal(loaded.estimate(x), net.eval().estimate(x))
    torch.save({'params': {}}, tmp_path / 'other.pth')
    with pytest.raises(SRDistillError, match=rf'^{re.escape(str(tmp_path))}/other\.pth: not a kernel-estimator file \('):
        load_predictor(tmp_path / 'other.pth')


def test_predictor_folder_checks_sizes_first_and_logs_clipping(tmp_path):
    images = [('a', torch.zeros(3, 30, 30)), ('b', torch.zeros(3, 23, 40))]
    with pytest.raises(SRDistillError, match=r"^b: the LR is 40x23, smaller than the kernel estimator's 24 px$"):
        estimate_folder_kernels(images, tmp_path / 'out', ConstantEstimate([0., 0., 0.]), PredictorSettings())
    assert not (tmp_path / 'out').exists()
    lines = []
    # the moment reader on a picture of (10, 2.5) turned by pi/2: clipped to (5, ~2.5), the angle kept; the raw
    # variances, from numpy's eigenvalues of the picture's moments, are logged larger first
    picture = torch.from_numpy(gaussian_kernel(41, 10., 2.5, math.pi / 2)).float().expand(3, 41, 41)
    m, u, v = moment_coords(picture[0].double().numpy())
    l1, l2 = np.exp(m + np.array([1, -1]) * np.hypot(u, v))
    out = tmp_path / 'nested' / 'out'
    for _ in range(2):  # a second run into the same folder rewrites it
        records = estimate_folder_kernels([('a', picture[None])], out, MomentReader(), PredictorSettings(),
                                          log=lines.append)
    assert lines[0] == (f'a: the estimated kernel (variances {l1:.2f}, {l2:.2f}) was clipped to the trained range '
                        '[0.2, 5.0]') and l1 > 9 and l2 < 3
    a = records['a']
    assert (a['lambda1'], a['lambda2'], a['theta']) == (pytest.approx(5.), pytest.approx(l2, rel=1e-3),
                                                        pytest.approx(math.pi / 2, abs=1e-3))
    assert estimate_folder_kernels([('b', torch.zeros(1, 3, 24, 30))], out, ConstantEstimate([0., 0., 0.]),
                                   PredictorSettings())['b']['lambda1'] == pytest.approx(1.)  # 24 px: accepted
    records = json.loads((out / 'kernels.json').read_text())['images']
    assert list(records) == ['b']
    assert a['clipped'] is True and 0 <= a['seconds'] < 60 and a['seconds'] == round(a['seconds'], 4)
    stored = json.loads((out / 'kernels.json').read_text())
    assert stored == {'estimator': 'learned', 'images': records,
                      'settings': json.loads(json.dumps(dataclasses.asdict(PredictorSettings())))}
    assert (out / 'a.npy').is_file()


def test_predictor_architecture_and_settings_typed_out():
    # the shipped estimator: 3x3 convolutions dilated 1, 1, 2, 2, 4, 4, 1 with 32 channels and LeakyReLU 0.2, a 1x1
    # head to 3 coordinates + 1 confidence; field 1 + 2 x 15 = 31; (3 x 32 x 9 + 32) + 6 x (32 x 32 x 9 + 32) +
    # (32 x 4 + 4) = 896 + 55,488 + 132 = 56,516 parameters
    net = KernelPredictor()
    convs = [m for m in net.body if isinstance(m, torch.nn.Conv2d)]
    assert [c.dilation[0] for c in convs] == [1, 1, 2, 2, 4, 4, 1] and {c.kernel_size for c in convs} == {(3, 3)}
    assert {c.out_channels for c in convs} == {32} and net.head.kernel_size == (1, 1) and net.receptive_field == 31
    assert {m.negative_slope for m in net.body if isinstance(m, torch.nn.LeakyReLU)} == {0.2}
    assert sum(p.numel() for p in net.parameters()) == 56_516
    coords, logits = net(torch.rand(1, 3, 9, 9))
    assert coords.shape == (1, 3, 9, 9) and logits.shape == (1, 1, 9, 9)
    # its input is centred on 0: the body reads lr - 0.5
    x = torch.rand(1, 3, 9, 9)
    assert torch.allclose(net(x)[0], net.head(net.body(x - 0.5))[:, :3])
    assert not dihedral_estimate(net, x).requires_grad  # no graph kept
    assert PredictorSettings() == PredictorSettings(scale=2, downsample='direct', min_variance=0.2, max_variance=5.,
                                                    shrink=0., default=(2., 2., 0.), kernel_size=15,
                                                    diagonal_gain=0.)
    with pytest.raises(dataclasses.FrozenInstanceError):
        PredictorSettings().shrink = 1.


def test_predictor_turn_45_takes_the_central_square_and_keeps_it_centred():
    # a tall 30 x 20 LR whose rows outside the central square (rows 5..24) are 1: turned, nothing of them shows;
    # the same for a wide 20 x 30 one
    tall = torch.zeros(1, 1, 30, 20)
    tall[..., :5, :], tall[..., 25:, :] = 1, 1
    assert turn_45(tall).abs().max() == 0
    wide = tall.transpose(-1, -2).contiguous()
    assert turn_45(wide).abs().max() == 0
    # a centred kernel picture keeps its centre: pixel 20 of the 41 square, the inscribed int(41 / sqrt 2) = 28 cut
    # from (41 - 28) // 2 = 6, so at 14
    turned = turn_45(torch.from_numpy(gaussian_kernel(41, 6., 1., 0.3)).float()[None, None])[0, 0].double().numpy()
    ys, xs = np.mgrid[:28, :28]
    w = np.clip(turned, 0, None)
    assert ((w * ys).sum() / w.sum(), (w * xs).sum() / w.sum()) == (pytest.approx(14, abs=0.05),
                                                                     pytest.approx(14, abs=0.05))


# --- KernelGAN's fixed parts ----------------------------------------------------------------------------------------

def test_kernelgan_defaults_are_the_official_ones_typed_out():
    # KernelGAN's configs.py and learner.py: 64-pixel crops, G of 7-5-3-1-1-1 convolutions with 64 channels, D of 7
    # layers of 64 channels with a 7x7 first kernel, Adam lr 2e-4 with beta1 0.5 for both, 40 filtered
    # discriminator iterations, loss weights 0.5 / 5 / 0.5 and 1 / 5 once relaxed, the prior relaxed below 0.4
    # every 200 iterations, learning rates / 10 every 750; only the iteration count differs (official 3000)
    assert dataclasses.asdict(KernelGANConfig()) == {
        'crop_size': 64, 'g_structure': (7, 5, 3, 1, 1, 1), 'g_channels': 64, 'd_channels': 64, 'd_layers': 7,
        'd_kernel_size': 7, 'max_iters': 1000, 'lr': 2e-4, 'beta1': 0.5, 'n_filtering': 40, 'seed': 0,
        'lambda_sum2one': 0.5, 'lambda_bicubic': 5., 'lambda_boundaries': 0.5, 'lambda_centralized_end': 1.,
        'lambda_sparse_end': 5., 'bicubic_loss_to_relax': 0.4, 'lr_decay_every': 750, 'relax_every': 200}
    assert KernelGANConfig().kernel_size == 13 and KernelGANConfig(g_structure=(3, 3)).kernel_size == 5


def test_kernelgan_generator_layers_typed_out():
    # the official G: 7-5-3-1-1-1 convolutions, 1 -> 64 -> ... -> 64 -> 1 channels, no bias, stride 2 on the last
    # only; Xavier-normal weights with gain 0.1: std 0.1 sqrt(2 / (fan_in + fan_out)), fan = channels x k^2
    torch.manual_seed(0)
    gen = LinearDownscaler(KernelGANConfig())
    shapes = [(64, 1, 7, 7), (64, 64, 5, 5), (64, 64, 3, 3), (64, 64, 1, 1), (64, 64, 1, 1), (1, 64, 1, 1)]
    assert [tuple(layer.weight.shape) for layer in gen.layers] == shapes
    assert [layer.stride for layer in gen.layers] == [(1, 1)] * 5 + [(2, 2)]
    assert all(layer.bias is None and layer.padding == (0, 0) for layer in gen.layers)
    for layer, (o, i, k, _) in zip(gen.layers, shapes):
        expected = 0.1 * math.sqrt(2 / (i * k * k + o * k * k))
        assert layer.weight.std().item() == pytest.approx(expected, rel=0.15)
    # each colour plane is its own grey image: 64 - 6 - 4 - 2 = 52 valid pixels, every second one -> 26
    a, b = torch.rand(1, 1, 64, 64), torch.rand(1, 1, 64, 64)
    with torch.no_grad():
        out = gen(torch.cat([a, b, a], 1))
        assert out.shape == (1, 3, 26, 26)
        torch.testing.assert_close(out[:, 0], out[:, 2])
        torch.testing.assert_close(out[:, 1:2], gen(b))


def test_kernelgan_discriminator_layers_typed_out():
    # the official D: a 7x7 convolution 3 -> 64, five 1x1 blocks (convolution, batch norm, ReLU), a 1x1 convolution
    # to one map and a sigmoid; every convolution spectral-normalised, biases 0, batch-norm scales N(1, 0.02)
    torch.manual_seed(0)
    disc = PatchDiscriminator(KernelGANConfig())
    kinds = [type(m).__name__ for m in disc.net]
    assert kinds == ['Conv2d'] + ['Conv2d', 'BatchNorm2d', 'ReLU'] * 5 + ['Conv2d', 'Sigmoid']
    convs = [m for m in disc.net if isinstance(m, torch.nn.Conv2d)]
    assert [tuple(m.weight_orig.shape) for m in convs] == [(64, 3, 7, 7)] + [(64, 64, 1, 1)] * 5 + [(1, 64, 1, 1)]
    assert all(m.bias.abs().max() == 0 for m in convs)
    norms = [m for m in disc.net if isinstance(m, torch.nn.BatchNorm2d)]
    scales = torch.cat([m.weight.detach() for m in norms])
    assert scales.mean().item() == pytest.approx(1, abs=0.01) and scales.std().item() == pytest.approx(0.02, rel=0.2)
    assert all(m.bias.abs().max() == 0 for m in norms)
    # gain 0.1 before the spectral normalisation, as in G: the first layer's raw weights
    assert convs[0].weight_orig.std().item() == pytest.approx(0.1 * math.sqrt(2 / (3 * 49 + 64 * 49)), rel=0.15)
    out = disc(torch.rand(2, 3, 20, 20))
    assert out.shape == (2, 1, 14, 14) and 0 < out.min() and out.max() < 1


def test_kernelgan_read_out_kernel_is_the_chained_correlation_by_hand():
    # G correlates with w1, then w2, then scales by w3 and takes every second pixel: sum_m sum_l x[n + m + l] w1[l]
    # w2[m] = sum_p x[n + p] (w1 * w2)[p], one correlation with K = w3 full_convolution(w1, w2), and the kernel read
    # out is K (the package blurs by correlation)
    cfg = KernelGANConfig(g_structure=(3, 3, 1), g_channels=1)
    gen = LinearDownscaler(cfg)
    rng = np.random.default_rng(0)
    w = [rng.normal(size=(3, 3)), rng.normal(size=(3, 3)), rng.normal(size=(1, 1))]
    with torch.no_grad():
        for layer, weight in zip(gen.layers, w):
            layer.weight.copy_(torch.from_numpy(weight)[None, None])
    big = w[2][0, 0] * signal.convolve2d(w[0], w[1])
    np.testing.assert_allclose(gen.kernel().detach().numpy(), big, rtol=1e-5, atol=1e-6)
    x = rng.random((11, 11))
    expected = signal.correlate2d(x, big, mode='valid')[::2, ::2]
    out = gen(torch.from_numpy(x).float()[None, None])[0, 0].detach().numpy()
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-5)


def test_kernelgan_bicubic_prior_taps_by_hand():
    # 0.5 * cubic(0.5 x) at x = -3.5 .. 3.5 step 1: cubic at 1.75, 1.25, 0.75, 0.25 (both sides); one side sums to 1,
    # so the normalised taps are half of (-0.0234375, -0.0703125, 0.2265625, 0.8671875)
    taps = np.array([CUBIC[1.75], CUBIC[1.25], CUBIC[0.75], CUBIC[0.25]]) / 2
    taps = np.concatenate([taps, taps[::-1]])
    np.testing.assert_allclose(bicubic_half_kernel().numpy(), np.outer(taps, taps), rtol=1e-6, atol=1e-8)


def test_kernelgan_boundary_mask_by_hand():
    # size 13: r = -6..6, gauss = exp(-r^2 / 338), mask = 30 (1 - g(r) g(c)); the central 9 x 9 (margin
    # (13 - 7) // 2 - 1 = 2) is zero
    mask = boundary_mask(13).numpy()
    g = lambda r: math.exp(-r * r / 338)  # noqa: E731
    assert mask[0, 0] == pytest.approx(30 * (1 - g(6) * g(6)), rel=1e-5)
    assert mask[1, 6] == pytest.approx(30 * (1 - g(5)), rel=1e-5)
    assert mask[6, 0] == pytest.approx(30 * (1 - g(6)), rel=1e-5)
    assert mask[12, 12] == pytest.approx(30 * (1 - g(6) * g(6)), rel=1e-5)
    zero = np.zeros((13, 13), bool)
    zero[2:11, 2:11] = True
    np.testing.assert_array_equal(mask == 0, zero)  # the rest, a two-pixel frame, is positive
    # size 15: margin (15 - 8) // 2 - 1 = 2, the central 11 x 11 is zero; size 5: margin (5 - 3) // 2 - 1 = 0, all
    zero = np.zeros((15, 15), bool)
    zero[2:13, 2:13] = True
    np.testing.assert_array_equal(boundary_mask(15).numpy() == 0, zero)
    assert (boundary_mask(5).numpy() == 0).all()
    # size 9: margin (9 - 5) // 2 - 1 = 1, the central 7 x 7 is zero
    mask = boundary_mask(9, penalty=1.).numpy()
    assert (mask[1:8, 1:8] == 0).all() and mask[0, 4] == pytest.approx(1 - math.exp(-16 / 162), rel=1e-5)


def test_kernelgan_kernel_terms_by_hand():
    # k = [[0, 0, 0], [0, 0.5, 0.3], [0, 0, 0]], sum 0.8: |1 - 0.8| = 0.2; mask 2 but 0 at the centre:
    # mean |k mask| = 0.6 / 9; centre of mass row 0.8 / 0.8 = 1, column (0.5 + 0.6) / 0.8 = 1.375 against the x2
    # grid's 3 // 2 + 0.5 (2 - 1) = 1.5: ((0.5)^2 + (0.125)^2) / 2 = 0.1328125; sparsity: the mean of |k|^0.2 with
    # 1e-12 added (seven zeros give 1e-2.4 each)
    k = torch.tensor([[0., 0., 0.], [0., 0.5, 0.3], [0., 0., 0.]], dtype=torch.float64)
    mask = torch.full((3, 3), 2., dtype=torch.float64)
    mask[1, 1] = 0
    terms = kernel_terms(k, mask)
    assert terms['sum2one'].item() == pytest.approx(0.2)
    assert terms['boundaries'].item() == pytest.approx(0.6 / 9)
    assert terms['centralized'].item() == pytest.approx(0.1328125)
    assert terms['sparse'].item() == pytest.approx((0.5 ** 0.2 + 0.3 ** 0.2 + 7 * 10 ** -2.4) / 9, rel=1e-6)
    # an even size: the centre is 4 // 2 + 0.5 (2 - 0) = 3, so a delta at (3, 3) is centred
    delta = torch.zeros(4, 4, dtype=torch.float64)
    delta[3, 3] = 1
    assert kernel_terms(delta, torch.zeros(4, 4, dtype=torch.float64))['centralized'].item() == 0.


def test_kernelgan_bicubic_prior_loss_by_hand():
    # a ramp along the columns (value = column): the symmetric 8 taps summing to 1 give output column i the value at
    # input position 2 i - 3 + 3.5 = 2 i + 0.5; a 16 px input gives 8 outputs (padding 3), G's 2 x 2 output is
    # compared with the central outputs 3 and 4: 6.5 and 8.5
    ramp = torch.arange(16, dtype=torch.float32).expand(1, 3, 16, 16).contiguous()
    exact = torch.tensor([6.5, 8.5]).expand(1, 3, 2, 2)
    assert bicubic_prior_loss(ramp, exact, bicubic_half_kernel()).item() == pytest.approx(0., abs=1e-8)
    assert bicubic_prior_loss(ramp, torch.full((1, 3, 2, 2), 7.5), bicubic_half_kernel()).item() == pytest.approx(1.)
    # each colour plane against its own: planes 1, 2 and 3 times the ramp
    gains = torch.tensor([1., 2., 3.]).view(1, 3, 1, 1)
    assert bicubic_prior_loss(ramp * gains, exact * gains, bicubic_half_kernel()).item() == pytest.approx(0., abs=1e-8)


def test_kernelgan_term_weights_follow_the_official_schedule_by_hand():
    cfg = KernelGANConfig(relax_every=10, lr_decay_every=20)
    weights = TermWeights(cfg)
    assert weights.weights == {'bicubic': 5., 'sum2one': 0.5, 'boundaries': 0.5, 'centralized': 0., 'sparse': 0.}
    # iteration 0 is skipped; 1, 2 below 0.4 (streak 2), 3 above (reset), 4, 5, 6 below: close after 6
    for it, loss in enumerate([0.1, 0.1, 0.1, 0.5, 0.1, 0.1]):
        weights.update(it, loss)
    assert (weights.close_to_bicubic, weights.streak) == (False, 2)
    weights.update(6, 0.1)
    assert weights.close_to_bicubic is True
    # from then on: / 100 at multiples of 10 only (5 -> 0.05 -> 5e-4, the terms on once below 5e-3 -> 5e-6, the floor)
    weights.update(9, 9.)
    assert weights.weights['bicubic'] == 5.
    weights.update(10, 9.)
    assert weights.weights['bicubic'] == pytest.approx(0.05) and weights.weights['sparse'] == 0.
    weights.update(20, 9.)
    assert weights.weights['bicubic'] == pytest.approx(5e-4)
    assert (weights.weights['centralized'], weights.weights['sparse']) == (1., 5.)
    weights.update(30, 9.)
    assert weights.weights['bicubic'] == pytest.approx(5e-6)
    weights.update(40, 9.)
    assert weights.weights['bicubic'] == pytest.approx(5e-6)
    assert [weights.decays_lr(it) for it in (0, 19, 20, 21, 40)] == [False, False, True, False, True]
    # the total: 5e-6 x 2 + 0.5 + 0.5 + 1 x 1 + 5 x 1 with every term 1
    ones = {name: torch.tensor(1.) for name in ('sum2one', 'boundaries', 'centralized', 'sparse')}
    assert weights.total(torch.tensor(2.), ones).item() == pytest.approx(7 + 1e-5)


def test_kernelgan_term_weights_at_their_edges_by_hand():
    # iteration 0 does not count, iteration 1 does: 0 low (skipped), 1 high (reset), 2, 3 low -> streak 2, not close
    weights = TermWeights(KernelGANConfig())
    for it, loss in enumerate([0.1, 9., 0.1, 0.1]):
        weights.update(it, loss)
    assert (weights.close_to_bicubic, weights.streak) == (False, 2)
    # a loss of exactly 0.4 is not below 0.4
    weights.update(4, 0.4)
    assert weights.streak == 0
    # lambda_bicubic 0.5: 0.5 -> 5e-3 (not below 5e-3: terms still off) -> 5e-5 (on)
    weights = TermWeights(KernelGANConfig(lambda_bicubic=0.5, relax_every=1))
    for it in range(1, 5):
        weights.update(it, 0.)
    assert weights.weights['bicubic'] == pytest.approx(5e-3) and weights.weights['sparse'] == 0.
    weights.update(5, 0.)
    assert weights.weights['bicubic'] == pytest.approx(5e-5) and weights.weights['sparse'] == 5.
    # lambda_bicubic 0.08: 8e-4 -> 8e-6 -> 5e-6 (the floor, not 8e-8)
    weights = TermWeights(KernelGANConfig(lambda_bicubic=0.08, relax_every=1))
    for it in range(1, 7):
        weights.update(it, 0.)
    assert weights.weights['bicubic'] == pytest.approx(5e-6, rel=1e-9)
    assert [TermWeights(KernelGANConfig(lr_decay_every=1)).decays_lr(it) for it in (0, 1, 2)] == [False, True, True]


def test_kernelgan_negligible_values_by_hand():
    # [[0.1, 0.2], [0.3, 0.4]], n = 1: floor 0.75 * 0.3 (the 2nd largest) = 0.225 -> (0, 0, 0.075, 0.175) / 0.25
    k = np.array([[0.1, 0.2], [0.3, 0.4]])
    np.testing.assert_allclose(zeroize_negligible(k, 1), [[0., 0.], [0.3, 0.7]], atol=1e-12)
    # n = 2: floor 0.75 * 0.2 = 0.15 -> (0, 0.05, 0.15, 0.25) / 0.45
    np.testing.assert_allclose(zeroize_negligible(k, 2), [[0., 0.05 / 0.45], [0.15 / 0.45, 0.25 / 0.45]], atol=1e-12)
    # n = 0 or n >= the size: every positive value, renormalised (here already sums to 1)
    np.testing.assert_allclose(zeroize_negligible(k, 0), k, atol=1e-12)
    np.testing.assert_allclose(zeroize_negligible(k * 2, 4), k, atol=1e-12)
    np.testing.assert_allclose(zeroize_negligible(np.array([[-0.2, 0.6], [0.2, 0.4]]), 0),
                               [[0., 0.5], [1 / 6, 1 / 3]], atol=1e-12)


def test_kernelgan_centring_by_hand():
    # a delta at (1, 2) of a 5 x 5: its centre of mass is one row above the centre; padded by 1 -> 7 x 7 with the
    # delta at (3, 3)
    k = np.zeros((5, 5))
    k[1, 2] = 1
    out = center_kernel(k)
    expected = np.zeros((7, 7))
    expected[3, 3] = 1
    np.testing.assert_allclose(out, expected, atol=1e-6)
    # already centred: unchanged, not padded; negative spline overshoot is clipped, the sum is 1
    k = np.outer([0.25, 0.5, 0.25], [0.25, 0.5, 0.25])
    np.testing.assert_allclose(center_kernel(k), k, atol=1e-6)
    half = np.zeros((4, 4))
    half[1:3, 1] = 0.5  # centre of mass (1.5, 1): half a pixel left of the centre column 1.5 -> padded by 1
    out = center_kernel(half)
    assert out.shape == (6, 6) and out.min() >= 0 and out.sum() == pytest.approx(1.)
    # unshifted the column would be 2.0 after the pad; the cubic spline's clipped undershoot leaves it within 0.1
    ys, xs = np.mgrid[:6, :6]
    assert ((out * xs).sum(), (out * ys).sum()) == (pytest.approx(2.5, abs=0.1), pytest.approx(2.5, abs=1e-4))
    # the shift itself: scipy's cubic spline (order 3, as the official kernel_shift) by (0, 0.5) on the padded kernel
    from scipy import ndimage
    spline = np.clip(ndimage.shift(np.pad(half, 1), (0., 0.5), order=3), 0, None)
    np.testing.assert_allclose(out, spline / spline.sum(), atol=1e-7)


def test_kernelgan_x4_from_x2_by_hand():
    # 1-D: (0.25, 0.5, 0.25) stuffed = (0.25, 0, 0.5, 0, 0.25), convolved with (0.25, 0.5, 0.25):
    # (0.0625, 0.125, 0.1875, 0.25, 0.1875, 0.125, 0.0625), cropped by 1 each side and renormalised by 0.875;
    # the 2-D kernel is the outer product of the 1-D ones
    line = np.array([0.25, 0.5, 0.25])
    expected = np.array([0.125, 0.1875, 0.25, 0.1875, 0.125]) / 0.875
    np.testing.assert_allclose(x4_from_x2(np.outer(line, line)), np.outer(expected, expected), rtol=1e-6)
    delta = np.zeros((3, 3))
    delta[1, 1] = 1
    assert x4_from_x2(delta).shape == (5, 5) and x4_from_x2(delta)[2, 2] == pytest.approx(1.)


def test_kernelgan_post_processing_order():
    # filtered (n = 1 keeps only the two largest values' excess), centred, then x4: a raw (0.2, 0.3, 0.5) row
    # keeps (0, 0.075, 0.275) / 0.35 ... with n = 1 the floor is 0.75 * 0.3 = 0.225
    raw = np.zeros((3, 3))
    raw[1] = [0.2, 0.3, 0.5]
    filtered = np.zeros((3, 3))
    filtered[1] = [0., 0.075 / 0.35, 0.275 / 0.35]
    np.testing.assert_allclose(postprocess_kernel(raw, 2, 1), center_kernel(filtered), atol=1e-6)
    np.testing.assert_allclose(postprocess_kernel(raw, 4, 1), x4_from_x2(center_kernel(filtered)), atol=1e-6)


def test_kernelgan_kernel_psnr_by_hand():
    # a delta against a 3 x 3 box, both on 5 x 5: mse = ((8/9)^2 + 8 (1/9)^2) / 25 = 8/225 -> 10 log10(225/8)
    delta5, box = np.zeros((5, 5)), np.zeros((5, 5))
    delta5[2, 2], box[1:4, 1:4] = 1, 1 / 9
    assert kernel_psnr(delta5, box) == pytest.approx(10 * math.log10(225 / 8), abs=1e-4)
    delta = np.zeros((3, 3))
    delta[1, 1] = 1
    # the same kernel shifted by a pixel: aligned first, so identical
    shifted = np.zeros((3, 3))
    shifted[1, 2] = 1
    assert kernel_psnr(shifted, delta) > 200  # exact but for the spline shift's rounding
    # different sizes: the smaller placed in the centre of the larger (delta 3 x 3 vs delta 5 x 5: identical)
    big = np.zeros((5, 5))
    big[2, 2] = 1
    assert kernel_psnr(delta, big) > 200
    assert kernel_psnr(delta, delta) == math.inf and kernel_psnr(big, big) == math.inf  # no error at all


def test_kernelgan_crops_are_even_and_hold_the_only_texture():
    # flat but for a textured stripe in columns 40-55 of a 96 x 96 image: every 32 px crop drawn overlaps it (a
    # uniform draw of the left edge over 0..64 would miss it one time in three), and every corner is even
    img = np.zeros((96, 96, 3))
    img[:, 40:56] = np.random.default_rng(1).uniform(0, 1, (96, 16, 1))
    for on_half_image in (False, True):  # D's crops, and G's drawn on the x1/2 image
        corners = _crop_sampler(img, 32, np.random.default_rng(0), on_half_image, 300)
        tops, lefts = corners[:, 0], corners[:, 1]
        assert (tops % 2 == 0).all() and (lefts % 2 == 0).all() and tops.min() >= 0 and tops.max() <= 64
        assert lefts.min() > 8 and lefts.max() < 56



def edge_map_reference(grey: np.ndarray) -> np.ndarray:
    """The crop map from its definition: |gx|, |gy| and their magnitude (central differences), each zero within 5 px
    of the border, kept in the band between its 97 % and 97.01 % quantiles (at least 1e-5 wide) and scaled to sum
    1 (an empty one stays 0); their sum box-filtered over 5 x 5 (zeros outside) and scaled to mean 1."""
    from scipy import ndimage

    gy, gx = np.gradient(grey)
    total = np.zeros_like(grey)
    for g in (np.abs(gx), np.abs(gy), np.sqrt(gx ** 2 + gy ** 2)):
        inner = np.zeros_like(g)
        inner[5:-5, 5:-5] = g[5:-5, 5:-5]
        lo = np.quantile(inner, 0.97)
        band = np.minimum(np.maximum(inner, lo), max(np.quantile(inner, 0.9701), lo + 1e-5)) - lo
        total += band / band.sum() if band.any() else band
    boxed = ndimage.uniform_filter(total, 5, mode='constant')
    return boxed / boxed.mean()


def test_kernelgan_crop_corners_from_their_definition():
    """D's crops from the full image's map, G's from the map of its MATLAB x1/2 repeated 2 x 2 (zero-padded to an odd
    size): the map box-filtered over half a crop, zero within half a crop of the border, normalised, and the centres
    drawn from it with a twin generator; the corner is the centre minus half a crop, kept inside and made even."""
    from scipy import ndimage

    rng = np.random.default_rng(7)
    img = rng.uniform(0, 1, (45, 52, 3)) * np.linspace(0.2, 1, 52)[None, :, None]
    grey = img @ np.array([0.299, 0.587, 0.114])
    crop, half, count = 16, 8, 200
    small = matlab_resize(torch.from_numpy(grey)[None], 0.5)[0].numpy()
    repeated = np.zeros_like(grey)
    repeated[:44, :] = np.repeat(np.repeat(edge_map_reference(small), 2, 0), 2, 1)[:44, :52]
    for downscaled_first, grad_map in ((False, edge_map_reference(grey)), (True, repeated)):
        prob = ndimage.uniform_filter(grad_map, half, mode='constant')
        prob[:half], prob[-half:], prob[:, :half], prob[:, -half:] = 0, 0, 0, 0
        prob = np.maximum(prob, 0).ravel()
        centres = np.random.default_rng(3).choice(prob.size, size=count, p=prob / prob.sum())
        tops = np.minimum(np.maximum(centres // 52 - half, 0), 45 - crop) // 2 * 2
        lefts = np.minimum(np.maximum(centres % 52 - half, 0), 52 - crop) // 2 * 2
        corners = _crop_sampler(img, crop, np.random.default_rng(3), downscaled_first, count)
        np.testing.assert_array_equal(corners, np.stack([tops, lefts], axis=1))
    np.testing.assert_allclose(_edge_map(grey), edge_map_reference(grey), rtol=1e-9, atol=1e-12)
    # texture along the columns only: |gy| is zero everywhere and adds nothing (no division by its zero sum)
    stripes = np.repeat(grey[:1], 45, axis=0)
    np.testing.assert_allclose(_edge_map(stripes), edge_map_reference(stripes), rtol=1e-9, atol=1e-12)
    # an image of the crop's size leaves no centre half a crop from the border: every centre equally likely, every
    # corner (0, 0)
    assert (_crop_sampler(img[:16, :16], crop, np.random.default_rng(0), False, 50) == 0).all()
    # a flat image has no edges: the map is ones, every centre in rows 8..31 equally likely, the corners 0, 0, 2, 2,
    # ..., 22, 22 (mean 11)
    flat = _crop_sampler(np.full((40, 40, 3), 0.5), 16, np.random.default_rng(0), False, 4000)
    np.testing.assert_array_equal(_edge_map(np.full((40, 40), 0.5)), np.ones((40, 40)))
    assert flat[:, 0].min() == 0 and flat[:, 0].max() == 22 and abs(flat[:, 0].mean() - 11) < 0.5


TINY_GAN = KernelGANConfig(crop_size=32, g_structure=(3, 3, 1), g_channels=4, d_channels=4, d_layers=3, max_iters=2)


def test_kernelgan_training_steps_written_out():
    """Seven iterations of the official learner written out with twin random draws: G's crops drawn first, then D's;
    each iteration G's step (D fooled: L1 to 1, plus the weighted prior and kernel terms), then D's (real crop + 2/255
    noise to 1, G's output + 1/255 noise to 0, half the sum), both learning rates / 10 after iterations 2, 4 and 6, the
    loss weights updated after each step. The schedule is made to act within six steps: close to bicubic after
    iterations 1-3, the prior's weight 5 -> 0.05 -> 5e-4 after 4 and 5, and the last one with the sparse and
    centre-of-mass terms on."""
    import torch.nn.functional as F

    cfg = dataclasses.replace(TINY_GAN, max_iters=7, lr_decay_every=2, relax_every=1, bicubic_loss_to_relax=10.)
    img = np.random.default_rng(5).uniform(0, 1, (40, 44, 3))
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    gen, disc = LinearDownscaler(cfg), PatchDiscriminator(cfg)
    d_size = (cfg.crop_size - 4) // 2  # 3-3-1 convolutions: 32 - 2 - 2 = 28 valid pixels, every second one
    g_opt = torch.optim.Adam(gen.parameters(), lr=2e-4, betas=(0.5, 0.999))
    d_opt = torch.optim.Adam(disc.parameters(), lr=2e-4, betas=(0.5, 0.999))
    x = torch.from_numpy(img.transpose(2, 0, 1).copy()).float()[None] * 2 - 1
    g_corners = _crop_sampler(img, 32, rng, True, 7)
    d_corners = _crop_sampler(img, d_size, rng, False, 7)
    weights, mask = TermWeights(cfg), boundary_mask(5)
    for it in range(7):
        g_in = x[..., g_corners[it][0]:g_corners[it][0] + 32, g_corners[it][1]:g_corners[it][1] + 32]
        top, left = d_corners[it]
        real = x[..., top:top + d_size, left:left + d_size] + torch.randn(1, 3, d_size, d_size) * 2 / 255
        g_opt.zero_grad()
        g_out = gen(g_in)
        prior = bicubic_prior_loss(g_in, g_out, bicubic_half_kernel())
        fooled = (disc(g_out) - 1).abs().mean()
        (fooled + weights.total(prior, kernel_terms(gen.kernel(), mask))).backward()
        g_opt.step()
        d_opt.zero_grad()
        fake = gen(g_in).detach() + torch.randn(g_out.shape) / 255
        ((disc(real) - 1).abs().mean() / 2 + disc(fake).abs().mean() / 2).backward()
        d_opt.step()
        if it in (2, 4, 6):
            for group in g_opt.param_groups + d_opt.param_groups:
                group['lr'] = group['lr'] / 10
        weights.update(it, prior.item())
    assert weights.weights == {'bicubic': 5e-6, 'sum2one': 0.5, 'boundaries': 0.5, 'centralized': 1., 'sparse': 5.}
    expected = gen.kernel().detach().double().numpy()
    # the same operations in the same order: equal to float rounding (a noise of 2/256 for 2/255 moves it 1e-5)
    np.testing.assert_allclose(ke.train_kernel_gan(img, cfg, progress=False), expected, rtol=1e-6, atol=1e-12)
    assert not np.allclose(ke.train_kernel_gan(img, dataclasses.replace(cfg, seed=1), progress=False), expected)


def test_kernelgan_progress_bar_and_default_scale(capsys):
    # by default x2, with a progress bar named KernelGAN counting iterations, removed when done (no newline left);
    # progress=False writes nothing
    img = np.random.default_rng(0).uniform(0, 1, (32, 40, 3))
    x2 = ke.estimate_kernel(img, cfg=TINY_GAN)
    err = capsys.readouterr().err
    assert re.match(r'\rKernelGAN: +0%\|', err) and '| 0/2 [' in err and 'it/s]' in err and not err.endswith('\n')
    np.testing.assert_array_equal(ke.estimate_kernel(img, 2, TINY_GAN, progress=False), x2)
    assert capsys.readouterr().err == ''
    ke.estimate_kernel(img, 2, TINY_GAN, desc='img_007')
    assert re.match(r'\rimg_007: +0%\|', capsys.readouterr().err)
    ke.train_kernel_gan(img, TINY_GAN)  # the training alone: the same bar by default
    assert re.match(r'\rKernelGAN: +0%\|', capsys.readouterr().err)


def test_kernelgan_folder_estimates_once_per_settings(tmp_path, capsys):
    # kernels.json (indented by 2) holds the settings (the scale and every option, tuples as lists) and one record
    # per image (seconds, to 0.01 s); a second call with the same settings reads nothing, a changed setting or a lost
    # .npy estimates again; the progress bar counts images and shows the last one's seconds
    reads = []

    def read(path):
        reads.append(path.name)
        return np.random.default_rng(len(path.name)).uniform(0, 1, (40, 36, 3))

    paths = [tmp_path / 'one.png', tmp_path / 'three.png']
    out = tmp_path / 'new' / 'kernels'  # folders made as needed
    done = ke.estimate_folder(paths, out, 2, TINY_GAN, read)
    err = capsys.readouterr().err
    assert re.search(r'kernel estimation x2: +100%\|', err) and '| 2/2 [' in err
    assert re.search(r'(img/s|s/img), last=\d+s\]', err)
    assert done == {'one': out / 'one.npy', 'three': out / 'three.npy'} and reads == ['one.png', 'three.png']
    assert (out / 'kernels.json').read_text().startswith('{\n  "settings": {\n    "scale": 2,')
    manifest = json.loads((out / 'kernels.json').read_text())
    assert manifest['settings'] == {'scale': 2, **dataclasses.asdict(TINY_GAN), 'g_structure': [3, 3, 1]}
    assert sorted(manifest['images']) == ['one', 'three']
    assert all(set(r) == {'seconds'} and 0 <= r['seconds'] < 60 and r['seconds'] == round(r['seconds'], 2)
               for r in manifest['images'].values())
    for stem in ('one', 'three'):  # 5 x 5, padded by the centring shift
        kernel = np.load(out / f'{stem}.npy')
        assert kernel.shape[0] == kernel.shape[1] and kernel.shape[0] % 2 == 1 and kernel.shape[0] >= 5
        assert kernel.sum() == pytest.approx(1, abs=1e-5) and kernel.min() >= 0
        assert (out / f'{stem}.mat').is_file() and (out / f'{stem}_kernel.png').is_file()
    assert ke.estimate_folder(paths, out, 2, TINY_GAN, read) == done and len(reads) == 2
    (out / 'three.npy').unlink()
    ke.estimate_folder(paths, out, 2, TINY_GAN, read)
    assert reads[2:] == ['three.png']
    size = np.load(out / 'one.npy').shape[0]
    ke.estimate_folder(paths, out, 4, TINY_GAN, read)  # x4: a new manifest, every image again, the x2 kernel twice
    assert reads[3:] == ['one.png', 'three.png'] and np.load(out / 'one.npy').shape == (2 * size - 1, ) * 2
    assert json.loads((out / 'kernels.json').read_text())['settings']['scale'] == 4


def test_kernelgan_inputs_are_checked_before_any_estimate(tmp_path):
    import cv2

    cv2.imwrite(str(tmp_path / 'big.png'), np.zeros((40, 33, 3), np.uint8))
    grey = np.arange(40 * 40, dtype=np.uint16).reshape(40, 40) * 40  # 16-bit greyscale
    cv2.imwrite(str(tmp_path / 'grey.png'), grey)
    assert ke.input_images(tmp_path, 33) == [tmp_path / 'big.png', tmp_path / 'grey.png']
    assert ke.input_images(tmp_path / 'grey.png', 40) == [tmp_path / 'grey.png']
    with pytest.raises(SRDistillError, match=r"big.png: image is 33x40, smaller than the estimator's 34px crop$"):
        ke.input_images(tmp_path, 34)
    for bad in (3, 1, 8):
        with pytest.raises(SRDistillError, match=rf'^option --scale: kernel estimation supports 2 or 4, got {bad}$'):
            ke.check_estimation_scale(bad)
        with pytest.raises(SRDistillError, match=rf'^kernel estimation supports scale 2 or 4, got {bad}$'):
            ke.estimate_kernel(np.zeros((40, 40, 3)), bad)
    assert ke.check_estimation_scale(2) == 2 and ke.check_estimation_scale(4) == 4
    # RGB in [0, 1], float32: greyscale replicated, 16 bits divided by 65535; BGR (0, 0, 255) read as red
    rgb = ke.read_rgb(tmp_path / 'grey.png')
    assert rgb.dtype == np.float32 and rgb.shape == (40, 40, 3) and rgb.flags['C_CONTIGUOUS']
    np.testing.assert_allclose(rgb[..., 1], grey / 65535, atol=1e-6)
    colour = np.zeros((2, 2, 3), np.uint8)
    colour[..., 2] = 255
    cv2.imwrite(str(tmp_path / 'red.png'), colour)
    assert ke.read_rgb(tmp_path / 'red.png')[0, 0].tolist() == [1, 0, 0]
    with pytest.raises(SRDistillError, match=r"^image is 20x30, smaller than the estimator's 32px crop$"):
        ke.train_kernel_gan(np.zeros((30, 20, 3)), TINY_GAN, progress=False)
    assert ke.train_kernel_gan(np.zeros((32, 40, 3)), TINY_GAN, progress=False).shape == (5, 5)  # the crop's size
    with pytest.raises(SRDistillError, match=r'nope.*does not exist|no such|not found'):
        ke.estimate_kernels(tmp_path / 'nope', tmp_path / 'out', 2, TINY_GAN)
    assert not (tmp_path / 'out').exists()

# --- MATLAB bicubic, the MZSR network, the official PSNR ------------------------------------------------------------

def test_matlab_resize_x2_by_hand():
    # x2 of (0, 1, ..., 7): output i sits at input position i / 2 - 0.25 and reads the four pixels around it.
    # Output 0 (-0.25) reads positions -2..1 at distances 1.75, 0.75, 0.25, 1.25; MATLAB's symmetric border reads -1
    # as 0 and -2 as 1: out0 = (c(0.75) + c(0.25)) x0 + (c(1.75) + c(1.25)) x1 = 1.09375 x0 - 0.09375 x1 = -0.09375;
    # output 1 (0.25) reads -1..2 at 1.25, 0.25, 0.75, 1.75: 0.2265625 x1 - 0.0234375 x2 = 0.1796875;
    # outputs 4..11 read no border, and cubic reproduces a line there: out i = i / 2 - 0.25
    x = torch.arange(8, dtype=torch.float64).expand(4, 8)  # constant down the rows: their resize keeps them
    out = matlab_resize(x, 2)[3]
    assert out.shape == (16, )
    assert (out[0].item(), out[1].item()) == (pytest.approx(-0.09375), pytest.approx(0.1796875))
    np.testing.assert_allclose(out[4:12].numpy(), np.arange(4, 12) / 2 - 0.25, atol=1e-12)
    assert (out[15].item(), out[14].item()) == (pytest.approx(7.09375), pytest.approx(7 - 0.1796875))
    # a delta in the middle of 8: its x2 picture is the cubic at the quarter-pixel distances
    d = torch.zeros(4, 8, dtype=torch.float64)
    d[:, 4] = 1
    # outputs 5..12 sit at 2.25 .. 5.75: distances 1.75, 1.25, 0.75, 0.25, 0.25, 0.75, 1.25, 1.75 from the delta at 4
    np.testing.assert_allclose(matlab_resize(d, 2)[3, 5:13].numpy(),
                               [CUBIC[t] for t in (1.75, 1.25, 0.75, 0.25, 0.25, 0.75, 1.25, 1.75)], atol=1e-12)


def test_matlab_resize_half_by_hand():
    # x1/2 (antialiased: cubic stretched by 2, weights 0.5 c(0.5 t)): output i sits at input 2 i + 0.5, the taps at
    # distances 3.5, 2.5, 1.5, 0.5 on each side are half of (c(1.75), c(1.25), c(0.75), c(0.25)); a line stays a
    # line (out i = 2 i + 0.5 inside), a delta shows the taps
    x = torch.arange(16, dtype=torch.float64).expand(8, 16)
    out = matlab_resize(x, 0.5)[2]
    assert out.shape == (8, )
    np.testing.assert_allclose(out[2:6].numpy(), [4.5, 6.5, 8.5, 10.5], atol=1e-12)
    d = torch.zeros(8, 16, dtype=torch.float64)
    d[:, 8] = 1
    # outputs 2, 3, 4, 5 sit at 4.5, 6.5, 8.5, 10.5: distances 3.5, 1.5, 0.5, 2.5 from the delta at 8
    np.testing.assert_allclose(matlab_resize(d, 0.5)[2, 2:6].numpy(),
                               [CUBIC[1.75] / 2, CUBIC[0.75] / 2, CUBIC[0.25] / 2, CUBIC[1.25] / 2], atol=1e-12)
    # odd sizes: ceil(5 * 0.5) = 3; an explicit size keeps the x2 weights
    assert matlab_resize(torch.zeros(2, 3, 5, 7), 0.5).shape == (2, 3, 3, 4)
    # (0, 1, 2, 3) x2 to 9 columns: the first eight as x2 gives them (worked as above, the border read at both ends:
    # output 2 at 0.75 reads -1..2, 0.8671875 - 0.140625 = 0.7265625), the ninth at 4.25 mirrored
    line = torch.arange(4, dtype=torch.float64).expand(4, 4)
    y = matlab_resize(line, 2, out_size=(8, 9))
    np.testing.assert_allclose(y[3, :8].numpy(), [-0.09375, 0.1796875, 0.7265625, 1.25, 1.75, 2.2734375, 2.8203125,
                                                  3.09375], atol=1e-12)
    assert y.shape == (8, 9)


def test_matlab_resize_is_differentiable_and_separable():
    # d(sum out)/d x_j = the column sums of the x2 matrix: 2 for an interior pixel of a 1-D x2 (two outputs per input,
    # each set of weights summing to 1)
    x = torch.zeros(12, 12, dtype=torch.float64, requires_grad=True)
    matlab_resize(x, 2).sum().backward()  # two outputs per input along each axis: 4
    np.testing.assert_allclose(x.grad[3:9, 3:9].numpy(), 4., atol=1e-12)
    # rows then columns: an outer product image resizes to the outer product of the resized lines
    a, b = torch.rand(6, dtype=torch.float64), torch.rand(5, dtype=torch.float64)
    out = matlab_resize(torch.outer(a, b), 2)
    up_a = matlab_resize(a[:, None].expand(6, 5), 2)[:, 0]
    up_b = matlab_resize(b[None].expand(6, 5), 2)[0]
    np.testing.assert_allclose(out.numpy(), torch.outer(up_a, up_b).numpy(), atol=1e-12)


def test_mzsr_net_structure_by_hand():
    # 3 -> 64, six 64 -> 64, 64 -> 3, 3 x 3 with biases: 1,792 + 6 x 36,928 + 1,731 = 225,091 parameters; ReLU after
    # all but the last convolution
    net = MZSRNet()
    assert sum(p.numel() for p in net.parameters()) == 225_091
    kinds = [type(m).__name__ for m in net.body]
    assert kinds == ['Conv2d', 'ReLU'] * 7 + ['Conv2d']
    # ZSSR's network: no biases, weights ~ N(0, 0.1 / fan_in): a 64 -> 64 layer's std sqrt(0.1 / 576) = 0.01318
    torch.manual_seed(0)
    zssr = MZSRNet(bias=False, init_variance=0.1)
    assert all(conv.bias is None for conv in zssr.body if isinstance(conv, torch.nn.Conv2d))
    assert zssr.body[2].weight.std().item() == pytest.approx(math.sqrt(0.1 / 576), rel=0.02)
    assert zssr.body[0].weight.std().item() == pytest.approx(math.sqrt(0.1 / 27), rel=0.1)


def test_mzsr_net_is_the_upsampled_input_plus_the_body():
    # with the body's last layer zeroed the output is MATLAB bicubic x2 exactly; with upscale 1 the input itself;
    # out_size upsamples to a given size
    net = MZSRNet(num_feat=8, num_layers=3)
    with torch.no_grad():
        net.body[-1].weight.zero_()
        net.body[-1].bias.fill_(0.25)
    x = torch.rand(1, 3, 5, 6)
    assert torch.allclose(net(x), matlab_resize(x, 2) + 0.25, atol=1e-6)
    assert net(x, out_size=(9, 11)).shape == (1, 3, 9, 11)
    same = MZSRNet(num_feat=8, num_layers=3, upscale=1)
    with torch.no_grad():
        same.body[-1].weight.zero_()
        same.body[-1].bias.zero_()
    assert torch.equal(same(x), x)
    with pytest.raises(ValueError, match=r'^MZSRNet: out_size needs upscale > 1 \(upscale 1 takes'):
        same(x, out_size=(9, 11))


def test_official_psnr_by_hand():
    # BT.601 Y = 16 + (65.481 R + 128.553 G + 24.966 B) / 255 on [0, 255]: white 235, black 16; BGR order
    white, black = np.full((1, 1, 3), 255.), np.zeros((1, 1, 3))
    assert y8(white)[0, 0] == 235 and y8(black)[0, 0] == 16
    blue = np.zeros((1, 1, 3))
    blue[0, 0, 0] = 255  # B in BGR: Y = 16 + 24.966 = 40.966 -> 41
    assert y8(blue)[0, 0] == 41
    # 4 x 4 images, one pixel 10 Y levels off inside the 2 x 2 left after border 1: mse 100 / 4 = 25
    a = np.full((4, 4, 3), 128.)
    b = a.copy()
    b[1, 2] = 128 + 10 * 255 / 219  # Y rises by exactly 10 levels
    assert psnr_y8(a, b, 1) == pytest.approx(10 * math.log10(255 ** 2 / 25), abs=1e-6)
    assert psnr_y8(a, b, 0) == pytest.approx(10 * math.log10(255 ** 2 / (100 / 16)), abs=1e-6)
    b[0, 0] = 0  # in the border: not read with border 1
    assert psnr_y8(a, b, 1) == pytest.approx(10 * math.log10(255 ** 2 / 25), abs=1e-6)
    assert psnr_y8(a, a, 1) == float('inf')
    with pytest.raises(ValueError, match=r'^Image shapes are different: \(4, 4, 3\), \(3, 4, 3\)\.$'):
        psnr_y8(a, a[:3], 1)
    # one pixel one Y level off: mse 1 -> 10 log10(255^2) = 48.13 dB
    one, other = np.full((1, 1, 3), 128.), np.full((1, 1, 3), 128. + 255 / 219)
    assert psnr_y8(one, other, 0) == pytest.approx(10 * math.log10(255 ** 2), abs=1e-6)
