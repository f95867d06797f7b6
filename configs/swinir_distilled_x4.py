# SwinIR x4 (CPU-sized, the same network as options/swinir_distilled_x4.yml) trained on the distilled LMDB
# through MMagic / MMEngine:  python tools/mm_train.py configs/swinir_distilled_x4.py
_base_ = ['_base_/runtime.py']

experiment_name = 'swinir_distilled_x4'
work_dir = f'./work_dirs/{experiment_name}'
scale = 4
gt_size = 64

model = dict(
    type='BaseEditModel',
    generator=dict(
        type='SwinIRNet', upscale=scale, in_chans=3, img_size=gt_size // scale, window_size=8, img_range=1.0,
        depths=[2, 2], embed_dim=36, num_heads=[4, 4], mlp_ratio=2, upsampler='pixelshuffledirect',
        resi_connection='1conv'),
    pixel_loss=dict(type='L1Loss', loss_weight=1.0, reduction='mean'),
    data_preprocessor=dict(type='DataPreprocessor', mean=[0., 0., 0.], std=[255., 255., 255.]))

train_pipeline = [
    dict(type='LoadImageFromLMDB', key='gt', channel_order='rgb'),
    dict(type='Crop', keys=['gt'], crop_size=(gt_size, gt_size), random_crop=True),
    dict(type='Flip', keys=['gt'], flip_ratio=0.5, direction='horizontal'),
    dict(type='Flip', keys=['gt'], flip_ratio=0.5, direction='vertical'),
    dict(type='RandomTransposeHW', keys=['gt'], transpose_ratio=0.5),
    dict(type='BicubicDegradation', scale=scale),       # LR by MATLAB bicubic, on the fly
    dict(type='PackInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile', key='img', color_type='color', channel_order='rgb', imdecode_backend='cv2'),
    dict(type='LoadImageFromFile', key='gt', color_type='color', channel_order='rgb', imdecode_backend='cv2'),
    dict(type='PackInputs'),
]

train_dataloader = dict(
    num_workers=0, batch_size=8, drop_last=True, persistent_workers=False,
    sampler=dict(type='ClassBalancedSampler', seed=0, enlarge_ratio=100),  # as dataset_enlarge_ratio in BasicSR
    dataset=dict(type='BasicSRLMDBDataset', data_root='datasets/distilled_x4/HR.lmdb', pipeline=train_pipeline))


val_dataloader = dict(  # Set5 with its reference MATLAB-bicubic LR (datasets/Set5/LR_bicubic/X4/img_001x4.png ...)
    num_workers=0, persistent_workers=False, drop_last=False, sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type='BasicImageDataset', metainfo=dict(dataset_type='set5', task_name='sisr'),
                 data_root='datasets/Set5', data_prefix=dict(img='LR_bicubic/X4', gt='HR'),
                 filename_tmpl=dict(img='{}x4', gt='{}'), pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = [dict(type='PSNR', crop_border=scale, convert_to='Y'), dict(type='SSIM', crop_border=scale, convert_to='Y')]
test_evaluator = val_evaluator

train_cfg = dict(type='IterBasedTrainLoop', max_iters=2000, val_interval=500)
val_cfg = dict(type='MultiValLoop')   # MMagic's loops: its metrics need them
test_cfg = dict(type='MultiTestLoop')
optim_wrapper = dict(type='OptimWrapper', optimizer=dict(type='Adam', lr=1e-3, betas=(0.9, 0.99)))
param_scheduler = dict(type='MultiStepLR', by_epoch=False, milestones=[1000, 1500], gamma=0.5)
default_hooks = dict(checkpoint=dict(save_best='PSNR', rule='greater'))
