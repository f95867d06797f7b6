# Standard benchmark test of configs/swinir_distilled_x4.py (PSNR/SSIM on Y, border 4):
#   python tools/mm_test.py configs/test/swinir_x4_benchmarks.py work_dirs/swinir_distilled_x4/iter_2000.pth
# Set5 ships in datasets/; Set14 is read from ../shared/data/benchmarks (add B100, Urban100, Manga109 the same way).
_base_ = ['../swinir_distilled_x4.py']

_set5 = _base_.val_dataloader
_set14 = dict(_set5, dataset=dict(_set5['dataset'], metainfo=dict(dataset_type='set14', task_name='sisr'),
                                   data_root='../shared/data/benchmarks/Set14'))
test_dataloader = [_set5, _set14]
test_evaluator = [
    [dict(type='PSNR', crop_border=4, convert_to='Y', prefix='Set5'),
     dict(type='SSIM', crop_border=4, convert_to='Y', prefix='Set5')],
    [dict(type='PSNR', crop_border=4, convert_to='Y', prefix='Set14'),
     dict(type='SSIM', crop_border=4, convert_to='Y', prefix='Set14')],
]
