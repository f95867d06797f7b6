"""Synthesis at scale: options that used to fail late or silently are one line at start (nothing written), an
empty pseudo-class gives its budget to the others, and patches stream into the LMDB (bounded memory)."""
from __future__ import annotations

import json
import tracemalloc

import cv2
import pytest

from srdistill.core.errors import SRDistillError
from srdistill.core.lmdb_io import read_meta_keys
from srdistill.core.sample_images import load_skimage_photos
from srdistill_plugin.distill.runner import DistillRun

from .conftest import run_tool
from .test_distillation import lmdb_images, tiny_options

BAD_OPTIONS = [
    (('synthesize', 'strength'), 0, 'option synthesize.strength: expected a number in (0, 1]'),
    (('synthesize', 'strength'), -0.2, 'option synthesize.strength: expected a number in (0, 1]'),
    (('synthesize', 'strength'), 1.5, 'option synthesize.strength: expected a number in (0, 1]'),
    (('synthesize', 'steps'), 0, 'option synthesize.steps: expected an integer >= 1, got 0'),
    (('synthesize', 'batch'), 2.5, 'option synthesize.batch: expected an integer >= 1, got 2.5'),
    (('synthesize', 'amp'), 'fp8', "option synthesize.amp: expected false, bf16 or fp16, got 'fp8'"),
    (('finetune', 'train', 'diffusion', 'max_timestep'), 2000,
     'option finetune.train.diffusion.max_timestep: expected an integer in [1, 1000], got 2000'),
    (('finetune', 'train', 'diffusion', 'max_timestep'), 0,
     'option finetune.train.diffusion.max_timestep: expected an integer in [1, 1000], got 0'),
    (('finetune', 'train', 'amp'), 'half', "option finetune.train.amp: expected false, bf16 or fp16, got 'half'"),
    (('num_gpu', ), -1, "option num_gpu: expected an integer >= 0 or 'auto', got -1"),
    (('synthesize', 'class_budget'), 'uniform',
     "option synthesize.class_budget: expected one of ('proportional', 'equal'), got 'uniform'"),
    (('synthesize', 'informative_share'), 1.5, 'option synthesize.informative_share: expected a number in [0, 1]'),
    (('synthesize', 'informative_share'), -0.1, 'option synthesize.informative_share: expected a number in [0, 1]'),
    (('synthesize', 'herding_features'), 'dino',
     "option synthesize.herding_features: expected one of ('sr_stats', 'clip'), got 'dino'"),
    (('synthesize', 'herding_features'), 'clip',
     'option synthesize.herding_features: clip needs CLIP weights (categorize.clip.pretrained'),
    (('synthesize', 'seed_selection'), 'best',
     "option synthesize.seed_selection: expected one of ('selected', 'herding'), got 'best'"),
    (('synthesize', 'mode'), 'kmeans', 'option synthesize.mode: expected one of'),
    (('synthesize', 'draw_seed'), -1, 'option synthesize.draw_seed: expected an integer >= 0, got -1'),
    (('synthesize', 'patch_size'), 18, 'option synthesize.patch_size: 18 is not a multiple of scale 4'),
    (('synthesize', 'patch_size'), 2, 'option synthesize.patch_size: expected an integer >= 4, got 2'),
    (('synthesize', 'patch_size'), 16,
     "option synthesize.patch_size: only random_real draws patches of another size than select.patch_size (32); "
     "mode 'sdedit' got 16"),
]


def with_option(opt: dict, keys: tuple[str, ...], value) -> dict:
    section = opt
    for key in keys[:-1]:
        section = section[key]
    section[keys[-1]] = value
    return opt


@pytest.mark.parametrize('keys, value, message', BAD_OPTIONS)
def test_bad_synthesis_and_finetune_options_stop_at_start(photo_dir, tmp_path, keys, value, message):
    opt = with_option(tiny_options(photo_dir, tmp_path / 'out'), keys, value)
    with pytest.raises(SRDistillError) as info:
        DistillRun(opt, root=tmp_path)
    assert str(info.value).startswith(message) and '\n' not in str(info.value)
    assert list(tmp_path.iterdir()) == []  # nothing written: no experiment folder, no log, no output


