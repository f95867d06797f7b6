# Runtime shared by srdistill's MMagic configs (the mmagic scope, iteration-based logging and checkpoints).
# Written out here rather than inherited with 'mmagic::', whose lookup needs pkg_resources (gone from setuptools>=81).
default_scope = 'mmagic'
custom_imports = dict(imports=['srdistill_plugin.mm'], allow_failed_imports=False)

default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=100),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(type='CheckpointHook', interval=500, by_epoch=False, max_keep_ckpts=3),
    sampler_seed=dict(type='DistSamplerSeedHook'),
)
env_cfg = dict(cudnn_benchmark=False, mp_cfg=dict(mp_start_method='fork', opencv_num_threads=1),
               dist_cfg=dict(backend=None))  # chosen at start: nccl with GPUs, gloo without (set one to force it)
log_level = 'INFO'
log_processor = dict(type='LogProcessor', window_size=100, by_epoch=False)
load_from = None
resume = False
randomness = dict(seed=0)
vis_backends = [dict(type='LocalVisBackend')]
visualizer = dict(type='ConcatImageVisualizer', vis_backends=vis_backends, fn_key='gt_path',
                  img_keys=['gt_img', 'input', 'pred_img'], bgr2rgb=True)
