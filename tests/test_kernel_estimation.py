"""Blind kernel estimation (KernelGAN-style): the kernel read out of G is the one G applies, the bicubic prior is
MATLAB's, the x4 kernel is the x2 one applied twice, estimation is seeded, and the tool saves, resumes and fails
with one line."""
import json

import cv2
import numpy as np
import pytest
import scipy.io
import torch
import torch.nn.functional as F

from srdistill.core.kernel_estimation import (KernelGANConfig, LinearDownscaler, bicubic_half_kernel,
                                                     center_kernel, estimate_kernel, kernel_psnr, x4_from_x2)
from srdistill.core.kernels import degrade, gaussian_kernel
from srdistill.core.matlab_resize import matlab_resize

from .conftest import run_main, run_tool

TINY = dict(g_channels=8, d_channels=8, crop_size=32)


def test_the_read_out_kernel_is_the_one_the_generator_applies():
    torch.manual_seed(0)
    gen = LinearDownscaler(KernelGANConfig(g_channels=4))
    for layer in gen.layers:
        torch.nn.init.normal_(layer.weight)  # any weights: G is linear, so it is one kernel + stride
    x = torch.rand(1, 3, 40, 40)
    k = gen.kernel().detach()
    expected = F.conv2d(x.transpose(0, 1), k[None, None], stride=2).transpose(0, 1)
    assert k.shape == (13, 13) and torch.allclose(gen(x), expected, rtol=1e-4, atol=1e-4 * expected.abs().max())


def test_bicubic_prior_is_matlabs_half_downscaling():
    k = bicubic_half_kernel()
    assert k[3, 3].item() == pytest.approx(0.1880035, abs=1e-6) and k.sum().item() == pytest.approx(1, abs=1e-6)
    x = torch.rand(1, 1, 40, 40, dtype=torch.float64)
    ours = F.conv2d(x, k.double()[None, None], stride=2, padding=3)
    assert torch.allclose(ours[..., 3:-3, 3:-3], matlab_resize(x, 0.5)[..., 3:-3, 3:-3], atol=1e-6)


def test_x4_kernel_equals_the_x2_kernel_applied_twice():
    k2 = gaussian_kernel(13, 1.8, 0.9, 0.4)
    k4 = x4_from_x2(k2)
    img = torch.rand(1, 1, 96, 96, dtype=torch.float64)
    twice = degrade(degrade(img, torch.from_numpy(k2).double(), 2), torch.from_numpy(k2).double(), 2)
    once = degrade(img, torch.from_numpy(k4).double(), 4)
    assert torch.allclose(twice[..., 6:-6, 6:-6], once[..., 6:-6, 6:-6], atol=1e-3)


def test_centering_and_aligned_kernel_psnr():
    k = gaussian_kernel(15, 2., 1., 0.3)
    shifted = np.roll(k, 2, axis=1)
    centred = center_kernel(shifted)
    r = np.arange(centred.shape[0]) - (centred.shape[0] - 1) / 2
    assert abs(np.sum(centred.sum(0) * r)) < 1e-3 and abs(np.sum(centred.sum(1) * r)) < 1e-3
    assert kernel_psnr(shifted, k) > 60 and kernel_psnr(gaussian_kernel(15, 4., 4.), k) < 50


def test_estimation_is_seeded_and_gives_a_normalised_centred_kernel(photo_dir):
    img = cv2.imread(str(photo_dir / 'coffee.png'))[:, :, ::-1].astype(np.float32) / 255
    cfg = KernelGANConfig(max_iters=15, **TINY)
    a, b = estimate_kernel(img, 2, cfg, progress=False), estimate_kernel(img, 2, cfg, progress=False)
    assert np.array_equal(a, b) and a.sum() == pytest.approx(1, abs=1e-5) and a.min() >= 0
    assert estimate_kernel(img, 4, cfg, progress=False).shape[0] > a.shape[0]


def _photos(photo_dir, tmp_path):
    folder = tmp_path / 'lr'
    folder.mkdir()
    cv2.imwrite(str(folder / 'coffee.png'), cv2.imread(str(photo_dir / 'coffee.png'))[:70, :90])
    grey16 = (cv2.imread(str(photo_dir / 'rocket.png'), cv2.IMREAD_GRAYSCALE)[:67, :80].astype(np.uint16) * 257)
    cv2.imwrite(str(folder / 'rocket16.png'), grey16)  # greyscale and 16-bit: handled
    return folder


def test_tool_saves_kernels_and_resumes(photo_dir, tmp_path):
    folder, out = _photos(photo_dir, tmp_path), tmp_path / 'kernels'
    run_tool('tools/estimate_kernel.py', '--input', str(folder), '--output', str(out), '--scale', '2', '--iters', '5',
             '--threads', '1')
    for stem in ('coffee', 'rocket16'):
        k = np.load(out / f'{stem}.npy')
        assert np.allclose(scipy.io.loadmat(out / f'{stem}.mat')['kernel'], k) and (out / f'{stem}_kernel.png').is_file()
    stamps = {p.name: p.stat().st_mtime_ns for p in out.glob('*.npy')}
    run_tool('tools/estimate_kernel.py', '--input', str(folder), '--output', str(out), '--iters', '5')
    assert {p.name: p.stat().st_mtime_ns for p in out.glob('*.npy')} == stamps  # same settings: nothing redone
    assert set(json.loads((out / 'kernels.json').read_text())['images']) == {'coffee', 'rocket16'}
    assert not list(out.glob('*.incomplete*'))


@pytest.mark.parametrize('case,message', [
    ('small', "image is 40x30, smaller than the estimator's 64px crop"),
    ('scale', 'kernel estimation supports 2 or 4, got 3'),
    ('readonly', 'output folder cannot be written'),
])
def test_tool_bad_inputs_are_one_line_and_exit_2(photo_dir, tmp_path, case, message, monkeypatch, capsys):
    folder = _photos(photo_dir, tmp_path)
    out, scale = tmp_path / 'kernels', '2'
    if case == 'small':
        cv2.imwrite(str(folder / 'tiny.png'), np.zeros((30, 40, 3), np.uint8))
    elif case == 'scale':
        scale = '3'
    else:
        (tmp_path / 'file').write_text('x')
        out = tmp_path / 'file' / 'kernels'
    args = ['--input', str(folder), '--output', str(out), '--scale', scale]
    if case == 'scale':  # one case through the script itself, the others in this process (the same main)
        proc = run_tool('tools/estimate_kernel.py', *args, check=False)
        code, err = proc.returncode, proc.stderr
    else:
        from srdistill.cli import run_cli
        from srdistill_plugin.zero_shot.estimate_kernels import main

        code, _, err = run_main(lambda: run_cli(main), args, tmp_path, monkeypatch, capsys)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


def test_official_filtering_keeps_the_strongest_taps_and_can_be_turned_off():
    from srdistill.core.kernel_estimation import zeroize_negligible

    k = gaussian_kernel(15, 4., 1.2, 0.6).astype(np.float64)
    kept = zeroize_negligible(k, 40)
    assert kept.sum() == pytest.approx(1) and 41 <= np.count_nonzero(kept) < 60  # above 0.75 x the 41st largest
    assert np.allclose(zeroize_negligible(k, 0), k / k.sum())  # n <= 0: nothing dropped
