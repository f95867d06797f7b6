"""HROnlyDataset built from a YAML dict through BasicSR's builder; the sampler registry and ClassBalancedSampler."""
import math
from collections import Counter

import cv2
import numpy as np
import pytest
import torch
import yaml
from basicsr.data import build_dataset
from basicsr.data.data_sampler import EnlargedSampler

from srdistill.core.errors import SRDistillError
from srdistill.core.lmdb_io import read_meta_keys
from srdistill.core.prepare import PrepareOptions, prepare_lmdbs
from srdistill_plugin.data.hr_only_dataset import log_gradient_energy
from srdistill_plugin.samplers import ClassBalancedSampler, build_sampler

from .conftest import SET5

TRAIN_YAML = """
name: photos
type: HROnlyDataset
dataroot_gt: {root}
io_backend: {{type: lmdb}}
phase: train
scale: 4
gt_size: 32
use_hflip: true
use_rot: true
"""


@pytest.fixture(scope='module')
def hr_lmdb(photo_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp('lmdb')
    return prepare_lmdbs(photo_dir, out, PrepareOptions(scales=(4, )))['HR']


def test_train_items_have_matching_lr_and_hr(hr_lmdb):
    dataset = build_dataset(yaml.safe_load(TRAIN_YAML.format(root=hr_lmdb)))
    item = dataset[0]
    assert len(dataset) == 6 and dataset.class_ids is None
    assert item['gt'].shape == (3, 32, 32) and item['lq'].shape == (3, 8, 8)
    assert 0 <= item['lq'].min() and item['lq'].max() <= 1


def test_rgb_permutation_and_mixup_keep_the_pair_consistent(photo_dir):
    import random

    import numpy as np

    from srdistill.core.degradations import bicubic_downscale

    def dataset(**changes):  # image files: several datasets open at once (one LMDB may not be opened twice)
        return build_dataset({**yaml.safe_load(TRAIN_YAML.format(root=photo_dir)), 'io_backend': {'type': 'disk'},
                              **changes})

    plain, permuted = dataset(), dataset(rgb_permute=1)
    def seeded(dataset, index, seed):  # crops draw from numpy, flips and the augmentations from random
        random.seed(seed)
        np.random.seed(seed)
        return dataset[index]

    a, b = seeded(plain, 2, 3)['gt'], seeded(permuted, 2, 3)['gt']
    assert not torch.equal(a, b) and sorted(a.sum((1, 2)).tolist()) == pytest.approx(sorted(b.sum((1, 2)).tolist()))
    mixed = dataset(mixup={'prob': 1, 'alpha': 1.2})
    item, crop = seeded(mixed, 1, 0), seeded(plain, 1, 0)['gt']  # the same first crop, before mixing
    assert not torch.allclose(item['gt'], crop)
    hr = item['gt'].permute(1, 2, 0).numpy()[:, :, ::-1]
    lr = np.ascontiguousarray(bicubic_downscale(np.ascontiguousarray(hr), 4)[:, :, ::-1]).transpose(2, 0, 1)
    assert np.abs(lr - item['lq'].numpy()).max() < 1e-5  # LR made from the mixed HR


@pytest.mark.parametrize('change, message', [
    ({'rgb_permute': 1.5}, 'option rgb_permute: expected a probability in [0, 1], got 1.5'),
    ({'mixup': {'prob': 0.5, 'alpha': 0}}, 'option mixup.alpha: expected a number > 0, got 0'),
    ({'mixup': {'p': 0.5}}, 'option mixup: expected {prob: [0, 1], alpha: > 0}'),
])
def test_bad_augmentation_options_are_named(hr_lmdb, change, message):
    with pytest.raises(SRDistillError) as info:
        build_dataset({**yaml.safe_load(TRAIN_YAML.format(root=hr_lmdb)), **change})
    assert str(info.value).startswith(message)


def test_val_items_are_whole_mod_cropped_images_from_a_folder():
    dataset = build_dataset({'name': 'Set5', 'type': 'HROnlyDataset', 'dataroot_gt': str(SET5 / 'HR'),
                             'io_backend': {'type': 'disk'}, 'phase': 'val', 'scale': 4})
    item = dataset[1]
    h, w = item['gt'].shape[1:]
    assert item['lq'].shape[1:] == (h // 4, w // 4) and h % 4 == 0


def test_class_info_gives_class_ids_and_missing_keys_are_named(hr_lmdb, tmp_path):
    keys = read_meta_keys(hr_lmdb)
    info = tmp_path / 'classes.txt'
    info.write_text(''.join(f'{k} {i % 2}\n' for i, k in enumerate(keys)))
    opt = yaml.safe_load(TRAIN_YAML.format(root=hr_lmdb)) | {'class_info': str(info)}
    assert build_dataset(opt).class_ids == [0, 1, 0, 1, 0, 1]
    info.write_text(f'{keys[0]} 0\n')
    with pytest.raises(SRDistillError, match='no class for 5 keys'):
        build_dataset(opt)


def test_wrong_options_are_named(hr_lmdb):
    opt = yaml.safe_load(TRAIN_YAML.format(root=hr_lmdb))
    with pytest.raises(SRDistillError, match='gt_size'):
        build_dataset(opt | {'gt_size': 30})
    with pytest.raises(SRDistillError, match='scale'):
        build_dataset(opt | {'scale': '4'})
    with pytest.raises(SRDistillError, match='meta_info.txt'):
        build_dataset(opt | {'dataroot_gt': str(hr_lmdb.parent)})


def test_missing_lmdb_key_is_named(hr_lmdb, tmp_path):
    fake = tmp_path / 'fake.lmdb'
    fake.mkdir()
    (fake / 'meta_info.txt').write_text((hr_lmdb / 'meta_info.txt').read_text() + 'ghost.png (8,8,3) 1\n')
    for f in ('data.mdb', 'lock.mdb'):
        (fake / f).write_bytes((hr_lmdb / f).read_bytes())
    with pytest.raises(SRDistillError, match="1 of the 7 keys in meta_info.txt are missing from the database, e.g. 'ghost'"):
        build_dataset(yaml.safe_load(TRAIN_YAML.format(root=fake)))  # at start, not at the first read


class _Labelled(torch.utils.data.Dataset):
    def __init__(self, class_ids):
        self.class_ids = class_ids

    def __len__(self):
        return len(self.class_ids)


def test_class_balanced_sampler_balances_classes_and_shards_ranks():
    dataset = _Labelled([0] * 90 + [1] * 9 + [2] * 1)
    ranks = [build_sampler({'type': 'ClassBalancedSampler', 'seed': 3}, dataset, 2, r, 30) for r in range(2)]
    assert all(isinstance(s, ClassBalancedSampler) and len(s) == 1500 for s in ranks)
    drawn = [i for s in ranks for i in s]
    counts = Counter(dataset.class_ids[i] for i in drawn)
    assert all(abs(counts[c] / 3000 - 1 / 3) < 0.04 for c in range(3))
    first = list(ranks[0])
    assert first == list(ranks[0])  # deterministic for a given epoch
    ranks[0].set_epoch(1)
    assert list(ranks[0]) != first


def test_default_sampler_is_basicsr_enlarged_and_errors_are_clear():
    dataset = _Labelled([0, 1])
    assert isinstance(build_sampler(None, dataset, 1, 0, 2), EnlargedSampler)
    with pytest.raises(SRDistillError, match="unknown sampler 'Nope'"):
        build_sampler({'type': 'Nope'}, dataset, 1, 0)
    with pytest.raises(SRDistillError, match='has no class_ids'):
        build_sampler({'type': 'ClassBalancedSampler'}, torch.utils.data.TensorDataset(torch.zeros(2)), 1, 0)


def test_log_gradient_energy_is_the_official_flat_patch_statistic():
    # a 3x3 single-channel ramp: over the top-left 2x2, dy = -3 and dx = -1 everywhere, so mean(dx^2 + dy^2) = 10
    ramp = np.arange(9, dtype=np.float64).reshape(3, 3, 1)
    assert log_gradient_energy(ramp) == pytest.approx(math.log(10 + 1e-10))
    assert log_gradient_energy(np.full((8, 8, 3), 0.5)) == pytest.approx(math.log(1e-10))


def test_flat_crops_are_redrawn_and_meta_info_file_picks_keys(tmp_path):
    flat = np.full((64, 64, 3), 128, np.uint8)
    busy = flat.copy()
    busy[:, 32:] = np.random.default_rng(0).integers(0, 255, (64, 32, 3))  # textured right half only
    folder = tmp_path / 'imgs'
    folder.mkdir()
    cv2.imwrite(str(folder / 'a.png'), busy)
    cv2.imwrite(str(folder / 'b.png'), flat)
    lmdb = prepare_lmdbs(folder, tmp_path / 'out', PrepareOptions(scales=()))['HR']
    keys = tmp_path / 'keys.txt'
    keys.write_text('a\n')
    opt = yaml.safe_load(TRAIN_YAML.format(root=lmdb)) | {'gt_size': 16, 'meta_info_file': str(keys),
                                                          'use_hflip': False, 'use_rot': False}
    dataset = build_dataset(opt | {'min_log_gradient': -6})
    assert dataset.keys == ['a'] and len(dataset) == 1
    np.random.seed(0)
    kept = [log_gradient_energy(dataset[0]['gt'].numpy().transpose(1, 2, 0)) for _ in range(30)]
    np.random.seed(0)
    unfiltered = [log_gradient_energy(build_dataset(opt)[0]['gt'].numpy().transpose(1, 2, 0)) for _ in range(30)]
    assert min(kept) >= -6 and min(unfiltered) < -6
    keys.write_text('a\nghost\n')
    with pytest.raises(SRDistillError, match="meta_info_file: .*keys.txt: 1 of its keys are not in the data, e.g. 'ghost'"):
        build_dataset(opt)
    with pytest.raises(SRDistillError, match="option min_log_gradient: expected a number, got 'flat'"):
        build_dataset(opt | {'meta_info_file': None, 'min_log_gradient': 'flat'})
