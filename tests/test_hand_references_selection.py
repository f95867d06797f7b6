"""Hand-computed references for the zero-shot inputs, the estimator's training pairs, representative selection
(SR features, kernel herding, proportional budgets) and the set diagnostics (k-center, coverage, diversity). Every
expected value is written out here (worked in the comments) or drawn again from a twin random generator, never
produced by the function under test."""
import dataclasses
import json
import math
import re

import cv2
import numpy as np
import pytest
import torch

from srdistill.core import features
from srdistill.core.blur_synthesis import BlurSynthesis, noisy_jpeg
from srdistill.core.errors import SRDistillError
from srdistill.core.kernels import degrade, gaussian_kernel
from srdistill.core.representative import (SR_FEATURE_NAMES, kernel_herding, median_bandwidth, proportional_split,
                                           sr_patch_features, standardize)
from srdistill.core.set_diagnostics import (coverage, diversity, gradient_energy, k_center_greedy,
                                            pairwise_distances)
from srdistill.core.zero_shot_inputs import (ZeroShotInput, kernels_for, lr_image_paths, paired_hr_paths, read_inputs,
                                             to_image, to_tensor)


def write(path, img) -> None:
    cv2.imwrite(str(path), np.asarray(img, dtype=np.uint8))


# --- zero-shot inputs -----------------------------------------------------------------------------------------------

def test_inputs_colour_order_and_rounding_by_hand():
    bgr = np.zeros((1, 2, 3), np.float32)
    bgr[0, 0] = (0.1, 0.2, 0.3)
    t = to_tensor(bgr)
    assert t.shape == (3, 1, 2) and t.dtype == torch.float32
    np.testing.assert_allclose(t[:, 0, 0].numpy(), [0.3, 0.2, 0.1], rtol=1e-6)
    # RGB (0.5, 0.2, 1.3) and (-0.1, 1, 0): x 255 = 127.5 -> 128 (half to even), 51, clamped 255; 0, 255, 0; as BGR
    rgb = torch.tensor([[[0.5, -0.1]], [[0.2, 1.0]], [[1.3, 0.0]]])
    img = to_image(rgb[None])
    assert img.dtype == np.uint8 and img.shape == (1, 2, 3)
    assert img[0, 0].tolist() == [255, 51, 128] and img[0, 1].tolist() == [0, 255, 0]


def test_inputs_pairs_kernels_and_crops_by_hand(tmp_path):
    lq_dir, gt_dir, k_dir = tmp_path / 'lq', tmp_path / 'gt', tmp_path / 'k'
    for d in (lq_dir, gt_dir, k_dir):
        d.mkdir()
    write(lq_dir / 'aX2.png', np.full((5, 6, 3), 10))
    write(lq_dir / 'bX2.png', np.full((4, 4, 3), 10))
    write(gt_dir / 'a.png', np.full((11, 13, 3), 20))  # 13 x 11 mod-cropped to 12 x 10 = 2 x (6 x 5)
    write(gt_dir / 'b.png', np.full((8, 8, 3), 20))
    lq = lr_image_paths(lq_dir)
    assert [p.name for p in lq] == ['aX2.png', 'bX2.png'] and lr_image_paths(lq[0]) == [lq[0]]
    assert paired_hr_paths(lq, None, '{}X2', 2) == [None, None]
    assert [p.name for p in paired_hr_paths(lq, gt_dir, '{}X2', 2)] == ['a.png', 'b.png']
    with pytest.raises(SRDistillError, match=r"aX2\.png: no HR image for it in .*gt \(filename_tmpl '\{\}x2'\)$"):
        paired_hr_paths(lq, gt_dir, '{}x2', 2)
    with pytest.raises(SRDistillError, match=r"^option filename_tmpl: '\{0\}\{1\}' is not a template with one"):
        paired_hr_paths(lq, gt_dir, '{0}{1}', 2)
    with pytest.raises(SRDistillError, match=r'a\.png: HR is 13x11, but LR aX2\.png is 6x5 and scale 3 needs 18x15$'):
        paired_hr_paths(lq, gt_dir, '{}X2', 3)
    inputs = read_inputs(lq, paired_hr_paths(lq, gt_dir, '{}X2', 2), 2)
    assert inputs[0].lq.shape == (3, 5, 6) and inputs[0].gt.shape == (3, 10, 12)
    assert inputs[0].lq[0, 0, 0].item() == pytest.approx(10 / 255) and inputs[0].kernel is None
    # kernels: exactly one source; a kernel larger than its image refused
    np.save(k_dir / 'aX2.npy', gaussian_kernel(3, 1., 1.))
    np.save(k_dir / 'bX2.npy', gaussian_kernel(5, 1., 1.))
    kernels = kernels_for(lq[:1], kernel_dir=k_dir)
    np.testing.assert_allclose(kernels[0].numpy(), gaussian_kernel(3, 1., 1.), rtol=1e-6)
    shared = kernels_for(lq, kernel_file=k_dir / 'aX2.npy')
    assert len(shared) == 2 and torch.equal(shared[0], shared[1])
    with pytest.raises(SRDistillError, match=r'^give exactly one of kernel_file, kernel_dir$'):
        kernels_for(lq)
    with pytest.raises(SRDistillError, match=r'^give exactly one of kernel_file, kernel_dir$'):
        kernels_for(lq, k_dir / 'aX2.npy', k_dir)
    with pytest.raises(SRDistillError, match=r'^option kernel_dir: .*nowhere is not a folder$'):
        kernels_for(lq, kernel_dir=tmp_path / 'nowhere')
    np.save(k_dir / 'aX2.npy', gaussian_kernel(7, 1., 1.))  # 7 x 7 on a 6 x 5 LR: taller than the image
    with pytest.raises(SRDistillError, match=r'aX2\.png: the 7x7 kernel is larger than the 6x5 image$'):
        kernels_for(lq, kernel_dir=k_dir)
    np.save(k_dir / 'aX2.npy', gaussian_kernel(5, 1., 1.))  # 5 x 5 on 6 x 5 fits; on bX2 (4 x 4) it does not
    with pytest.raises(SRDistillError, match=r'bX2\.png: the 5x5 kernel is larger than the 4x4 image$'):
        kernels_for(lq, kernel_dir=k_dir)
    # one side too small is enough to refuse; a kernel exactly as wide as the image fits
    write(lq_dir / 'cX2.png', np.full((4, 6, 3), 10))
    write(lq_dir / 'dX2.png', np.full((6, 5, 3), 10))
    with pytest.raises(SRDistillError, match=r'cX2\.png: the 5x5 kernel is larger than the 6x4 image$'):
        kernels_for([lq_dir / 'cX2.png'], kernel_file=k_dir / 'aX2.npy')
    assert kernels_for([lq_dir / 'dX2.png'], kernel_file=k_dir / 'aX2.npy')[0].shape == (5, 5)
    fresh = ZeroShotInput(lq[0], inputs[0].lq)
    assert fresh.gt is None and fresh.kernel is None


