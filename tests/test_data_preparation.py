"""HR folder -> BasicSR LMDBs: round trip, conversions, clear errors, and no finished-looking partial output."""
import math
import os
import subprocess
import sys

import cv2
import lmdb
import numpy as np
import pytest

from srdistill.core import prepare as prepare_module
from srdistill.core.degradations import bicubic_downscale
from srdistill.core.errors import SRDistillError
from srdistill.core.imageio import read_image
from srdistill.core.lmdb_io import partial_path, read_meta_keys
from srdistill.core.prepare import PrepareOptions, prepare_lmdbs
from srdistill_plugin.zero_shot.pretrain_pool import PoolSplit, prepare_pretrain_pool

from .conftest import SET5, run_tool


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return 10 * math.log10(255. ** 2 / np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))


def test_lmdb_round_trip_keys_shapes_meta_info(photo_dir, tmp_path):
    out = prepare_lmdbs(photo_dir, tmp_path, PrepareOptions(crop_size=64, step=64, scales=(2, 4)))
    keys = read_meta_keys(out['HR'])
    assert len(keys) == 6 * 4 and keys[0] == 'astronaut_s001'
    assert read_meta_keys(out['X4']) == keys
    assert (out['HR'] / 'meta_info.txt').read_text().splitlines()[0] == 'astronaut_s001.png (64,64,3) 1'
    env = lmdb.open(str(out['X4']), readonly=True, lock=False)
    with env.begin() as txn:
        lr = cv2.imdecode(np.frombuffer(txn.get(keys[0].encode()), np.uint8), cv2.IMREAD_UNCHANGED)
    assert lr.shape == (16, 16, 3)
    hr = read_image(photo_dir / 'astronaut.png')[:64, :64]
    assert np.array_equal(lr, (bicubic_downscale(hr, 4) * 255).round().astype(np.uint8))


def test_greyscale_16bit_and_alpha_are_converted(tmp_path):
    grey = np.random.default_rng(0).integers(0, 255, (40, 48), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / 'grey.png'), grey)
    cv2.imwrite(str(tmp_path / 'deep.png'), grey.astype(np.uint16) * 257)
    cv2.imwrite(str(tmp_path / 'alpha.png'), np.dstack([grey, grey, grey, np.full_like(grey, 7)]))
    for name in ('grey', 'deep', 'alpha'):
        img = read_image(tmp_path / f'{name}.png')
        assert img.shape == (40, 48, 3) and img.dtype == np.float32
        assert np.allclose(img[..., 1], grey / 255., atol=1e-6)


