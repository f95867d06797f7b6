"""The MMagic / MMEngine side: registrations, configs, Runner iterations, metric agreement, the MZSR train_step."""
import math

import numpy as np
import pytest
import torch
from basicsr.metrics import calculate_psnr, calculate_ssim

import srdistill_plugin.mm  # noqa: F401  (what custom_imports loads)
from mmagic.evaluation.metrics.psnr import psnr as mmagic_psnr
from mmagic.evaluation.metrics.ssim import ssim as mmagic_ssim
from mmagic.registry import DATA_SAMPLERS, DATASETS, MODELS, TRANSFORMS
from mmengine.config import Config
from mmengine.optim import OptimWrapper

from srdistill.core.degradations import bicubic_downscale, bicubic_upscale
from srdistill.core.errors import SRDistillError
from srdistill.core.imageio import read_image
from srdistill.core.lmdb_io import read_meta_keys
from srdistill.core.prepare import PrepareOptions, prepare_lmdbs

from .conftest import ROOT, SET5, run_tool

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def mmagic_scope():
    """Outside a Runner, builds resolve names in the default scope the configs set (mmagic)."""
    from mmengine.registry import init_default_scope
    init_default_scope('mmagic')


@pytest.fixture(scope='module')
def labelled_lmdb(photo_dir, tmp_path_factory):
    """A small HR LMDB with a class_info.txt, like the distilled set."""
    lmdb = prepare_lmdbs(photo_dir, tmp_path_factory.mktemp('mm'), PrepareOptions(scales=(4, )))['HR']
    (lmdb / 'class_info.txt').write_text(''.join(f'{k} {i % 2}\n' for i, k in enumerate(read_meta_keys(lmdb))))
    return lmdb


def test_components_build_from_the_config(labelled_lmdb):
    cfg = Config.fromfile(str(ROOT / 'configs' / 'swinir_distilled_x4.py'))
    dataset = DATASETS.build(dict(cfg.train_dataloader.dataset, data_root=str(labelled_lmdb)))
    item = dataset[0]
    assert item['inputs'].shape == (3, 16, 16) and item['data_samples'].gt_img.shape == (3, 64, 64)
    assert dataset.class_ids == [0, 1, 0, 1, 0, 1]
    sampler = DATA_SAMPLERS.build(dict(cfg.train_dataloader.sampler), default_args=dict(dataset=dataset))
    assert len(list(sampler)) == 6 * 100  # long epochs, as BasicSR's dataset_enlarge_ratio: MMEngine sleeps between
    with pytest.raises(SRDistillError, match='option sampler.enlarge_ratio'):
        DATA_SAMPLERS.build(dict(type='ClassBalancedSampler', enlarge_ratio=0), default_args=dict(dataset=dataset))
    assert type(MODELS.build(cfg.model)).__name__ == 'BaseEditModel'
    degraded = TRANSFORMS.build(dict(type='BlurKernelDegradation', scale=2, kernel='gd2.0'))({'gt': np.zeros((33, 31, 3), np.uint8)})
    assert degraded['img'].shape == (16, 15, 3) and degraded['kernel'].shape == (21, 21)  # the paper's evaluation kernels


def test_runner_trains_resumes_and_tests_from_its_weights_only_checkpoints(labelled_lmdb, tmp_path):
    """Training, ``--resume`` and ``mm_test`` (``load_from``) read MMEngine's own checkpoints weights-only."""
    args = ('configs/swinir_distilled_x4.py', '--work-dir', str(tmp_path), '--cfg-options',
            f'train_dataloader.dataset.data_root={labelled_lmdb}', 'train_cfg.val_interval=4',
            'default_hooks.logger.interval=2', 'default_hooks.checkpoint.interval=2', 'train_dataloader.batch_size=2')
    proc = run_tool('tools/mm_train.py', *args, 'train_cfg.max_iters=4')
    assert (tmp_path / 'iter_4.pth').is_file()
    assert 'PSNR:' in proc.stdout + proc.stderr
    proc = run_tool('tools/mm_train.py', *args, 'train_cfg.max_iters=6', '--resume')
    assert 'resumed epoch: 0, iter: 4' in proc.stdout + proc.stderr and (tmp_path / 'iter_6.pth').is_file()
    proc = run_tool('tools/mm_test.py', 'configs/swinir_distilled_x4.py', str(tmp_path / 'iter_6.pth'),
                    '--work-dir', str(tmp_path / 'test'))
    assert f'Load checkpoint from {tmp_path / "iter_6.pth"}' in proc.stdout + proc.stderr
    assert 'PSNR:' in proc.stdout + proc.stderr