# --- the estimator's training pairs ---------------------------------------------------------------------------------

def test_synthesis_defaults_typed_out():
    # the shipped estimator's training pairs (benchmarks/results/kernel_predictor_x2): x2 direct, 15 x 15 kernels, 30 %
    # from the broad family with eigenvalues in [0.2, 5], photographs first downscaled by 0.5-1, noise up to 3 levels
    # on 20 %, JPEG 70-95 on 20 %
    assert BlurSynthesis() == BlurSynthesis(scale=2, downsample='direct', kernel_size=15, broad_share=0.3,
                                            variance_range=(0.2, 5.0), sharpen=(0.5, 1.0), noise_prob=0.2,
                                            noise_max_sigma=3., jpeg_prob=0.2, jpeg_quality=(70, 95))
    with pytest.raises(dataclasses.FrozenInstanceError):
        BlurSynthesis().scale = 4


def test_synthesis_kernel_draws_by_hand():
    # first a uniform for the family; MZSR's family: lambda1 ~ U[1, 2.5 s], lambda2 ~ U[1, lambda1], theta ~ U[0, pi];
    # the broad one: two log-uniform eigenvalues in the range (larger first), then theta
    twin = np.random.default_rng(3)
    mzsr = BlurSynthesis(broad_share=0.)
    drawn = mzsr.draw_params(np.random.default_rng(3))
    twin.random()
    l1 = twin.uniform(1, 5)
    l2 = twin.uniform(1, l1)
    assert drawn == pytest.approx((l1, l2, twin.uniform(0, math.pi)))
    broad = BlurSynthesis(broad_share=1., variance_range=(0.2, 5.))
    twin = np.random.default_rng(4)
    drawn = broad.draw_params(np.random.default_rng(4))
    twin.random()
    a, b = np.exp(twin.uniform(math.log(0.2), math.log(5.), 2))
    assert drawn == pytest.approx((max(a, b), min(a, b), twin.uniform(0, math.pi)))
    # the share: over 2,000 draws with share 0.3, the broad family (any eigenvalue below 1) shows up at about 0.3 x
    # its own chance of an eigenvalue below 1 (ln 5 / ln 25 = 1/2 per eigenvalue: 3/4 for the smaller) = 0.225
    rng = np.random.default_rng(0)
    below = np.mean([min(BlurSynthesis().draw_params(rng)[:2]) < 1 for _ in range(2000)])
    assert below == pytest.approx(0.225, abs=0.03)