def test_images_pillow_decodes_read_as_opencv_reads_them_and_the_rest_through_opencv(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(1)
    bgr = rng.integers(0, 255, (24, 30, 3), dtype=np.uint8)
    bgr[0, 0] = (10, 120, 250)  # a pixel whose channel order shows
    files = {'bgr.png': bgr, 'bgra.png': np.dstack([bgr, np.full_like(bgr[..., 0], 9)]), 'grey.png': bgr[..., 0],
             'deep.png': rng.integers(0, 65535, (24, 30, 3), dtype=np.uint16), 'photo.jpg': bgr,
             'deep_grey.png': rng.integers(0, 65535, (24, 30), dtype=np.uint16)}
    for name, pixels in files.items():
        cv2.imwrite(str(tmp_path / name), pixels)
    Image.fromarray(bgr[..., 0]).convert('P').save(tmp_path / 'palette.png')  # a mode Pillow leaves to OpenCV
    for name in [*files, 'palette.png']:
        expected = cv2.imread(str(tmp_path / name), cv2.IMREAD_UNCHANGED)
        expected = np.repeat(expected[..., None], 3, 2) if expected.ndim == 2 else expected[..., :3]
        scale = 65535. if expected.dtype == np.uint16 else 255.
        np.testing.assert_array_equal(read_image(tmp_path / name), expected.astype(np.float32) / np.float32(scale))
    assert np.allclose(read_image(tmp_path / 'bgr.png')[0, 0] * 255, (10, 120, 250))


def test_corrupt_image_gives_one_line_error_and_no_lmdb(photo_dir, tmp_path):
    src = tmp_path / 'src'
    src.mkdir()
    for p in sorted(photo_dir.iterdir())[:2]:
        (src / p.name).write_bytes(p.read_bytes())
    (src / 'zz_broken.png').write_bytes(b'\x89PNG not really')
    proc = run_tool('tools/prepare_data.py', '--input', str(src), '--output', str(tmp_path / 'out'), check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == f'error: {src / "zz_broken.png"}: cannot decode image (corrupt or not an image)'
    assert not list((tmp_path / 'out').glob('*.lmdb'))


def test_tiny_image_is_rejected_by_name(tmp_path):
    cv2.imwrite(str(tmp_path / 'tiny.png'), np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(SRDistillError, match='tiny.png: image is 8x8, smaller than the required 32 px'):
        prepare_lmdbs(tmp_path, tmp_path / 'out', PrepareOptions())


def test_interrupted_write_leaves_no_finished_lmdb(photo_dir, tmp_path, monkeypatch):
    calls = []
    real_read = prepare_module.read_image

    def read_then_interrupt(path, min_size=1):
        calls.append(path)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real_read(path, min_size)

    monkeypatch.setattr(prepare_module, 'read_image', read_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        prepare_lmdbs(photo_dir, tmp_path, PrepareOptions(scales=(4, )))
    assert sorted(os.listdir(tmp_path)) == []


def test_killed_writer_leaves_only_a_temporary_name(photo_dir, tmp_path):
    target = tmp_path / 'HR.lmdb'
    code = (f'import os, numpy as np\nfrom srdistill.core.lmdb_io import atomic_lmdb\n'
            f'with atomic_lmdb({str(target)!r}, 2**24) as w:\n'
            f'    w.put("a", np.zeros((8, 8, 3), np.uint8))\n    os._exit(9)\n')
    assert subprocess.run([sys.executable, '-c', code]).returncode == 9
    assert not target.exists() and partial_path(target).exists()
    prepare_lmdbs(photo_dir, tmp_path, PrepareOptions(scales=(4, )))  # a new run cleans up and finishes
    assert target.exists() and not partial_path(target).exists()


def test_existing_lmdb_is_not_overwritten_silently(photo_dir, tmp_path):
    prepare_lmdbs(photo_dir, tmp_path, PrepareOptions(scales=(4, )))
    with pytest.raises(SRDistillError, match='already exists'):
        prepare_lmdbs(photo_dir, tmp_path, PrepareOptions(scales=(4, )))


def test_wrong_scale_and_crop_options_are_named():
    with pytest.raises(SRDistillError, match='--scales'):
        PrepareOptions(scales=(5, )).validate()
    with pytest.raises(SRDistillError, match='crop_size'):
        PrepareOptions(crop_size=50, step=25, scales=(4, )).validate()


def test_bicubic_x4_of_set5_matches_matlab_reference():
    for hr_path in sorted((SET5 / 'HR').glob('*.png')):
        ref = cv2.imread(str(SET5 / 'LR_bicubic' / 'X4' / f'{hr_path.stem}x4.png'))
        ours = (bicubic_downscale(read_image(hr_path), 4) * 255).round().astype(np.uint8)
        assert psnr(ours, ref) > 45, hr_path.name


def test_pool_skips_bad_photographs_with_one_line_each_and_splits_by_photograph(photo_dir, tmp_path, capsys):
    pool = tmp_path / 'pool'
    pool.mkdir()
    for p in sorted(photo_dir.iterdir()):
        (pool / p.name).write_bytes(p.read_bytes())
    (pool / 'broken.png').write_bytes(b'\x89PNG not really')
    cv2.imwrite(str(pool / 'small.png'), np.zeros((40, 40, 3), np.uint8))
    split = PoolSplit(heldout_every=4, crop_size=64, step=64, min_size=64)
    lmdbs = prepare_pretrain_pool([pool], tmp_path / 'out', split, with_bundled=False)
    err = capsys.readouterr().err
    assert f'skipped: {tmp_path / "out" / "train_photos" / "pool_broken.png"}: cannot decode image' in err
    assert 'pool_small.png: image is 40x40, smaller than the required 64 px' in err
    assert 'skipped 2 of 6 images' in err
    # sorted: astronaut, broken, chelsea, coffee, hubble..., immuno..., rocket, small; indices 2 and 6 are held out
    heldout = read_meta_keys(lmdbs['heldout'])
    assert heldout == ['pool_chelsea', 'pool_rocket']
    assert (tmp_path / 'out' / 'heldout.txt').read_text() == 'pool_chelsea.png\npool_rocket.png\n'
    train = read_meta_keys(lmdbs['train'])
    assert {k.rsplit('_s', 1)[0] for k in train} == {'pool_astronaut', 'pool_coffee', 'pool_hubble_deep_field',
                                                     'pool_immunohistochemistry'}
    assert len(train) == 4 * 4  # 128x128 photographs in 64x64 tiles
