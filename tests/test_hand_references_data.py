"""Hand-computed references for the data side: blur kernels and the MZSR degradation, the plain degradations, patch
selection and the distillation's diffusion losses. Every expected value is written out here (worked in the
comments), never produced by the function under test."""
import math
import re

import numpy as np
import pytest
import torch

from srdistill.core.degradations import bicubic_downscale, bicubic_upscale, check_scale, mod_crop, quantize
from srdistill.core.diffusion_losses import EmbeddingMemory, embed, minimax_terms, predicted_x0, sobel_gradients
from srdistill.core.errors import SRDistillError
from srdistill.core.kernels import (EVAL_KERNELS, blur, check_kernel, degrade, eval_kernel, find_kernel,
                                    gaussian_kernel, kernel_shift, load_kernel, moment_covariance, random_mzsr_kernel,
                                    random_mzsr_kernel_params, subsample_indices, symmetric_pad)
from srdistill.core.patch_selection import SelectionOptions, box_means, score_patches, select_patches


def test_kernel_gaussian_isotropic_by_hand():
    # variance 1: exp(-r^2 / 2) at the centre, the four edges and the four corners, then normalised
    edge, corner = math.exp(-0.5), math.exp(-1.0)
    total = 1 + 4 * edge + 4 * corner
    expected = np.array([[corner, edge, corner], [edge, 1, edge], [corner, edge, corner]]) / total
    np.testing.assert_allclose(gaussian_kernel(3, 1.0, 1.0), expected, rtol=1e-6)


def test_kernel_gaussian_axes_and_turn_by_hand():
    # lambda1 = 4 along x (columns), lambda2 = 1 along y (rows): one column away exp(-1/8), one row away exp(-1/2)
    k = gaussian_kernel(3, 4.0, 1.0)
    assert k[1, 2] / k[1, 1] == pytest.approx(math.exp(-1 / 8), rel=1e-6)
    assert k[2, 1] / k[1, 1] == pytest.approx(math.exp(-1 / 2), rel=1e-6)
    # turned by pi/4: covariance [[2.5, 1.5], [1.5, 2.5]], inverse [[2.5, -1.5], [-1.5, 2.5]] / 4;
    # (x, y) = (1, 1) gives a quadratic form of 0.5, (1, -1) gives 2
    k = gaussian_kernel(3, 4.0, 1.0, theta=math.pi / 4)
    assert k[2, 2] / k[1, 1] == pytest.approx(math.exp(-0.25), rel=1e-6)
    assert k[0, 2] / k[1, 1] == pytest.approx(math.exp(-1.0), rel=1e-6)
    with pytest.raises(SRDistillError, match=r'^kernel size must be a positive odd number, got 4$'):
        gaussian_kernel(4, 1.0, 1.0)


def test_kernel_sizes_one_and_five_by_hand():
    # one tap is the identity; on a 5x5 grid the offsets run -2..2, so the peak is the centre and the row through it
    # is exp(-d^2 / 2) for d = 2, 1, 0, 1, 2 (normalised by the product of two such sums)
    assert gaussian_kernel(1, 2.0, 2.0).tolist() == [[1.0]]
    k = gaussian_kernel(5, 1.0, 1.0)
    line = np.exp(-0.5 * np.array([4., 1., 0., 1., 4.]))
    np.testing.assert_allclose(k, np.outer(line, line) / line.sum() ** 2, rtol=1e-6)


def test_kernel_paper_evaluation_kernels_typed_out():
    # arXiv 2002.12213 Table 1 (variances; g^d: direct subsampling, g^b: bicubic), 21x21 as the released kernel.mat
    typed = {'gd0.2': (0.2, 0.2, 0.0, 'direct'), 'gd2.0': (2.0, 2.0, 0.0, 'direct'),
             'gdani': (4.0, 1.0, -0.5, 'direct'), 'gb1.3': (1.3, 1.3, 0.0, 'bicubic')}
    assert sorted(EVAL_KERNELS) == sorted(typed)
    for name, (lambda1, lambda2, theta, downsample) in typed.items():
        kernel, how = eval_kernel(name)
        assert how == downsample and kernel.shape == (21, 21)
        np.testing.assert_allclose(kernel, gaussian_kernel(21, lambda1, lambda2, theta), rtol=1e-6)
    with pytest.raises(SRDistillError, match=r"^unknown evaluation kernel 'gd9'"):
        eval_kernel('gd9')