def test_synthesis_sharpened_crop_by_hand():
    img = np.random.default_rng(0).random((100, 80, 3)).astype(np.float32)
    # factor 0.5 (more than 32 / 80 = 0.4): a 64 px square, central: top (100 - 64) // 2 = 18, left 8; area-averaged
    # to 32 = the mean of each 2 x 2 block
    fixed = BlurSynthesis(sharpen=(0.5, 0.5))
    crop = fixed.sharpened_crop(img, 32, np.random.default_rng(0), centre=True)
    expected = img[18:82, 8:72].reshape(32, 2, 32, 2, 3).mean((1, 3))
    np.testing.assert_allclose(crop, expected, atol=1e-6)
    # factor 1: the crop itself; random places stay inside the image
    crop = BlurSynthesis(sharpen=(1., 1.)).sharpened_crop(img, 32, np.random.default_rng(0), centre=True)
    np.testing.assert_array_equal(crop, img[34:66, 24:56])
    twin = np.random.default_rng(5)
    twin.uniform(1., 1.)
    top, left = int(twin.integers(0, 69)), int(twin.integers(0, 49))
    crop = BlurSynthesis(sharpen=(1., 1.)).sharpened_crop(img, 32, np.random.default_rng(5))
    np.testing.assert_array_equal(crop, img[top:top + 32, left:left + 32])
    # random places: every top 0..8 and left 0..4 of a 40 x 36 image, none beyond
    rng = np.random.default_rng(0)
    corners = set()
    for _ in range(300):
        crop = BlurSynthesis(sharpen=(1., 1.)).sharpened_crop(img[:40, :36], 32, rng)
        hits = [(top, left) for top in range(9) for left in range(5)
                if np.array_equal(crop, img[top:top + 32, left:left + 32])]
        assert len(hits) == 1
        corners.add(hits[0])
    assert {top for top, _ in corners} == set(range(9)) and {left for _, left in corners} == set(range(5))
    # an image too small for the factor: raised to 32 / 40 = 0.8, the whole 40 x 40 area-resized to 32
    small = img[:40, :40]
    crop = fixed.sharpened_crop(small, 32, np.random.default_rng(0), centre=True)
    np.testing.assert_allclose(crop, cv2.resize(small, (32, 32), interpolation=cv2.INTER_AREA), atol=1e-6)


def test_synthesis_degradation_draws_noise_then_jpeg_by_hand():
    hr = np.random.default_rng(1).random((24, 24, 3)).astype(np.float32)
    params = (2., 1., 0.4)
    lr = degrade(torch.from_numpy(hr.transpose(2, 0, 1)).float()[None],
                 torch.from_numpy(gaussian_kernel(15, *params)), 2, 'direct')[0].numpy().transpose(1, 2, 0)
    clean = BlurSynthesis(noise_prob=0., jpeg_prob=0.).degrade(hr, params, np.random.default_rng(0))
    np.testing.assert_array_equal(clean * 255, np.clip(np.round(lr * 255), 0, 255))
    # always noisy, never JPEG: uniform for the noise, sigma ~ U[0, 3], uniform for JPEG, then the noise itself
    synthesis = BlurSynthesis(noise_prob=1., jpeg_prob=0.)
    twin = np.random.default_rng(2)
    twin.random()
    sigma = twin.uniform(0, 3.)
    twin.random()
    expected = np.clip(np.round(lr * 255 + twin.normal(0, sigma, lr.shape)), 0, 255)
    np.testing.assert_array_equal(synthesis.degrade(hr, params, np.random.default_rng(2)) * 255, expected)
    # always JPEG: quality ~ integers[70, 95], no noise drawn
    synthesis = BlurSynthesis(noise_prob=0., jpeg_prob=1.)
    twin = np.random.default_rng(6)
    twin.random()
    twin.random()
    quality = int(twin.integers(70, 96))
    expected = noisy_jpeg(lr, np.random.default_rng(0), 0., quality)
    np.testing.assert_array_equal(synthesis.degrade(hr, params, np.random.default_rng(6)), expected)


def test_synthesis_eight_bits_by_hand():
    # no noise by default: x 255, rounded (half to even), clipped to [0, 255] before the 8-bit cast
    img = np.array([[[-0.1, 0., 0.5 / 255], [1.5 / 255, 1.0, 1.2]]])
    out = noisy_jpeg(img, np.random.default_rng(0)) * 255
    np.testing.assert_array_equal(out, [[[0., 0., 0.], [2., 255., 255.]]])


# --- representative selection ---------------------------------------------------------------------------------------

def test_representative_standardize_and_bandwidth_by_hand():
    # columns (1, 3), (1, 5), (1, 2) (std 1, 2, 0.5) -> (-1, 1) each; a constant column stays 0
    np.testing.assert_allclose(standardize(np.array([[1., 1., 1., 5.], [3., 5., 2., 5.]])),
                               [[-1., -1., -1., 0.], [1., 1., 1., 0.]], atol=1e-6)
    # rows 0, 3, 4: distances 3, 4, 1 -> median 3; identical rows: 1
    assert median_bandwidth(np.array([[0.], [3.], [4.]])) == pytest.approx(3.)
    assert median_bandwidth(np.zeros((4, 2))) == 1.
    assert median_bandwidth(np.array([[0.], [0.5], [1.]])) == pytest.approx(0.5)  # 0.5, 1, 0.5: below 1 kept
    # more rows than the sample: the median over the first 1,000 of numpy's permutation with seed 0
    many = np.random.default_rng(1).normal(size=(1500, 2))
    rows = many[np.random.default_rng(0).permutation(1500)[:1000]]
    expected = np.median(pairwise_distances(rows, rows)[np.triu_indices(1000, 1)])
    assert median_bandwidth(many) == pytest.approx(expected, rel=1e-9)
    # only ``sample`` rows are read: 2 of (0, 10, 10) are 0 and 10, or 10 and 10 -> 10 or 1 (all equal)
    assert median_bandwidth(np.array([[0.], [10.], [10.]]), sample=2, seed=0) in (10., 1.)


