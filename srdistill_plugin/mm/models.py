"""MMagic models: the MZSR network, and MZSR meta-transfer learning / zero-shot adaptation as a BaseEditModel.
SwinIR on this side is MMagic's own ``SwinIRNet``."""
from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import torch
from mmagic.models import BaseEditModel, DataPreprocessor
from mmagic.registry import MODELS
from mmengine.logging import MessageHub

from srdistill_plugin.archs.mzsr_arch import MZSRNet
from srdistill.core.errors import SRDistillError
from srdistill.core.maml import PAPER_ANNEAL_ITERS, multi_step_loss_weights, task_query_loss
from srdistill.core.safe_load import load_checkpoint
from srdistill.core.zero_shot import mzsr_adapt

MODELS.register_module(module=MZSRNet)

TASK_KEYS = ('support_lq', 'support_gt', 'query_lq', 'query_gt')


@MODELS.register_module()
class MZSRTaskPreprocessor(DataPreprocessor):
    """MMagic's ``DataPreprocessor`` that also passes a batch of MZSR tasks (``MZSRTasks``: already float [0, 1]) through,
    moved to the model's device, so meta-training runs through ``BaseModel.train_step`` and MMEngine's DDP wrapper."""

    def forward(self, data, training: bool = False):
        if isinstance(data, dict) and all(k in data for k in TASK_KEYS):
            return {k: data[k].to(self.device) for k in TASK_KEYS}
        return super().forward(data, training)


def load_basicsr_params(path: str) -> dict:
    """The network weights of a BasicSR checkpoint (``params``, else ``params_ema``), with a clear error."""
    if not Path(path).is_file():
        raise SRDistillError(f'option model.pretrained_basicsr: {path} does not exist')
    checkpoint = load_checkpoint(path)
    for key in ('params', 'params_ema'):
        if key in checkpoint:
            return checkpoint[key]
    raise SRDistillError(f'option model.pretrained_basicsr: {path} has no params / params_ema (not a BasicSR file)')


@MODELS.register_module()
class MZSRMetaModel(BaseEditModel):
    """``train_step`` = one MAML outer step over a batch of ``MZSRTasks`` (the same functional inner loop as the
    BasicSR ``MZSRModel``); inference adapts a copy of the generator to each test image (son -> LR) first.

    Args beyond BaseEditModel's: ``scale``; ``pretrained_basicsr``: generator weights from a BasicSR checkpoint;
    ``meta``: ``inner_lr`` (1e-2), ``inner_steps`` (5), ``first_order``
    (False), ``anneal_iters`` (the paper's MAML++ schedule, 3233; 0 = uniform weights as the released code trains);
    ``adaptation``: ``steps`` (1), ``schedule`` (official step sizes: direct_x2, bicubic_x2, direct_x4,
    multiscale) or ``step_sizes``.
    Test pipelines must carry ``kernel`` and ``downsample`` as meta keys (``BlurKernelDegradation`` sets them).
    """

    def __init__(self, generator: dict, pixel_loss: dict, scale: int = 2, meta: dict | None = None,
                 adaptation: dict | None = None, pretrained_basicsr: str | None = None, **kwargs):
        super().__init__(generator, pixel_loss, **kwargs)
        if not isinstance(self.data_preprocessor, MZSRTaskPreprocessor):
            raise SRDistillError("MZSRMetaModel: set data_preprocessor=dict(type='MZSRTaskPreprocessor', ...) (MMagic's "
                                 'DataPreprocessor with MZSR task batches passed through)')
        if pretrained_basicsr:  # e.g. the bicubic pretraining run by tools/train.py (a BasicSR 'params' file)
            self.generator.load_state_dict(load_basicsr_params(pretrained_basicsr))
        meta = meta or {}
        self.scale = scale
        self.inner_lr = float(meta.get('inner_lr', 1e-2))
        self.inner_steps = int(meta.get('inner_steps', 5))
        self.first_order = bool(meta.get('first_order', False))
        self.anneal_iters = float(meta.get('anneal_iters', PAPER_ANNEAL_ITERS))
        self.adaptation = adaptation or {'steps': 1}

    def meta_loss(self, tasks: dict) -> dict:
        """The weighted query loss of every task after the inner loop, and the per-step query losses for logs."""
        current_iter = MessageHub.get_current_instance().get_info('iter', 0)
        weights = multi_step_loss_weights(self.inner_steps, current_iter, self.anneal_iters)
        params = OrderedDict(self.generator.named_parameters())
        num_tasks = tasks['support_lq'].shape[0]
        total, first, last = 0., 0., 0.
        for t in range(num_tasks):
            loss, per_step = task_query_loss(self.generator, params, (tasks['support_lq'][t], tasks['support_gt'][t]),
                                             (tasks['query_lq'][t], tasks['query_gt'][t]), self.inner_lr, weights,
                                             self.pixel_loss, self.first_order)
            total = total + loss / num_tasks
            first, last = first + per_step[0] / num_tasks, last + per_step[-1] / num_tasks
        log = {'l_query_step1': torch.tensor(first), 'l_query_final': torch.tensor(last)}  # logged, not summed
        return {'loss_meta': total, **log}

    def forward(self, inputs=None, data_samples=None, mode: str = 'tensor', **tasks):
        """``mode='loss'`` with a task batch (``support_lq``, ...): the meta-loss, so that ``train_step`` - this
        model's or MMEngine's DDP wrapper's - does one MAML outer step (second order unless ``first_order``)."""
        if mode == 'loss' and tasks:
            return self.meta_loss(tasks)
        return super().forward(inputs, data_samples, mode=mode)

    def forward_tensor(self, inputs: torch.Tensor, data_samples=None, **kwargs) -> torch.Tensor:
        if self.training or data_samples is None:
            return self.generator(inputs)
        samples = data_samples if isinstance(data_samples, list) else data_samples.split(allow_nonseq_value=True)
        outputs = []
        for image, sample in zip(inputs, samples):
            kernel = torch.as_tensor(sample.metainfo['kernel'], dtype=image.dtype, device=image.device)
            with torch.enable_grad():  # MMEngine's val/test loops run under no_grad
                adapted, _ = mzsr_adapt(self.generator, image[None], kernel, self.scale, int(self.adaptation['steps']),
                                        sample.metainfo.get('downsample', 'direct'), self.adaptation.get('step_sizes'),
                                        self.adaptation.get('schedule', 'direct_x2'))
            with torch.no_grad():
                outputs.append(adapted(image[None]))
        return torch.cat(outputs)