def test_kernel_moment_covariance_by_hand():
    # half the mass one column left of the centre, half one column right: variance 1 along x, none along y
    k = np.zeros((3, 3))
    k[1, 0] = k[1, 2] = 1
    np.testing.assert_allclose(moment_covariance(k), [[1, 0], [0, 0]], atol=1e-12)
    # on the main diagonal: x and y move together (covariance +1); on the other diagonal against each other
    np.testing.assert_allclose(moment_covariance(np.diag([1., 0., 1.])), [[1, 1], [1, 1]], atol=1e-12)
    np.testing.assert_allclose(moment_covariance(np.fliplr(np.diag([1., 0., 1.]))), [[1, -1], [-1, 1]], atol=1e-12)
    # three quarters at column 0, a quarter at column 2: mean 0.5, variance 0.75 * 0.25 + 0.25 * 2.25 = 0.75
    k = np.zeros((1, 3))
    k[0, 0], k[0, 2] = 3, 1
    np.testing.assert_allclose(moment_covariance(k), [[0.75, 0], [0, 0]], atol=1e-12)


def test_kernel_meta_training_draw_by_hand():
    # the official draw order: lambda1 ~ U[1, 2.5 s], lambda2 ~ U[1, lambda1], theta ~ U[0, pi]
    u = np.random.default_rng(7).random(3)
    lambda1 = 1 + (2.5 * 2 - 1) * u[0]
    expected = (lambda1, 1 + (lambda1 - 1) * u[1], math.pi * u[2])
    np.testing.assert_allclose(random_mzsr_kernel_params(np.random.default_rng(7), 2), expected, rtol=1e-12)
    # the task kernel is that Gaussian on a 15x15 grid unless told otherwise
    np.testing.assert_allclose(random_mzsr_kernel(np.random.default_rng(7), 2), gaussian_kernel(15, *expected),
                               rtol=1e-6)
    # min_variance 0.2 (the option that reaches g^d_0.2): lambda1 ~ U[0.2, 5], lambda2 ~ U[0.2, lambda1]
    lambda1 = 0.2 + 4.8 * u[0]
    wide = (lambda1, 0.2 + (lambda1 - 0.2) * u[1], math.pi * u[2])
    np.testing.assert_allclose(random_mzsr_kernel_params(np.random.default_rng(7), 2, 0.2), wide, rtol=1e-12)
    np.testing.assert_allclose(random_mzsr_kernel(np.random.default_rng(7), 2, 15, 0.2), gaussian_kernel(15, *wide),
                               rtol=1e-6)
    with pytest.raises(SRDistillError, match=re.escape('min_variance must lie in (0, 5) for scale 2, got 5.0')):
        random_mzsr_kernel_params(np.random.default_rng(7), 2, 5.0)


def test_kernel_check_normalises_and_refuses_by_hand():
    np.testing.assert_allclose(check_kernel(np.array([[1., 2., 1.]]), 'k'), [[0.25, 0.5, 0.25]])
    np.testing.assert_allclose(check_kernel(np.array([[0.5]]), 'k'), [[1.0]])  # any positive sum normalises
    for bad, message in ((np.ones((2, 3)), r'^k: kernel sides must be odd, got 2x3$'),
                         (np.ones((3, 2)), r'^k: kernel sides must be odd, got 3x2$'),
                         (np.zeros((3, 3)), r'^k: kernel cannot be normalised \(its sum is 0, must be > 0\)$'),
                         (np.full((1, 1), np.nan), r'^k: kernel cannot be normalised \(its sum is nan, must be > 0\)$'),
                         (np.ones(3), r'^k: a kernel must be a 2-D array, got shape \(3,\)$')):
        with pytest.raises(SRDistillError, match=message):
            check_kernel(bad, 'k')