def test_representative_kernel_herding_by_hand():
    # rows 0, 1, 3 (1-D), bandwidth 1 (gamma 1/2): similarities exp(-d^2 / 2): d 1 -> e^-.5, 2 -> e^-2, 3 -> e^-4.5
    s1, s2, s3 = math.exp(-0.5), math.exp(-2), math.exp(-4.5)
    attraction = np.array([1 + s1 + s3, s1 + 1 + s2, s3 + s2 + 1]) / 3  # 0.5392, 0.5806, 0.3821
    features = np.array([[0.], [1.], [3.]])
    # pick 1: attraction alone -> row 1; pick 2: attraction - sim(., row 1) / 2 = (0.2359, -, 0.3145) -> row 2;
    # pick 3: row 0; pick 4 (all taken, start again): attraction - (sum of sims to 1, 2, 0) / 4 =
    # (0.5392 - 1.6176 / 4, 0.5806 - 1.7419 / 4, 0.3821 - 1.1465 / 4) = (0.1348, 0.1451, 0.0955) -> row 1
    assert kernel_herding(features, 4, bandwidth=1.) == [1, 2, 0, 1]
    second = attraction - np.array([s1, 1, s2]) / 2
    assert np.argmax(np.where([True, False, True], second, -np.inf)) == 2  # the worked step above
    # preselected row 2: attraction - sim(., row 2) / 2 = (0.5392 - 0.0056, 0.5806 - 0.0677) -> row 0
    assert kernel_herding(features, 2, preselected=[2], bandwidth=1.) == [2, 0]
    # a reference elsewhere: rows near 3 are attracted first
    assert kernel_herding(features, 1, reference=np.array([[2.9], [3.1]]), bandwidth=1.) == [2]
    assert kernel_herding(features, 0) == [] and kernel_herding(np.zeros((0, 1)), 3) == []
    # preselected beyond count: only the first ``count``
    assert kernel_herding(features, 1, preselected=[0, 2], bandwidth=1.) == [0]


def test_representative_proportional_split_by_hand():
    # 10 over (1, 1, 1): 3.33 each, floors 3, the one left to the first largest remainder (ties in order) -> 4, 3, 3
    assert proportional_split(10, [1, 1, 1]) == [4, 3, 3]
    # 3 over (0, 5, 5): 0, 1.5, 1.5 -> 0, 2, 1; 7 over (1, 2, 4): 1, 2, 4 exactly
    assert proportional_split(3, [0, 5, 5]) == [0, 2, 1]
    assert proportional_split(7, [1, 2, 4]) == [1, 2, 4]
    # 5 over (2, 7): 1.11, 3.89 -> floors 1, 3, the remainder to the second (0.89 > 0.11) -> 1, 4
    assert proportional_split(5, [2, 7]) == [1, 4]
    assert proportional_split(4, [0, 0]) == [0, 0]
    # one class of size 1 takes all; 4 over (6, 1, 1): 3, 0.5, 0.5 -> floors 3, 0, 0, the one left by remainder
    # (0, 0.5, 0.5) to class 1, not to the largest class
    assert proportional_split(3, [1]) == [3] and proportional_split(3, [0, 1]) == [0, 3]
    assert proportional_split(4, [6, 1, 1]) == [3, 1, 0]


def test_representative_sr_features_of_plain_images_by_hand():
    # a white 16 x 16, 8 px patches at stride 8: four patches; no detail -> log(0 + 1e-6) for the residual, the bands
    # and the gradient energy; no orientation (0 / 1e-6 = 0); Lab of white: L 100 -> 1.0 after / 100, a = b = 0, L std 0
    features, ys, xs = sr_patch_features(np.ones((16, 16, 3), np.float32), 8, 8, 2)
    assert features.shape == (4, 11) and sorted(zip(ys.ravel(), xs.ravel())) == [(0, 0), (0, 8), (8, 0), (8, 8)]
    np.testing.assert_allclose(features[:, :5], math.log(1e-6), atol=1e-3)
    np.testing.assert_allclose(features[:, 5:], np.tile([0., 0., 1., 0., 0., 0.], (4, 1)), atol=1e-3)
    # vertical stripes (intensity varies along x only): gxx > 0, gyy = gxy = 0 -> cos2 = 1, sin2 = 0; horizontal
    # stripes: cos2 = -1; a 45-degree ramp x + y: gxx = gyy = gxy -> cos2 = 0, sin2 = 1
    xs_ = np.arange(32, dtype=np.float32)
    cases = [(np.tile(0.5 + 0.4 * np.sin(xs_ / 2), (32, 1)), (1., 0.)),
             (np.tile(0.5 + 0.4 * np.sin(xs_ / 2), (32, 1)).T, (-1., 0.)),
             ((xs_[None] + xs_[:, None]) / 64, (0., 1.))]
    for grey, (cos2, sin2) in cases:
        img = np.repeat(grey[..., None], 3, 2).astype(np.float32)
        features, _, _ = sr_patch_features(img, 8, 8, 2)
        inner = features[5]  # the patch at (8, 8): away from the border
        assert (inner[5], inner[6]) == (pytest.approx(cos2, abs=0.02), pytest.approx(sin2, abs=0.02))
    # L std of a patch half black, half white: L 0 and 1 -> std 0.5
    img = np.zeros((8, 8, 3), np.float32)
    img[:, 4:] = 1
    assert sr_patch_features(img, 8, 8, 2)[0][0, 10] == pytest.approx(0.5, abs=1e-3)


