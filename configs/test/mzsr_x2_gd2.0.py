# Zero-shot x2 test through MMagic: Set5 degraded by g^d_2.0, each image adapted from the meta-learned weights.
#   python tools/mm_test.py configs/test/mzsr_x2_gd2.0.py work_dirs/mzsr_meta_x2/iter_600.pth
# Other step counts: --cfg-options model.adaptation.steps=10 ; other kernels: change 'kernel' below.
_base_ = ['../mzsr_meta_x2.py']

model = dict(pretrained_basicsr=None, adaptation=dict(steps=1))