def test_kernel_mat_files_pick_the_kernel_by_name_by_hand(tmp_path):
    from scipy.io import savemat

    raw, other = np.array([[1., 2., 1.]]), np.ones((3, 3))
    for key in ('kernel', 'Kernel', 'k', 'K'):  # the official name, then the other usual ones, beside another array
        savemat(tmp_path / f'{key}1.mat', {key: raw, 'other': other})
        np.testing.assert_allclose(load_kernel(tmp_path / f'{key}1.mat'), [[0.25, 0.5, 0.25]])
    savemat(tmp_path / 'named.mat', {'note': 'text', 'a': raw})  # text is not a kernel: the one numeric array is
    np.testing.assert_allclose(load_kernel(tmp_path / 'named.mat'), [[0.25, 0.5, 0.25]])
    savemat(tmp_path / 'two.mat', {'a': raw, 'b': raw})
    with pytest.raises(SRDistillError, match=r"^\S+two.mat: expected one 2-D array \(e.g. \"kernel\"\) in the \.mat file, "
                                             r"found \['a', 'b'\]$"):
        load_kernel(tmp_path / 'two.mat')
    savemat(tmp_path / 'none.mat', {'note': 'text'})
    with pytest.raises(SRDistillError, match=r'^\S+none.mat: expected one 2-D array .* found none$'):
        load_kernel(tmp_path / 'none.mat')
    (tmp_path / 'bad.npy').write_bytes(b'not numpy')
    with pytest.raises(SRDistillError, match=r'^\S+bad.npy: cannot read a kernel \(.+\)$'):
        load_kernel(tmp_path / 'bad.npy')
    with pytest.raises(SRDistillError, match=r'^\S+missing.npy: kernel file does not exist$'):
        load_kernel(tmp_path / 'missing.npy')


def test_kernel_files_in_every_format_by_hand(tmp_path):
    from scipy.io import savemat

    raw = np.array([[1., 2., 1.]])
    savemat(tmp_path / 'a.mat', {'kernel': raw})
    np.save(tmp_path / 'b.npy', raw)
    np.savetxt(tmp_path / 'c.txt', raw)
    for stem in 'abc':
        path = find_kernel(tmp_path, stem)
        assert path.stem == stem
        np.testing.assert_allclose(load_kernel(path), [[0.25, 0.5, 0.25]])
    (tmp_path / 'd.csv').write_text('1,2,1')
    with pytest.raises(SRDistillError, match=r"unknown kernel format; use one of \('\.mat', '\.npy', '\.txt'\)$"):
        load_kernel(tmp_path / 'd.csv')
    with pytest.raises(SRDistillError, match=r"no kernel for image 'd' \(expected d\.mat, \.npy or \.txt\)$"):
        find_kernel(tmp_path, 'd')


@pytest.mark.parametrize('scale, side, moved_to', [
    # a 3x3 delta has its mass at 1. Scale 2: ZSSR wants it at 3/2 + (2 - 1)/2 = 2, a shift of +1; padding by
    # ceil(1) + 1 = 2 puts it at 3 of a 7x7 array, shifted to 4. Scale 4: wanted 3/2 + (4 - 1)/2 = 3, shift 2,
    # padding 3 to 9x9, from 4 to 6
    (2, 7, 4), (4, 9, 6)])
def test_kernel_shift_of_a_centred_delta_by_hand(scale, side, moved_to):
    delta = np.zeros((3, 3), np.float32)
    delta[1, 1] = 1
    expected = np.zeros((side, side))
    expected[moved_to, moved_to] = 1
    np.testing.assert_allclose(kernel_shift(delta, scale), expected, atol=1e-5)


def test_kernel_symmetric_pad_any_rank_and_whole_image_by_hand():
    # a pad as large as the image reflects all of it; a 2-D (H, W) or 3-D (C, H, W) tensor pads its last two axes
    row = torch.tensor([[1., 2., 3.]])
    assert symmetric_pad(row, 0, 3).tolist() == [[3, 2, 1, 1, 2, 3, 3, 2, 1]]
    column = torch.tensor([[1.], [2.]])
    assert symmetric_pad(column, 2, 0).flatten().tolist() == [2, 1, 1, 2, 2, 1]
    two_channels = torch.tensor([[[1.], [2.]], [[5.], [6.]]])  # (C=2, H=2, W=1)
    assert symmetric_pad(two_channels, 1, 0).tolist() == [[[1.], [1.], [2.], [2.]], [[5.], [5.], [6.], [6.]]]
    assert symmetric_pad(two_channels.transpose(1, 2), 0, 1).tolist() == [[[1., 1., 2., 2.]], [[5., 5., 6., 6.]]]