def test_representative_sr_features_from_their_definitions():
    # each column rebuilt from its definition with other libraries: scipy's Gaussian (truncated at 4 sigma, mirrored
    # border = OpenCV's default), scipy's Sobel, BasicSR's imresize for the x2 bicubic round trip (not rounded),
    # OpenCV's grey and Lab, and plain window means (8 px patches at stride 4 of a random 16 x 20 image)
    from scipy import ndimage

    from srdistill.core.degradations import imresize

    img = np.random.default_rng(0).random((16, 20, 3)).astype(np.float32)
    grey = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY).astype(np.float64)
    rebuilt = cv2.cvtColor(np.clip(imresize(np.clip(imresize(img, 0.5), 0, 1), 2), 0, 1).astype(np.float32),
                           cv2.COLOR_BGR2GRAY)
    blurred = [grey] + [ndimage.gaussian_filter(grey, s, mode='mirror', truncate=4.) for s in (1, 2, 4)]
    gx, gy = ndimage.sobel(grey, 1, mode='mirror'), ndimage.sobel(grey, 0, mode='mirror')
    lab = cv2.cvtColor(img, cv2.COLOR_BGR2Lab).astype(np.float64) / 100
    features, ys, xs = sr_patch_features(img, 8, 4, 2)
    assert features.shape == (3 * 4, 11) and len(SR_FEATURE_NAMES) == 11
    for row, (y, x) in enumerate(zip(ys.ravel(), xs.ravel())):
        win = (slice(y, y + 8), slice(x, x + 8))
        gxx, gyy, gxy = (gx[win] ** 2).mean(), (gy[win] ** 2).mean(), (gx[win] * gy[win]).mean()
        energy = gxx + gyy + 1e-6
        expected = [np.log(((grey - rebuilt)[win] ** 2).mean() + 1e-6),
                    *(np.log(((fine - coarse)[win] ** 2).mean() + 1e-6) for fine, coarse in zip(blurred, blurred[1:])),
                    np.log(energy), (gxx - gyy) / energy, 2 * gxy / energy,
                    lab[win][..., 0].mean(), lab[win][..., 1].mean(), lab[win][..., 2].mean(), lab[win][..., 0].std()]
        np.testing.assert_allclose(features[row], expected, rtol=2e-3, atol=2e-4, err_msg=f'patch at {(y, x)}')


def test_representative_residual_of_a_plane_is_zero_inside():
    # bicubic reproduces a plane, so away from the border the x2 round trip leaves no residual: log(0 + 1e-6); an LR
    # rounded to 8 bits on the way would leave about (1/255)^2 / 12 per pixel (log -13.3)
    ys, xs = np.mgrid[:32, :32].astype(np.float32)
    img = np.repeat((0.3 + 0.004 * xs + 0.003 * ys)[..., None], 3, 2)
    features, ys_, xs_ = sr_patch_features(img, 8, 8, 2)
    inner = [i for i, (y, x) in enumerate(zip(ys_.ravel(), xs_.ravel())) if 0 < y < 24 and 0 < x < 24]
    np.testing.assert_allclose(features[inner, 0], math.log(1e-6), atol=0.05)


def test_representative_feature_names_typed_out():
    assert SR_FEATURE_NAMES == ('log bicubic residual', 'log DoG band 0-1', 'log DoG band 1-2', 'log DoG band 2-4',
                                'log gradient energy', 'orientation cos2', 'orientation sin2', 'L mean', 'a mean',
                                'b mean', 'L std')


def greedy_mmd_picks(features, count, reference, bandwidth, preselected=()):
    """Kernel herding written as its definition: each pick is the untaken row (all rows again once every one has been
    taken) whose addition makes the picked set's squared maximum mean discrepancy to ``reference`` smallest."""
    k = lambda a, b: np.exp(-((a[:, None, :] - b[None]) ** 2).sum(-1) / (2 * bandwidth ** 2))  # noqa: E731

    def mmd2(rows):
        picked = features[rows]
        return k(picked, picked).mean() - 2 * k(picked, reference).mean() + k(reference, reference).mean()

    picks = list(preselected)[:count]
    taken = set(picks)
    while len(picks) < count:
        if len(taken) == len(features):
            taken = set()
        options = [i for i in range(len(features)) if i not in taken]
        best = min(options, key=lambda i: mmd2(picks + [i]))
        picks.append(best)
        taken.add(best)
    return picks