def test_mmagic_and_basicsr_metrics_agree():
    for hr_path in sorted((SET5 / 'HR').glob('*.png'))[:3]:
        hr = read_image(hr_path)
        sr = bicubic_upscale(bicubic_downscale(hr, 4), 4)
        hr_u8, sr_u8 = (np.round(x * 255).astype(np.uint8) for x in (hr, sr))  # BGR
        ours = calculate_psnr(sr_u8, hr_u8, 4, test_y_channel=True)
        theirs = mmagic_psnr(sr_u8[:, :, ::-1], hr_u8[:, :, ::-1], crop_border=4, convert_to='Y', channel_order='rgb')
        assert abs(ours - theirs) < 1e-4
        ours_ssim = calculate_ssim(sr_u8, hr_u8, 4, test_y_channel=True)
        theirs_ssim = mmagic_ssim(sr_u8[:, :, ::-1], hr_u8[:, :, ::-1], crop_border=4, convert_to='Y', channel_order='rgb')
        assert abs(ours_ssim - theirs_ssim) < 1e-4


def test_mzsr_train_step_lowers_the_query_loss(photo_dir):
    torch.manual_seed(0)
    np.random.seed(0)
    model = MODELS.build(dict(type='MZSRMetaModel', scale=2, generator=dict(type='MZSRNet', num_feat=16, num_layers=4),
                              pixel_loss=dict(type='L1Loss'), meta=dict(inner_steps=2, inner_lr=0.01),
                              data_preprocessor=dict(type='MZSRTaskPreprocessor', mean=[0.] * 3, std=[255.] * 3)))
    tasks = DATASETS.build(dict(type='MZSRTasks', dataroot_gt=str(photo_dir), io_backend=dict(type='disk'), scale=2,
                                gt_size=48, num_patches=4, kernel_size=11, tasks_per_epoch=4))
    batch = torch.utils.data.default_collate([tasks[0], tasks[1]])
    wrapper = OptimWrapper(torch.optim.Adam(model.parameters(), lr=1e-3))
    logs = [model.train_step(batch, wrapper) for _ in range(15)]
    assert logs[-1]['l_query_final'] < 0.8 * logs[0]['l_query_final']


def test_mzsr_config_adapts_each_test_image(tmp_path):
    from mmengine.hooks import Hook
    from mmengine.runner import Runner

    metrics = {}

    class CaptureMetrics(Hook):
        def after_test_epoch(self, runner, metrics_=None, **kwargs):
            metrics.update(kwargs.get('metrics') or metrics_ or {})

    cfg = Config.fromfile(str(ROOT / 'configs' / 'test' / 'mzsr_x2_gd2.0.py'))
    cfg.work_dir = str(tmp_path)
    cfg.model.generator.update(num_feat=8, num_layers=2)
    cfg.test_dataloader.dataset.indices = [1]
    runner = Runner.from_cfg(cfg)
    runner.register_hook(CaptureMetrics())
    runner.test()
    assert math.isfinite(metrics['PSNR']) and metrics['PSNR'] > 15  # untrained tiny generator: only the plumbing


def test_wrong_config_key_is_mmengines_one_line_error(tmp_path):
    proc = run_tool('tools/mm_train.py', 'configs/swinir_distilled_x4.py', '--work-dir', str(tmp_path), '--cfg-options',
                    'train_dataloader.dataset.type=BasicSRLMDBDatset', check=False)
    assert proc.returncode == 2
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith('error: config configs/swinir_distilled_x4.py: BasicSRLMDBDatset is not in the mmagic::dataset registry')