def test_kernel_blur_of_several_channels_by_hand():
    # two items of two channels, each item its own kernel: item 0 reads the left neighbour, item 1 the right one,
    # the same for both of its channels
    ramp = torch.tensor([1., 2., 3.])
    img = torch.stack([torch.stack([ramp, 10 * ramp]), torch.stack([ramp, 10 * ramp])])[:, :, None, :]  # (2, 2, 1, 3)
    kernels = torch.stack([torch.tensor([[1., 0., 0.]]), torch.tensor([[0., 0., 1.]])])
    out = blur(img, kernels)
    assert out[0, 0, 0].tolist() == [1, 1, 2] and out[0, 1, 0].tolist() == [10, 10, 20]
    assert out[1, 0, 0].tolist() == [2, 3, 3] and out[1, 1, 0].tolist() == [20, 30, 30]


def test_kernel_symmetric_pad_by_hand():
    row = torch.tensor([[[[1., 2., 3.]]]])
    assert symmetric_pad(row, 0, 2).flatten().tolist() == [2, 1, 1, 2, 3, 3, 2]
    column = torch.tensor([[[[1.], [2.]]]])
    assert symmetric_pad(column, 1, 0).flatten().tolist() == [1, 1, 2, 2]
    with pytest.raises(SRDistillError, match=r'^the 1x9 kernel is larger than the 3x1 image$'):
        symmetric_pad(row, 0, 4)
    with pytest.raises(SRDistillError, match=r'^the 5x3 kernel is larger than the 3x1 image$'):
        symmetric_pad(row, 2, 1)


def test_kernel_blur_is_a_correlation_by_hand():
    # a kernel weighting only its left neighbour: correlation reads img[y, x - 1], so a delta moves one column right
    # (a convolution would move it left); on the border the half-sample reflection repeats the first column
    left = torch.tensor([[0., 0., 0.], [1., 0., 0.], [0., 0., 0.]])
    delta = torch.zeros(1, 1, 3, 3)
    delta[0, 0, 1, 1] = 1
    expected = torch.zeros(1, 1, 3, 3)
    expected[0, 0, 1, 2] = 1
    assert torch.equal(blur(delta, left), expected)
    ramp = torch.tensor([[[[1., 2., 3.]]]])
    assert blur(ramp, torch.tensor([[1., 0., 0.]])).flatten().tolist() == [1, 1, 2]
    # one kernel per item: the second reads the right neighbour, img[y, x + 1]
    both = blur(ramp.repeat(2, 1, 1, 1), torch.stack([torch.tensor([[1., 0., 0.]]), torch.tensor([[0., 0., 1.]])]))
    assert both.flatten().tolist() == [1, 1, 2, 2, 3, 3]


def test_kernel_direct_subsampling_grid_by_hand():
    # round(linspace(0, L - s, ceil(L / s))): L 6 -> 0, 2, 4; L 5 -> 0, 1.5, 3 -> 0, 2, 3 (numpy rounds half to even);
    # L 7, s 3 -> linspace(0, 4, 3) = 0, 2, 4
    assert subsample_indices(6, 2).tolist() == [0, 2, 4]
    assert subsample_indices(5, 2).tolist() == [0, 2, 3]
    assert subsample_indices(7, 3).tolist() == [0, 2, 4]
    img = torch.arange(20.).reshape(1, 1, 4, 5)
    lr = degrade(img, torch.ones(1, 1), 2, 'direct')
    assert lr[0, 0].tolist() == [[0, 2, 3], [10, 12, 13]]
    assert torch.equal(degrade(img, torch.ones(1, 1), 2), lr)  # direct unless told otherwise
    with pytest.raises(SRDistillError, match=r"^downsample must be 'direct' or 'bicubic', got 'nearest'$"):
        degrade(img, torch.ones(1, 1), 2, 'nearest')


def test_kernel_bicubic_subsampling_against_basicsr_imresize():
    # with a one-tap kernel, bicubic subsampling is MATLAB's antialiased imresize by 1 / scale (BasicSR's)
    from basicsr.utils.matlab_functions import imresize

    hr = np.random.default_rng(4).random((8, 12, 3))
    lr = degrade(torch.from_numpy(hr).permute(2, 0, 1)[None], torch.ones(1, 1, dtype=torch.float64), 2, 'bicubic')
    assert lr.shape == (1, 3, 4, 6)
    np.testing.assert_allclose(lr[0].permute(1, 2, 0).numpy(), imresize(hr, 0.5), atol=1e-6)