def test_representative_kernel_herding_is_greedy_mmd_minimisation():
    rng = np.random.default_rng(0)
    features, reference = rng.normal(size=(9, 2)), rng.normal(0.5, 1.5, size=(30, 2))
    for bandwidth in (0.4, 1.3):
        assert kernel_herding(features, 12, reference, bandwidth=bandwidth) == \
            greedy_mmd_picks(features, 12, reference, bandwidth)
        assert kernel_herding(features, 11, reference, preselected=[4, 7], bandwidth=bandwidth) == \
            greedy_mmd_picks(features, 11, reference, bandwidth, preselected=[4, 7])
    # no bandwidth: the median distance of the reference's rows; small chunks change nothing
    median = float(np.median(pairwise_distances(reference, reference)[np.triu_indices(30, 1)]))
    assert kernel_herding(features, 5, reference) == greedy_mmd_picks(features, 5, reference, median)
    assert kernel_herding(features, 5, reference, chunk=2) == kernel_herding(features, 5, reference)
    assert kernel_herding(features, 4) == greedy_mmd_picks(features, 4, features, float(np.median(
        pairwise_distances(features, features)[np.triu_indices(9, 1)])))


# --- set diagnostics ------------------------------------------------------------------------------------------------

def test_diagnostics_distances_and_k_center_by_hand():
    a = np.array([[0., 0.], [3., 4.]])
    np.testing.assert_allclose(pairwise_distances(a, np.array([[0., 0.], [6., 8.]])), [[0., 10.], [5., 5.]], atol=1e-9)
    # 1-D rows 0, 1, 10, 4: start at row 0; farthest 10 (row 2); then nearest distances (0, 1, 0, 4) -> row 3;
    # then (0, 1, 0, 0) -> row 1; asking for 6 repeats the order
    rows = np.array([[0.], [1.], [10.], [4.]])
    assert k_center_greedy(rows, 3) == [0, 2, 3]
    assert k_center_greedy(rows, 6) == [0, 2, 3, 1, 0, 2]
    assert k_center_greedy(rows, 0) == [] and k_center_greedy(np.zeros((0, 1)), 2) == []
    assert k_center_greedy(rows, 1) == [0]


def test_diagnostics_coverage_diversity_and_gradient_energy_by_hand():
    # reference 0, 1, 10 against kept 0, 8: nearest 0, 1, 2 -> mean 1; chunks do not change it
    reference, kept = np.array([[0.], [1.], [10.]]), np.array([[0.], [8.]])
    assert coverage(reference, kept) == pytest.approx(1.)
    assert coverage(reference, kept, chunk=1) == pytest.approx(1.)
    # diversity of 0, 3, 4: distances 3, 4, 1 each counted twice over 3 x 2 ordered pairs -> 16 / 6
    assert diversity(np.array([[0.], [3.], [4.]])) == pytest.approx(16 / 6)
    assert diversity(np.array([[1.]])) == 0.
    assert diversity(np.array([[0., 0.], [3., 4.]])) == pytest.approx(5.)  # two: their distance
    # a grey ramp rising 0.01 per column, 10 columns: Sobel x = (x[j+1] - x[j-1]) (1 + 2 + 1) = 0.08 inside; OpenCV's
    # border (reflect 101) reads column 1 on both sides of column 0 (and 8 of column 9), so 0 there: 8 x 0.08 / 10
    ramp = np.repeat(np.tile(np.arange(10, dtype=np.float32) * 0.01, (10, 1))[..., None], 3, 2)
    inner = 8 * 0.01
    assert gradient_energy(ramp) == pytest.approx((8 * inner + 2 * 0.) / 10, abs=1e-4)
    # 0.01 x + 0.02 y: gx = 0.08 but on columns 0 and 9, gy = 0.16 but on rows 0 and 9 -> 64 inner pixels of
    # sqrt(0.08^2 + 0.16^2), 16 of 0.08, 16 of 0.16 and 4 corners of 0, over 100
    ys, xs = np.mgrid[:10, :10].astype(np.float32)
    plane = np.repeat((0.01 * xs + 0.02 * ys)[..., None], 3, 2)
    expected = (64 * math.hypot(0.08, 0.16) + 16 * 0.08 + 16 * 0.16) / 100
    assert gradient_energy(plane) == pytest.approx(expected, abs=1e-5)


# --- label-free grouping features -----------------------------------------------------------------------------------