def test_bad_option_through_the_command_is_one_line_exit_2(photo_dir, tmp_path):
    import yaml

    opt = with_option(tiny_options(photo_dir, tmp_path / 'out'), ('synthesize', 'strength'), 0)
    (tmp_path / 'bad.yml').write_text(yaml.safe_dump(opt))
    proc = run_tool('-m', 'srdistill_plugin.commands.distill', '-opt', str(tmp_path / 'bad.yml'), cwd=tmp_path,
                    check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith('error: option synthesize.strength: expected a number')
    assert sorted(p.name for p in tmp_path.iterdir()) == ['bad.yml']


def test_random_real_draws_smaller_patches_at_the_same_pixel_budget(photo_dir, tmp_path):
    sizes = {}
    for patch in (32, 16):
        opt = tiny_options(photo_dir, tmp_path / f'p{patch}', mode='random_real', per_class=None, budget_percent=3,
                           patch_size=patch) | {'name': f'pytest_p{patch}'}
        DistillRun(opt, root=tmp_path).run()
        manifest = json.loads((tmp_path / f'p{patch}' / 'manifest.json').read_text())
        images = lmdb_images(tmp_path / f'p{patch}' / 'HR.lmdb')
        assert manifest['patch_size'] == patch and images.shape[-2:] == (patch, patch)
        sizes[patch] = len(images)
    assert 4 * sizes[32] <= sizes[16] <= 4 * sizes[32] + 3  # per-class rounding of three pseudo-classes


def test_an_empty_pseudo_class_gives_its_budget_to_the_others():
    from srdistill_plugin.distill.strategies import class_budgets

    assert class_budgets(5, [10, 10, 10]) == [5, 5, 5]
    assert class_budgets(5, [3, 0, 10, 0]) == [10, 0, 10, 0]
    assert class_budgets(4, [3, 0, 10, 7]) == [6, 0, 5, 5]
    with pytest.raises(SRDistillError, match='every pseudo-class is empty'):
        class_budgets(4, [0, 0])


@pytest.fixture(scope='module')
def large_pool(tmp_path_factory):
    """The bundled photographs at full size (about 4 megapixels): room for 2,000 patches of 32x32."""
    folder = tmp_path_factory.mktemp('pool')
    for name, img in load_skimage_photos().items():
        cv2.imwrite(str(folder / f'{name}.png'), img)
    return folder


@pytest.mark.slow
def test_synthesis_streams_into_the_lmdb_with_bounded_memory(large_pool, tmp_path):
    """Python-tracked peak memory (numpy buffers included) while synthesizing 200 and then 2,000 patches: holding
    the set (6 MB of uint8) and its float64 seed residuals (49 MB) would grow it by ~55 MB."""
    opt = tiny_options(large_pool, tmp_path / 'out', mode='selected_noise', noise_sigma=4)
    opt['select'] = {'patch_size': 32, 'stride': 32, 'keep_fraction': 0.25}
    run = DistillRun(opt, root=tmp_path)
    run.run(('select', 'categorize', 'finetune'))
    peaks = {}
    for total in (200, 2000):
        opt['synthesize']['per_class'] = -(-total // opt['categorize']['num_classes'])
        run = DistillRun(opt, root=tmp_path)  # the options are read once, when a run is made
        tracemalloc.start()
        run.synthesize()
        peaks[total] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert len(read_meta_keys(tmp_path / 'out' / 'HR.lmdb')) >= total
    growth_mb = (peaks[2000] - peaks[200]) / 2 ** 20
    assert growth_mb < 5, f'peak memory grew by {growth_mb:.1f} MB from 200 to 2,000 patches'


def test_the_synthesis_options_are_typed_with_their_defaults_filled_in_once():
    from srdistill_plugin.distill.options import SynthesisOptions

    herding = SynthesisOptions.from_opt({'manual_seed': 3, 'synthesize': {'mode': 'herding', 'budget_percent': 2}})
    assert (herding.mode, herding.class_budget, herding.draw_seed, herding.budget_percent) == ('herding', 'proportional',
                                                                                              3, 2.0)
    assert (herding.patch_size, herding.steps, herding.batch, herding.strength, herding.sampler) == (64, 10, 16, 0.3,
                                                                                                   'ddim')
    sdedit = SynthesisOptions.from_opt({'synthesize': {'per_class': None, 'draw_seed': 1}})
    assert (sdedit.mode, sdedit.class_budget, sdedit.per_class, sdedit.draw_seed) == ('sdedit', 'equal', 16, 1)
    with pytest.raises(SRDistillError, match='option synthesize.coverage_candidates: expected an integer >= 1'):
        SynthesisOptions.from_opt({'synthesize': {'mode': 'coverage', 'coverage_candidates': 0}})