def test_kernel_blur_with_five_taps_by_hand():
    # a 5-tap kernel weighting its first tap reads two pixels back: column 1 2 3 4 5 half-sample reflected
    # (2 1 | 1 2 3 4 5) gives 2 1 1 2 3; the same along a row
    column = torch.tensor([1., 2., 3., 4., 5.]).view(1, 1, 5, 1)
    first = torch.tensor([1., 0., 0., 0., 0.])
    assert blur(column, first.view(5, 1)).flatten().tolist() == [2, 1, 1, 2, 3]
    assert blur(column.transpose(2, 3), first.view(1, 5)).flatten().tolist() == [2, 1, 1, 2, 3]


def test_degradation_mod_crop_and_quantize_by_hand():
    assert mod_crop(np.zeros((5, 7, 3)), 2).shape == (4, 6, 3)
    assert mod_crop(np.zeros((8, 9)), 4).shape == (8, 8)
    # 0.5 * 255 = 127.5 rounds to the even 128; 0.1 * 255 = 25.5 to 26; out of range clips first
    np.testing.assert_array_equal(quantize(np.array([0.5, 0.1, -0.2, 1.3, 0.0019])) * 255,
                                  np.array([128, 26, 0, 255, 0], np.float32))


def test_degradation_bicubic_round_trip_against_basicsr_imresize():
    # BasicSR's MATLAB imresize is the reference: down by 2 then rounded to 8 bits (or only clipped), up by 2 clipped
    from basicsr.utils.matlab_functions import imresize

    rng = np.random.default_rng(5)
    hr = rng.random((8, 12, 3)).astype(np.float32)
    down = np.clip(imresize(hr, 0.5), 0, 1)
    np.testing.assert_allclose(bicubic_downscale(hr, 2), (down * 255).round() / 255, atol=1e-6)
    np.testing.assert_allclose(bicubic_downscale(hr, 2, quantize_output=False), down, atol=1e-6)
    lr = rng.random((4, 6, 3)).astype(np.float32)
    up = bicubic_upscale(lr, 2)
    np.testing.assert_allclose(up, np.clip(imresize(lr, 2), 0, 1), atol=1e-6)
    assert up.shape == (8, 12, 3) and up.min() >= 0 and up.max() <= 1 and imresize(lr, 2).max() > 1
    # a step edge overshoots [0, 1] under bicubic; unrounded output is still clipped to it
    step = np.zeros((8, 8, 3), np.float32)
    step[:, 3:] = 1
    assert imresize(step, 0.5).max() > 1 and bicubic_downscale(step, 2, quantize_output=False).max() == 1
    with pytest.raises(SRDistillError, match=r'^image of 12x9 is not a multiple of scale 2; mod-crop it first$'):
        bicubic_downscale(np.zeros((9, 12, 3), np.float32), 2)


def test_degradation_scales_typed_out():
    assert [check_scale(s) for s in (2, 3, 4)] == [2, 3, 4]
    for bad in (1, 5, 2.0, True, '2'):
        with pytest.raises(SRDistillError, match=r'^option scale: expected one of \(2, 3, 4\), got '):
            check_scale(bad)


def test_patch_box_means_by_hand():
    values = np.arange(16.).reshape(4, 4)
    means, ys, xs = box_means(values, 2, 2)
    np.testing.assert_allclose(means.ravel(), [2.5, 4.5, 10.5, 12.5])  # (0 + 1 + 4 + 5) / 4, ...
    assert ys.tolist() == [0, 0, 2, 2] and xs.tolist() == [0, 2, 0, 2]
    means, ys, xs = box_means(values, 3, 1)
    np.testing.assert_allclose(means.ravel(), [5, 6, 9, 10])  # the centre of each 3x3 window of a linear ramp
    assert ys.tolist() == [0, 0, 1, 1] and xs.tolist() == [0, 1, 0, 1]


def test_patch_gradient_score_of_a_step_edge_by_hand():
    # grey rows 0 0 1 1: OpenCV's 3x3 Sobel (rows weighted 1 2 1) gives 4 at the two columns beside the step and 0
    # at the outer ones (reflect-101 border); one 4x4 patch averages 8 fours over 16 pixels = 2
    img = np.repeat(np.array([0., 0., 1., 1.], np.float32)[None, :, None], 4, axis=0).repeat(3, axis=2)
    scores, ys, xs = score_patches(img, SelectionOptions(patch_size=4, stride=4, score='gradient', scale=4))
    assert scores.tolist() == pytest.approx([2.0]) and ys.tolist() == [0] and xs.tolist() == [0]


