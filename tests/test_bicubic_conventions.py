"""``benchmarks/bicubic_conventions.py``: a single-channel file scores as its three-channel copy under the project's
convention, and on its grey values under "grey as is", by the range factor of Y (219 / 255) apart."""
import math

import numpy as np
from PIL import Image

from benchmarks.bicubic_conventions import image_scores, plane_psnr
from srdistill.core.degradations import bicubic_downscale, bicubic_upscale
from srdistill.core.imageio import to_uint8


def test_a_single_channel_file_is_scored_on_its_grey_values_only_as_is(tmp_path):
    grey = np.random.default_rng(0).integers(0, 256, (48, 40), dtype=np.uint8)
    Image.fromarray(grey).save(tmp_path / 'grey.png')
    Image.fromarray(np.repeat(grey[..., None], 3, 2)).save(tmp_path / 'rgb.png')
    single, triple = image_scores(tmp_path / 'grey.png'), image_scores(tmp_path / 'rgb.png')
    assert single['single_channel'] and not triple['single_channel']
    assert single['project'] == triple['project'] and triple['grey as is'] == triple['project']
    sr = to_uint8(bicubic_upscale(bicubic_downscale(grey[..., None] / 255., 2), 2))[..., 0]
    diff = sr[2:-2, 2:-2].astype(np.float64) - grey[2:-2, 2:-2]
    assert math.isclose(single['grey as is'], 10 * math.log10(255 ** 2 / np.mean(diff ** 2)), rel_tol=1e-12)
    assert single['Y only'] == single['grey as is']
    # Y of a grey pixel is 16 + 219/255 of it: errors shrink by that factor (up to Y's rounding)
    assert abs(single['project'] - single['grey as is'] - 20 * math.log10(255 / 219)) < 0.05
    assert plane_psnr(grey, grey.astype(np.int16) + 1, 2) == 10 * math.log10(255 ** 2)