def test_descriptor_of_a_flat_colour_is_one_hsv_bin_by_hand():
    # BGR (0.2, 0.6, 0.2) -> u8 (51, 153, 51): green is the maximum, so hue = 60 * (2 + (B - R) / (max - min)) = 120
    # degrees, 60 in OpenCV's half-degree scale -> bin 60 // (180 / 8) = 2; saturation (153 - 51) / 153 * 255 = 170 ->
    # bin 170 // 64 = 2; value 153 -> bin 2. Flat: no gradient anywhere, so the other 20 entries are 0.
    # 8 x 4 x 4 colour bins + 16 orientations + 4 pyramid energies = 148 entries; the one-hot is at 2*16 + 2*4 + 2.
    flat = np.full((12, 10, 3), (0.2, 0.6, 0.2), np.float32)
    expected = np.zeros(148, np.float32)
    expected[42] = 1
    np.testing.assert_array_equal(features.colour_texture_descriptor(flat), expected)
    # above 1 is clipped before the 8-bit conversion: (51, 255, 51) -> hue 60 (bin 2), saturation 204 (bin 3),
    # value 255 (bin 3) -> 2*16 + 3*4 + 3 = 47 (unclipped, 1.5 * 255 wraps to 126 in uint8: value bin 1)
    expected = np.zeros(148, np.float32)
    expected[47] = 1
    bright = np.full((12, 10, 3), (0.2, 1.5, 0.2), np.float32)  # float rounding leaves ~1e-8 gradient energy
    np.testing.assert_allclose(features.colour_texture_descriptor(bright), expected, atol=1e-6)
    # bin edges: cyan (255, 255, 0) has hue 180 degrees = 90 = 4 x 22.5, the first value of bin 4 -> 4*16 + 3*4 + 3;
    # (63, 255, 63) has saturation 255 (255 - 63) / 255 = 192 = 3 x 64, the first value of bin 3 -> 2*16 + 3*4 + 3
    for bgr, index in (((1, 1, 0), 79), ((63.5 / 255, 1, 63.5 / 255), 47)):
        expected = np.zeros(148, np.float32)
        expected[index] = 1
        descriptor = features.colour_texture_descriptor(np.full((12, 10, 3), bgr, np.float32))
        np.testing.assert_allclose(descriptor, expected, atol=1e-6)