def test_patch_gradient_score_of_a_plane_by_hand():
    # grey = x + 2 y on 4x4: OpenCV's Sobel gives 2 * 4 = 8 along x on the inner columns and 4 * 4 = 16 along y on
    # the inner rows, 0 on the reflect-101 borders; magnitudes: sqrt(8^2 + 16^2) on the 4 inner pixels, 8 and 16 on
    # 4 pixels each, 0 on the 4 corners: mean (4 sqrt(320) + 32 + 64) / 16
    y, x = np.mgrid[:4, :4].astype(np.float32)
    img = np.repeat((x + 2 * y)[:, :, None], 3, axis=2)
    scores, _, _ = score_patches(img, SelectionOptions(patch_size=4, stride=4, score='gradient', scale=4))
    assert scores.tolist() == pytest.approx([(4 * math.sqrt(320) + 32 + 64) / 16])
    # 8x8: the inner 6x6 has both, 12 pixels each have one, the 4 corners none (a second derivative, 0 inside a
    # plane and 8 or 16 on the borders, would give another mean)
    y, x = np.mgrid[:8, :8].astype(np.float32)
    img = np.repeat((x + 2 * y)[:, :, None], 3, axis=2)
    scores, _, _ = score_patches(img, SelectionOptions(patch_size=8, stride=8, score='gradient', scale=4))
    assert scores.tolist() == pytest.approx([(36 * math.sqrt(320) + 12 * 8 + 12 * 16) / 64])


def test_patch_bicubic_psnr_score_written_out():
    # grey (OpenCV's BGR weights) of the image minus grey of its bicubic round trip (BasicSR's MATLAB imresize, down
    # and up by the scale, unrounded), squared, averaged per patch: 10 log10(1 / mse)
    import cv2
    from basicsr.utils.matlab_functions import imresize

    img = np.random.default_rng(9).random((8, 16, 3)).astype(np.float32)
    scores, ys, xs = score_patches(img, SelectionOptions(patch_size=8, stride=8, scale=2))
    rebuilt = np.clip(imresize(np.clip(imresize(img, 0.5), 0, 1), 2), 0, 1).astype(np.float32)
    error = (cv2.cvtColor(img, cv2.COLOR_BGR2GRAY) - cv2.cvtColor(rebuilt, cv2.COLOR_BGR2GRAY)) ** 2
    assert xs.tolist() == [0, 8] and ys.tolist() == [0, 0]
    expected = [10 * math.log10(1 / error[:, x:x + 8].mean()) for x in (0, 8)]
    assert scores.tolist() == pytest.approx(expected, rel=1e-5)


def test_patch_srdd_grid_at_stride_one_by_hand():
    # 10x10, 8-pixel patches at stride 1: corners 0, 1, 2 on each axis (10 - 8 + 1 = 3), none past the edge
    _, ys, xs = score_patches(np.zeros((10, 10, 3), np.float32),
                              SelectionOptions(patch_size=8, stride=1, scale=2, score='srdd_bicubic_psnr'))
    assert ys.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2] and xs.tolist() == [0, 1, 2] * 3


def test_patch_selection_order_threshold_and_caps_by_hand():
    none = np.zeros(3, int)
    per_image = [(np.array([30., 20., 25.]), none, np.array([0, 1, 2])), (np.array([22., 35.]), none[:2], np.array([0, 1]))]
    # bicubic PSNR: low is informative; 60 % of 5 patches = 3: 20 (image 0), 22 (image 1), 25 (image 0)
    kept = select_patches(per_image, SelectionOptions(scale=4, keep_fraction=0.6))
    assert [(k[0], k[2], k[3]) for k in kept] == [(0, 1, 20.), (1, 0, 22.), (0, 2, 25.)]
    # gradient: high is informative: 35, 30, 25
    kept = select_patches(per_image, SelectionOptions(scale=4, keep_fraction=0.6, score='gradient'))
    assert [k[3] for k in kept] == [35., 30., 25.]
    # threshold 24 keeps 20 and 22; one per image keeps both; a total of 1 keeps only the best, 20
    opts = SelectionOptions(scale=4, keep_fraction=1, threshold=24, per_image=1)
    assert [k[3] for k in select_patches(per_image, opts)] == [20., 22.]
    opts.total = 1
    assert [k[3] for k in select_patches(per_image, opts)] == [20.]
    # one per image keeps each image's most informative patch: 20 of image 0, 22 of image 1
    assert [k[3] for k in select_patches(per_image, SelectionOptions(scale=4, keep_fraction=1, per_image=1))] == [20., 22.]
    # thresholds are strict: a score equal to the threshold is not kept
    assert [k[3] for k in select_patches(per_image, SelectionOptions(scale=4, keep_fraction=1, threshold=25))] == [20., 22.]
    assert [k[3] for k in select_patches(per_image, SelectionOptions(scale=4, keep_fraction=1, threshold=30,
                                                                     score='gradient'))] == [35.]
    # the official SRDD score is a PSNR too: low is informative, and its threshold keeps scores below it
    kept = select_patches(per_image, SelectionOptions(scale=4, keep_fraction=1, score='srdd_bicubic_psnr', threshold=26))
    assert [k[3] for k in kept] == [20., 22., 25.]
    # a gradient threshold keeps scores above it: 30 and 35
    opts = SelectionOptions(scale=4, keep_fraction=1, threshold=26, score='gradient')
    assert [k[3] for k in select_patches(per_image, opts)] == [35., 30.]


