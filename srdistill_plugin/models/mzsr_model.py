"""MZSR meta-transfer learning and zero-shot test-time adaptation as a BasicSR model."""
from __future__ import annotations

import time
from collections import OrderedDict

import torch
import torch.distributed as dist
from basicsr.archs import build_network
from basicsr.models.sr_model import SRModel
from basicsr.utils import get_root_logger
from basicsr.utils.registry import MODEL_REGISTRY

from srdistill_plugin.core.errors import SRDistillError
from srdistill_plugin.core.maml import multi_step_loss_weights, task_query_loss
from srdistill_plugin.core.zero_shot import ZSSRConfig, mzsr_adapt, zssr_train


@MODEL_REGISTRY.register()
class MZSRModel(SRModel):
    """Meta-transfer learning (MAML over blur-kernel tasks) in ``optimize_parameters``; adaptation in ``test``.

    ``train.meta``: ``inner_lr`` (1e-2), ``inner_steps`` (5), ``first_order`` (false), ``anneal_iters`` (MAML++
    multi-step loss annealing, 10000). The outer optimizer is ``train.optim_g`` (Adam 1e-4 in the paper) and the
    task loss ``train.pixel_opt`` (L1). Start from the pretrained network with ``path.pretrain_network_g``.

    ``val.adaptation``: ``{mode: mzsr, steps: N, step_sizes: [...]}`` (the official schedule by default) or
    ``{mode: zssr, max_iters: N, crop_size: 128, ...}`` (ZSSR from a fresh initialisation).
    """

    def __init__(self, opt: dict):
        upscale = opt['network_g'].get('upscale')
        if upscale is not None and upscale != opt['scale']:
            raise SRDistillError(f'option network_g.upscale ({upscale}) does not match scale ({opt["scale"]})')
        super().__init__(opt)
        self.adaptation_times: list[float] = []

    def init_training_settings(self):
        super().init_training_settings()
        meta = self.opt['train'].get('meta', {})
        self.inner_lr = float(meta.get('inner_lr', 1e-2))
        self.inner_steps = int(meta.get('inner_steps', 5))
        self.first_order = bool(meta.get('first_order', False))
        self.anneal_iters = int(meta.get('anneal_iters', 10000))

    def feed_data(self, data: dict):
        if 'support_lq' in data:  # a meta-batch of tasks
            self.tasks = {k: data[k].to(self.device) for k in ('support_lq', 'support_gt', 'query_lq', 'query_gt')}
        else:
            super().feed_data(data)
            self.kernel = data['kernel'][0].to(self.device)
            self.downsample = data.get('downsample', ['direct'])[0]

    def optimize_parameters(self, current_iter: int):
        net = self.get_bare_model(self.net_g)
        params = OrderedDict(net.named_parameters())
        weights = multi_step_loss_weights(self.inner_steps, current_iter, self.anneal_iters)
        num_tasks = self.tasks['support_lq'].shape[0]
        self.optimizer_g.zero_grad(set_to_none=True)
        first, last = 0., 0.
        for t in range(num_tasks):
            support = (self.tasks['support_lq'][t], self.tasks['support_gt'][t])
            query = (self.tasks['query_lq'][t], self.tasks['query_gt'][t])
            loss, per_step = task_query_loss(net, params, support, query, self.inner_lr, weights, self.cri_pix,
                                             self.first_order)
            (loss / num_tasks).backward()
            first, last = first + per_step[0] / num_tasks, last + per_step[-1] / num_tasks
        if self.opt['dist']:
            for p in net.parameters():
                dist.all_reduce(p.grad)
                p.grad /= dist.get_world_size()
        self.optimizer_g.step()
        self.log_dict = OrderedDict(l_query_step1=first, l_query_final=last)
        if self.ema_decay > 0:
            self.model_ema(decay=self.ema_decay)

    def test(self):
        net = self.net_g_ema if hasattr(self, 'net_g_ema') else self.get_bare_model(self.net_g)
        adaptation = dict(self.opt.get('val', {}).get('adaptation', {'mode': 'mzsr', 'steps': 0}))
        mode = adaptation.pop('mode', 'mzsr')
        start = time.perf_counter()
        with torch.enable_grad():
            if mode == 'mzsr':
                adapted, _ = mzsr_adapt(net, self.lq, self.kernel, self.opt['scale'], int(adaptation.get('steps', 0)),
                                        self.downsample, adaptation.get('step_sizes'))
            elif mode == 'zssr':
                adapted = build_network(self.opt['network_g']).to(self.device)
                zssr_train(adapted, self.lq, self.kernel, self.opt['scale'], ZSSRConfig(**adaptation), self.downsample)
            else:
                raise SRDistillError(f"option val.adaptation.mode: expected 'mzsr' or 'zssr', got {mode!r}")
        self.adaptation_times.append(time.perf_counter() - start)
        adapted.eval()
        with torch.no_grad():
            self.output = adapted(self.lq)

    def nondist_validation(self, dataloader, current_iter, tb_logger, save_img):
        self.adaptation_times = []
        super().nondist_validation(dataloader, current_iter, tb_logger, save_img)
        mean_time = sum(self.adaptation_times) / max(len(self.adaptation_times), 1)
        get_root_logger().info(f'Adaptation time per image: {mean_time:.3f} s')
        self.extra_results = {'adapt_time_s': mean_time}