@pytest.mark.parametrize('angle', [0.5, 6.0])
def test_descriptor_of_a_ramp_from_its_definition(angle):
    """A grey ramp rising along ``angle`` (rad), rebuilt with scipy: Sobel derivatives (mirrored borders), the
    magnitude-weighted histogram of 16 orientations on the full image, the mean magnitude on four levels of the
    Gaussian pyramid ([1 4 6 4 1] / 16 both ways, every second pixel), the 8-bit value histogram (grey: hue and
    saturation 0), the colour part summing to 1 and the whole to unit length."""
    from scipy import ndimage

    y, x = np.mgrid[0:40, 0:48].astype(np.float64)
    grey = 0.2 + 0.01 * x + 0.01 * np.tan(angle) * y  # within 0.09 .. 0.88
    img = np.repeat(grey[..., None], 3, axis=2).astype(np.float32)
    colour = np.zeros(128)
    np.add.at(colour, (img[..., 0] * 255).astype(np.uint8).ravel() // 64, 1)  # hue bin 0, saturation bin 0
    parts, g = [colour / colour.sum()], img[..., 0].astype(np.float64)
    binomial = np.array([1, 4, 6, 4, 1]) / 16
    for level in range(4):
        gx, gy = ndimage.sobel(g, axis=1, mode='mirror'), ndimage.sobel(g, axis=0, mode='mirror')
        magnitude = np.hypot(gx, gy)
        if level == 0:
            bins = (np.mod(np.arctan2(gy, gx), 2 * np.pi) / (2 * np.pi) * 16).astype(int)
            hist = np.bincount(bins.ravel(), weights=magnitude.ravel(), minlength=16)
            parts.append(hist / hist.sum())
        parts.append([magnitude.mean()])
        g = ndimage.convolve1d(ndimage.convolve1d(g, binomial, axis=0, mode='mirror'), binomial, axis=1,
                               mode='mirror')[::2, ::2]
    expected = np.concatenate(parts)
    expected /= np.linalg.norm(expected)
    # inside, the ramp points at bin 0.5 / (2 pi) * 16 = 1.27 (or 6.0 / (2 pi) * 16 = 15.28); the mirrored borders
    # at 0 (left, right) and at pi / 2 (bin 4) or 3 pi / 2 (bin 12)
    inside, border = (1, 4) if angle == 0.5 else (15, 12)
    assert np.flatnonzero(expected[128:144]).tolist() == sorted([0, inside, border]) and expected[128 + inside] > 0.7
    np.testing.assert_allclose(features.colour_texture_descriptor(img), expected, atol=1e-6)


def test_kmeans_finds_three_separated_groups_and_repeats_with_its_seed():
    rng = np.random.default_rng(0)
    centres = np.eye(3)
    groups = np.repeat(np.arange(3), [5, 7, 4])
    points = centres[groups] + 0.01 * rng.standard_normal((16, 3))
    labels = features.cluster(points, 3)
    assert labels.dtype.kind == 'i' and labels.shape == (16, )
    # one label per group, three different labels
    assert [len(set(labels[groups == k])) for k in range(3)] == [1, 1, 1] and len(set(labels)) == 3
    assert features.cluster(points, 1).tolist() == [0] * 16
    # structure-free points: the labelling is a draw, fixed by the seed
    blob = rng.standard_normal((60, 4))
    assert np.array_equal(features.cluster(blob, 5, seed=3), features.cluster(blob, 5, seed=3))
    seeds = [features.cluster(blob, 5, seed=seed) for seed in range(4)]
    assert not all(np.array_equal(seeds[0], other) for other in seeds[1:])  # the seed matters, and 0 is the default
    np.testing.assert_array_equal(features.cluster(blob, 5), seeds[0])
    with pytest.raises(SRDistillError, match=r'^option categorize.num_classes: must be a positive integer, got 0$'):
        features.cluster(points, 0)
    with pytest.raises(SRDistillError, match=r'^option categorize.num_classes: must be a positive integer, got 2.0$'):
        features.cluster(points, 2.0)
    with pytest.raises(SRDistillError, match=r'^option categorize.num_classes: 17 is larger than the number of images '
                                             r'with selected patches \(16\)$'):
        features.cluster(points, 17)
    assert features.cluster(points, 16).tolist() != [0] * 16


def test_clip_encoder_feature_is_the_normalised_embedding_of_the_rgb_image(tiny_clip):
    """The feature rebuilt with open_clip itself: BGR float -> RGB uint8 PIL image (clipped to [0, 1]) -> the
    model's own preprocessing -> encode_image -> unit length."""
    import open_clip
    from PIL import Image

    config, checkpoint = tiny_clip
    encoder = features.ClipImageEncoder('srd-tiny-clip', checkpoint, model_config=str(config))
    model, _, preprocess = open_clip.create_model_and_transforms('srd-tiny-clip', pretrained=str(checkpoint))
    rng = np.random.default_rng(1)
    bgr = rng.uniform(-0.2, 1.2, (40, 36, 3)).astype(np.float32)
    rgb = (np.clip(bgr[:, :, ::-1], 0, 1) * 255).astype(np.uint8)
    with torch.no_grad():
        embedding = model.eval().encode_image(preprocess(Image.fromarray(rgb))[None])[0].numpy()
    np.testing.assert_allclose(encoder(bgr), embedding / np.linalg.norm(embedding), atol=1e-6)
    assert encoder.description == f'CLIP image encoder (open_clip srd-tiny-clip, weights from {checkpoint})'


def test_clip_encoder_names_each_bad_option(tiny_clip, tmp_path):
    import open_clip

    config, checkpoint = tiny_clip
    with pytest.raises(SRDistillError, match=r'^option categorize.clip.model_config: .*nope.json does not exist$'):
        features.ClipImageEncoder('srd-tiny-clip', checkpoint, model_config=str(tmp_path / 'nope.json'))
    with pytest.raises(SRDistillError, match=r"^option categorize.clip.model: unknown open_clip model 'ViT-Q-99'$"):
        features.ClipImageEncoder('ViT-Q-99', checkpoint)
    tags = open_clip.list_pretrained_tags_by_model('RN50')
    with pytest.raises(SRDistillError, match=r'^option categorize.clip.pretrained: required for RN50 \(a local '
                                             r'checkpoint file or one of its tags \[.*\]\)$') as err:
        features.ClipImageEncoder('RN50', None)
    assert str(tags) in str(err.value)
    with pytest.raises(SRDistillError, match=r'^option categorize.clip.pretrained: .*nope.pt does not exist \(and is '
                                             r'not a pretrained tag of srd-tiny-clip: \[\]\)$'):
        features.ClipImageEncoder('srd-tiny-clip', tmp_path / 'nope.pt')
    (tmp_path / 'garbage.pt').write_bytes(b'not a checkpoint')
    with pytest.raises(SRDistillError, match=r'^option categorize.clip.pretrained: .*garbage.pt is not a '
                                             r'srd-tiny-clip checkpoint \('):
        features.ClipImageEncoder('srd-tiny-clip', tmp_path / 'garbage.pt')


HUB_PROBE = """
import json, sys
from srdistill.core.errors import SRDistillError
from srdistill.core.features import ClipImageEncoder
out = {}
for name, pretrained in (('hf-hub:srdistill-test/tiny-clip', None), ('hf-hub:srdistill-test/absent', None),
                         ('RN50', 'openai')):
    try:
        out[name] = ClipImageEncoder(name, pretrained).description
    except SRDistillError as err:
        out[name] = 'error: ' + str(err)
print(json.dumps(out))
"""


def test_clip_encoder_hub_names_offline(tmp_path):
    """Hub names as open_clip takes them, offline: a hub repository in the cache loads (its description says whose
    weights), one not in the cache and an uncached pretrained tag are each one line naming the model."""
    from .helpers.warm_python import run_python
    from .test_hub_names import cache_tiny_clip, offline

    cache = tmp_path / 'hf_cache'
    cache_tiny_clip(cache)
    proc = run_python(['-c', HUB_PROBE], tmp_path, env=offline(cache))  # offline before huggingface_hub loads
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out['hf-hub:srdistill-test/tiny-clip'] == ('CLIP image encoder (open_clip hf-hub:srdistill-test/tiny-clip, '
                                                      'pretrained weights of the hub repo)')
    tail = '; download it once online or give a local checkpoint file as categorize.clip.pretrained'
    assert re.fullmatch(r"error: option categorize.clip: hf-hub:srdistill-test/absent is .*HF_HUB_OFFLINE=1.*"
                        + re.escape(tail), out['hf-hub:srdistill-test/absent'])
    assert re.fullmatch(r"error: option categorize.clip: RN50 'openai' is .*HF_HUB_OFFLINE=1.*" + re.escape(tail),
                        out['RN50'])