def test_patch_selection_defaults_and_refusals_typed_out():
    opts = SelectionOptions()
    assert (opts.patch_size, opts.stride, opts.score, opts.scale, opts.per_image, opts.total, opts.threshold,
            opts.keep_fraction) == (64, 32, 'bicubic_psnr', 4, 0, 0, None, 0.25)
    opts.validate()
    for bad, message in ((dict(score='psnr'), r"^option select.score: expected one of \('bicubic_psnr', 'gradient', "
                                              r"'srdd_bicubic_psnr'\), got 'psnr'$"),
                         (dict(patch_size=30), r'^option select.patch_size: must be a positive multiple of scale 4 '
                                               r'\(got 30, stride 32\)$'),
                         (dict(stride=0), 'patch_size'), (dict(patch_size=0), 'patch_size'),
                         (dict(keep_fraction=0), r'^option select.keep_fraction: must be in \(0, 1\], got 0$'),
                         (dict(keep_fraction=1.5), 'keep_fraction')):
        with pytest.raises(SRDistillError, match=message):
            SelectionOptions(**bad).validate()
    SelectionOptions(keep_fraction=1, patch_size=4, stride=1).validate()


def test_patch_srdd_score_written_out():
    # the official score of one patch: PIL greyscale, OpenCV INTER_CUBIC down by the scale and back up, PSNR with
    # peak 255; a flat patch rebuilds exactly (infinite score)
    import cv2
    from PIL import Image

    rng = np.random.default_rng(3)
    img = np.zeros((16, 24, 3), np.float32)
    img[:, 8:] = rng.random((16, 16, 3), dtype=np.float32)
    scores, ys, xs = score_patches(img, SelectionOptions(patch_size=8, stride=8, score='srdd_bicubic_psnr', scale=2))
    assert ys.tolist() == [0, 0, 0, 8, 8, 8] and xs.tolist() == [0, 8, 16, 0, 8, 16]
    grey = np.asarray(Image.fromarray((img[:, :, ::-1] * 255).round().astype(np.uint8)).convert('L'), np.float32)
    for score, y, x in zip(scores, ys, xs):
        patch = grey[y:y + 8, x:x + 8]
        rebuilt = cv2.resize(cv2.resize(patch, (4, 4), interpolation=cv2.INTER_CUBIC), (8, 8),
                             interpolation=cv2.INTER_CUBIC)
        mse = np.mean((patch - rebuilt) ** 2)
        assert score == (np.inf if mse == 0 else pytest.approx(20 * np.log10(255 / np.sqrt(mse)), rel=1e-6))
    assert np.isinf(scores[0]) and np.isfinite(scores[1:3]).all()


def test_patch_bicubic_psnr_score_of_flat_and_smaller_images_by_hand():
    # a flat image rebuilds exactly: the mean squared error is clipped at 1e-10, i.e. 100 dB; an image smaller than a
    # patch (after the mod-crop to the scale) has no patch at all
    scores, _, _ = score_patches(np.full((8, 8, 3), 0.5, np.float32), SelectionOptions(patch_size=8, stride=8, scale=4))
    assert scores.tolist() == pytest.approx([100.0])
    scores, ys, xs = score_patches(np.zeros((11, 40, 3), np.float32), SelectionOptions(patch_size=12, scale=4))
    assert len(scores) == len(ys) == len(xs) == 0
    # 14 rows are cropped to 12 first (a multiple of 4): one row of patches at stride 2, not two
    for score in ('bicubic_psnr', 'gradient', 'srdd_bicubic_psnr'):
        _, ys, xs = score_patches(np.zeros((14, 12, 3), np.float32),
                                  SelectionOptions(patch_size=12, stride=2, scale=4, score=score))
        assert ys.tolist() == [0] and xs.tolist() == [0]


