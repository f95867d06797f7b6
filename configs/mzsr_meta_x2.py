# MZSR meta-transfer learning (x2) through MMagic / MMEngine: the CPU-sized recipe of options/mzsr_meta_x2_cpu.yml
# (paper scale: options/mzsr_meta_x2.yml). Start from the BasicSR bicubic pretraining:
#   python tools/train.py -opt options/mzsr_pretrain_x2_cpu.yml
#   python tools/mm_train.py configs/mzsr_meta_x2.py
_base_ = ['_base_/runtime.py']

experiment_name = 'mzsr_meta_x2'
work_dir = f'./work_dirs/{experiment_name}'
scale = 2

model = dict(
    type='MZSRMetaModel',
    scale=scale,
    generator=dict(type='MZSRNet', num_feat=64, num_layers=8, upscale=scale),
    pixel_loss=dict(type='L1Loss', loss_weight=1.0, reduction='mean'),
    pretrained_basicsr='experiments/MZSR_pretrain_x2_cpu/models/net_g_latest.pth',
    meta=dict(inner_lr=1e-2, inner_steps=1, first_order=False),
    adaptation=dict(steps=1),
    data_preprocessor=dict(type='MZSRTaskPreprocessor', mean=[0., 0., 0.], std=[255., 255., 255.]))

train_dataloader = dict(
    num_workers=0, batch_size=2, persistent_workers=False, collate_fn=dict(type='default_collate'),
    sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(type='MZSRTasks', dataroot_gt='datasets/demo/HR.lmdb', io_backend=dict(type='lmdb'), scale=scale,
                 gt_size=48, num_patches=4, kernel_size=15, tasks_per_epoch=1000))

test_pipeline = [
    dict(type='LoadImageFromFile', key='gt', color_type='color', channel_order='rgb', imdecode_backend='cv2'),
    dict(type='BlurKernelDegradation', scale=scale, kernel='gd2.0'),
    dict(type='PackInputs', meta_keys=['kernel', 'downsample']),
]
val_dataloader = dict(
    num_workers=0, persistent_workers=False, drop_last=False, sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type='BasicImageDataset', metainfo=dict(dataset_type='set5', task_name='sisr'),
                 data_root='datasets/Set5', data_prefix=dict(gt='HR'), pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = [dict(type='PSNR', crop_border=scale, convert_to='Y'), dict(type='SSIM', crop_border=scale, convert_to='Y')]
test_evaluator = val_evaluator

train_cfg = dict(type='IterBasedTrainLoop', max_iters=600, val_interval=300)
val_cfg = dict(type='MultiValLoop')
test_cfg = dict(type='MultiTestLoop')
optim_wrapper = dict(type='OptimWrapper', optimizer=dict(type='Adam', lr=1e-4, betas=(0.9, 0.999)))
default_hooks = dict(logger=dict(interval=20), checkpoint=dict(interval=100))
