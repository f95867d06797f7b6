"""The tensor-bundle reader and ``scripts/convert_official_mzsr.py``: tiny bundles written here, the official
pretrained network where ``../shared`` has it (37.48 dB on Set5 x2), and one-line errors with exit status 2."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from srdistill_plugin.archs.mzsr_arch import MZSRNet
from srdistill.core.tf_bundle import BundleError, TensorBundle
from srdistill_plugin.zero_shot.official_weights import official_mzsr_state_dict

from .conftest import ROOT, SHARED, run_tool
from .helpers.tf_bundle_writer import mzsr_like, write_bundle

SCRIPT = ROOT / 'scripts' / 'convert_official_mzsr.py'


def test_reader_returns_every_tensor_with_its_dtype_and_shape(tmp_path):
    tensors = {**mzsr_like(), 'beta1_power': np.array(0.9, np.float64)}
    write_bundle(tmp_path / 'ckpt', tensors)
    bundle = TensorBundle(tmp_path / 'ckpt')
    assert bundle.names == sorted(tensors) and bundle.num_shards == 1
    for name, array in tensors.items():
        read = bundle.read(name)
        assert read.dtype == array.dtype and read.shape == array.shape and np.array_equal(read, array)


def test_converter_transposes_hwio_to_oihw_and_loads_strictly(tmp_path):
    tensors = mzsr_like(num_feat=4, num_layers=3)
    write_bundle(tmp_path / 'ckpt', tensors)
    out = tmp_path / 'out' / 'net.pth'
    proc = run_tool(str(SCRIPT), str(tmp_path / 'ckpt'), str(out))
    assert '3 conv layers' in proc.stdout
    params = torch.load(out, weights_only=True)['params']
    assert sorted(params) == sorted(f'body.{i}.{k}' for i in (0, 2, 4) for k in ('weight', 'bias'))
    assert torch.equal(params['body.2.weight'][1, 3], torch.from_numpy(tensors['MODEL/conv2/kernel'][:, :, 3, 1]))
    net = MZSRNet(num_feat=4, num_layers=3, upscale=2)
    net.load_state_dict(params)
    x = torch.rand(1, 3, 8, 8)
    conv = torch.nn.functional.conv2d(x, torch.from_numpy(tensors['MODEL/conv1/kernel']).permute(3, 2, 0, 1),
                                      torch.from_numpy(tensors['MODEL/conv1/bias']), padding=1)
    assert torch.allclose(net.body[0](x), conv)


@pytest.mark.parametrize('damage, expected', [
    ('missing_shard', 'missing data shard'),
    ('truncated_shard', 'truncated or wrong shard'),
    ('wrong_shape', 'do not fit MZSRNet'),
    ('not_float', 'not floating point'),
    ('not_a_bundle', 'not a TensorFlow tensor bundle index'),
    ('no_conv_layers', 'not an official MZSR checkpoint'),
])
def test_bad_bundles_are_one_line_naming_the_file(tmp_path, damage, expected):
    tensors = mzsr_like()
    prefix = tmp_path / 'ckpt'
    if damage == 'wrong_shape':
        tensors['MODEL/conv2/bias'] = np.zeros(5, np.float32)
    elif damage == 'not_float':
        tensors['MODEL/conv2/kernel'] = tensors['MODEL/conv2/kernel'].astype(np.int32)
    elif damage == 'no_conv_layers':
        tensors = {'global_step': tensors['global_step']}
    write_bundle(prefix, tensors)
    shard = tmp_path / 'ckpt.data-00000-of-00001'
    if damage == 'missing_shard':
        shard.unlink()
    elif damage == 'truncated_shard':
        shard.write_bytes(shard.read_bytes()[:100])
    elif damage == 'not_a_bundle':
        (tmp_path / 'ckpt.index').write_bytes(b'PNG, not a LevelDB table' * 4)
    with pytest.raises(BundleError, match=expected) as info:
        official_mzsr_state_dict(str(prefix))
    assert str(prefix) in str(info.value) and '\n' not in str(info.value)
    if damage == 'missing_shard':
        out = tmp_path / 'net.pth'
        proc = run_tool(str(SCRIPT), str(prefix), str(out), check=False)
        assert proc.returncode == 2 and not out.exists()
        assert proc.stderr.strip().splitlines()[-1] == f'error: {info.value}'


@pytest.mark.slow
@pytest.mark.skipif(not (SHARED / 'mzsr_official' / 'Pretrained.index').is_file(),
                    reason='the official MZSR checkpoint is in ../shared only')
def test_official_pretrained_network_scores_its_set5_x2_figure(tmp_path):
    from basicsr.utils import tensor2img

    from srdistill.core.degradations import mod_crop
    from srdistill.core.imageio import list_images, read_image
    from srdistill.core.matlab_resize import matlab_resize
    from srdistill_plugin.metrics.official_psnr import calculate_psnr_y8

    net = MZSRNet(upscale=2)
    net.load_state_dict(official_mzsr_state_dict(str(SHARED / 'mzsr_official' / 'Pretrained')))
    scores = []
    for path in list_images(ROOT / 'datasets' / 'Set5' / 'HR'):
        hr = torch.from_numpy(mod_crop(read_image(path), 2)[:, :, ::-1].copy()).permute(2, 0, 1)[None]
        lr = (matlab_resize(hr, 0.5).clamp(0, 1) * 255).round() / 255
        with torch.no_grad():
            outputs = net(lr).clamp(0, 1), matlab_resize(lr, 2).clamp(0, 1)
        scores.append([calculate_psnr_y8(tensor2img([x]), tensor2img([hr]), 2) for x in outputs])
    psnr, bicubic = np.mean(scores, axis=0)
    assert abs(psnr - 37.48) < 0.01 and abs(bicubic - 33.65) < 0.01  # the figures the issue measured