def test_diffusion_predicted_x0_by_hand():
    # alpha_bar 0.25: x0 = (x_t - sqrt(0.75) eps) / 0.5; alpha_bar 1: x0 = x_t
    x_t, eps = torch.full((2, 1, 1, 1), 1.0), torch.full((2, 1, 1, 1), 0.5)
    x0 = predicted_x0(x_t, eps, torch.tensor([0.25, 1.0]))
    assert x0.flatten().tolist() == pytest.approx([(1 - math.sqrt(0.75) * 0.5) / 0.5, 1.0])


def test_diffusion_sobel_gradients_by_hand():
    # a ramp along x (0 1 2 on every row), Sobel / 8 with replicated borders: (2 - 0) * 4 / 8 = 1 inside,
    # (1 - 0) * 4 / 8 = 0.5 at both ends; nothing along y. Channels: x then y for each input channel
    ramp = torch.tensor([0., 1., 2.]).repeat(3, 1)
    x = torch.stack([ramp, -ramp])[None]
    out = sobel_gradients(x)
    assert out.shape == (1, 4, 3, 3)
    assert out[0, 0].tolist() == [[0.5, 1, 0.5]] * 3 and out[0, 2].tolist() == [[-0.5, -1, -0.5]] * 3
    assert out[0, 1].abs().max() == 0 and out[0, 3].abs().max() == 0


def test_diffusion_minimax_terms_and_memory_by_hand():
    real, generated = EmbeddingMemory(2, 2), EmbeddingMemory(2, 2)
    real.push(torch.tensor([[1., 0.], [0., 1.]]), torch.tensor([0, 0]))
    generated.push(torch.tensor([[1., 0.]]), torch.tensor([0]))
    emb = torch.tensor([[0.6, 0.8], [0.0, 1.0]])
    # item 0 (class 0): similarities to the real memory 0.6 and 0.8 -> 1 - min = 0.4; to the generated one 0.6;
    # item 1 (class 1) has empty memories and adds nothing; both averaged over the batch of two
    rep, div = minimax_terms(emb, torch.tensor([0, 1]), real, generated)
    assert rep.item() == pytest.approx(0.2) and div.item() == pytest.approx(0.3)
    # first in, first out: the newest come first and the oldest fall off beyond the size
    memory = EmbeddingMemory(1, 2)
    a, b, c = torch.tensor([[1., 0.]]), torch.tensor([[0., 1.]]), torch.tensor([[0.6, 0.8]])
    memory.push(a, torch.tensor([0]))
    memory.push(b, torch.tensor([0]))
    assert memory.get(0).tolist() == [[0., 1.], [1., 0.]]
    memory.push(c, torch.tensor([0]))
    assert memory.get(0).flatten().tolist() == pytest.approx([0.6, 0.8, 0., 1.])


def test_diffusion_embedding_by_hand():
    # 8x8 average pooling by default: a 16x16 image of 2x2 blocks (block (i, j) of value i * 8 + j, channel c adding
    # 64 c) pools to those values; 3 x 64 of them, divided by their Euclidean norm
    blocks = torch.arange(64.).reshape(8, 8)
    x = torch.stack([blocks + 64 * c for c in range(3)]).repeat_interleave(2, 1).repeat_interleave(2, 2)[None]
    values = torch.arange(192.)
    assert torch.allclose(embed(x), (values / values.norm())[None])
    assert torch.allclose(embed(torch.ones(2, 3, 4, 4), size=2), torch.full((2, 12), 1 / math.sqrt(12)))


def test_diffusion_memory_splits_a_batch_by_class_by_hand():
    memory = EmbeddingMemory(3, 4)
    emb = torch.tensor([[1., 0.], [0., 1.], [0.6, 0.8]])
    memory.push(emb, torch.tensor([2, 0, 2]))
    assert memory.get(0).tolist() == [[0., 1.]]
    assert memory.get(1) is None
    assert memory.get(2).flatten().tolist() == pytest.approx([1., 0., 0.6, 0.8])
