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

from srdistill.core.errors import SRDistillError
from srdistill.core.maml import PAPER_ANNEAL_ITERS, multi_step_loss_weights, task_query_loss
from srdistill.core.zero_shot import mzsr_adapt
from srdistill.core.zssr import ZSSRConfig, zssr_infer, zssr_train

# ZSSR's own network (official configs.py): no biases, weights ~ N(0, init_variance / fan_in).
ZSSR_NETWORK = {'bias': False, 'init_variance': 0.1}


@MODEL_REGISTRY.register()
class MZSRModel(SRModel):
    """Meta-transfer learning (MAML over blur-kernel tasks) in ``optimize_parameters``; adaptation in ``test``.

    ``train.meta``: ``inner_lr`` (1e-2), ``inner_steps`` (5), ``first_order`` (false), ``loss_weights``:
    ``annealed`` (default: the paper's MAML++ formula, early-step weights decaying over ``anneal_iters`` = 3233
    iterations) or ``uniform`` (what the released code trains with). The outer optimizer is ``train.optim_g`` (Adam
    1e-4 in the paper) and the task loss ``train.pixel_opt`` (L1). Start from the pretrained network with
    ``path.pretrain_network_g``.

    ``val.adaptation``: ``{mode: mzsr, steps: N, schedule: direct_x2|bicubic_x2|direct_x4|multiscale}`` (the
    official step sizes of that model; ``step_sizes: [...]`` overrides) or ``{mode: zssr, max_iters: N, ...}``
    (ZSSR from a fresh initialisation of its own network, on its official given-kernel protocol; any
    :class:`ZSSRConfig` field can be set, and ``network: {...}`` overrides ZSSR's layer options).
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
        loss_weights = meta.get('loss_weights', 'annealed')
        if loss_weights not in ('annealed', 'uniform'):
            raise SRDistillError(f"option train.meta.loss_weights: expected 'annealed' or 'uniform', got {loss_weights!r}")
        self.anneal_iters = float(meta.get('anneal_iters', PAPER_ANNEAL_ITERS)) if loss_weights == 'annealed' else 0

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
                                        self.downsample, adaptation.get('step_sizes'),
                                        adaptation.get('schedule', 'direct_x2'), progress='MZSR steps')
                with torch.no_grad():
                    self.output = adapted(self.lq)
            elif mode == 'zssr':
                network = {**self.opt['network_g'], **ZSSR_NETWORK, **adaptation.pop('network', {})}
                zssr_net = build_network(network).to(self.device)
                cfg = self._zssr_config(adaptation)
                zssr_train(zssr_net, self.lq, self.kernel, self.opt['scale'], cfg, self.downsample,
                           seed=self.opt.get('manual_seed') or 0, progress='ZSSR iterations')
                self.output = zssr_infer(zssr_net, self.lq, self.kernel, self.opt['scale'], cfg, self.downsample)
            else:
                raise SRDistillError(f"option val.adaptation.mode: expected 'mzsr' or 'zssr', got {mode!r}")
        self.adaptation_times.append(time.perf_counter() - start)

    @staticmethod
    def _zssr_config(options: dict) -> ZSSRConfig:
        fields = set(ZSSRConfig.__dataclass_fields__) - {'history'}
        unknown = sorted(set(options) - fields)
        if unknown:
            raise SRDistillError(f'option val.adaptation: unknown ZSSR option(s) {unknown}; known: {sorted(fields)}')
        return ZSSRConfig(**options)

    def nondist_validation(self, dataloader, current_iter, tb_logger, save_img):
        self.adaptation_times = []
        super().nondist_validation(dataloader, current_iter, tb_logger, save_img)
        mean_time = sum(self.adaptation_times) / max(len(self.adaptation_times), 1)
        get_root_logger().info(f'Adaptation time per image: {mean_time:.3f} s')
        self.extra_results = {'adapt_time_s': mean_time}
