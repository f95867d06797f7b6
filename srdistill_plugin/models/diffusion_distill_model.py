"""Fine-tuning a class-conditional diffusion model on selected patches, as a BasicSR model.

BasicSR's train loop gives it logging, tensorboard, checkpoints, resume and EMA; the objective is in
:mod:`srdistill.core.diffusion_losses`.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from basicsr.archs import build_network
from basicsr.models.base_model import BaseModel
from basicsr.utils.registry import MODEL_REGISTRY

from srdistill.core.errors import SRDistillError
from srdistill.core.precision import autocast, check_amp
from srdistill.core.diffusion_losses import (EmbeddingMemory, embed, minimax_terms, predicted_x0,
                                                    sobel_gradients)

if TYPE_CHECKING:
    from diffusers import DDPMScheduler


def schedule_options(opt: dict) -> dict:
    """``diffusion.num_train_timesteps``, ``beta_schedule`` and, for a pretrained model, its ``beta_start`` /
    ``beta_end`` (e.g. Stable Diffusion: scaled_linear, 0.00085, 0.012): the noise schedule of training and sampling."""
    keys = {'num_train_timesteps': int, 'beta_schedule': str, 'beta_start': float, 'beta_end': float}
    schedule = {'num_train_timesteps': 1000, 'beta_schedule': 'squaredcos_cap_v2'}
    schedule.update({k: cast(opt[k]) for k, cast in keys.items() if k in opt})
    return schedule


def noise_scheduler(opt: dict) -> 'DDPMScheduler':
    """The training noise schedule of the ``diffusion`` options."""
    from diffusers import DDPMScheduler  # here, not at import: SR runs import this module and never need it

    return DDPMScheduler(**schedule_options(opt))


@MODEL_REGISTRY.register()
class DiffusionDistillModel(BaseModel):
    """``train.diffusion``: ``max_timestep`` (train only on t < this: the low-noise range that SDEdit-style
    synthesis uses; default all), ``lambda_rep``, ``lambda_div``, ``lambda_sr`` (0 disables a term),
    ``memory_size`` (per-class queue length, 64). ``train.amp``: ``bf16`` / ``fp16`` autocast on CUDA (fp16 with
    a gradient scaler); ignored on the CPU."""

    def __init__(self, opt: dict):
        super().__init__(opt)
        self.net_g = self.model_to_device(build_network(opt['network_g']))
        self.print_network(self.net_g)
        self.diffusion_opt = dict(opt.get('diffusion', {}))
        self.scheduler = noise_scheduler(self.diffusion_opt)
        load_path = opt['path'].get('pretrain_network_g')
        if load_path is not None:
            self.load_network(self.net_g, load_path, opt['path'].get('strict_load_g', True),
                              opt['path'].get('param_key_g', 'params'))
        if self.is_train:
            self.init_training_settings()

    def init_training_settings(self):
        train_opt = self.opt['train']
        self.ema_decay = train_opt.get('ema_decay', 0)
        if self.ema_decay > 0:
            self.net_g_ema = build_network(self.opt['network_g']).to(self.device)
            load_path = self.opt['path'].get('pretrain_network_g')
            if load_path is not None:  # resuming (or starting from a checkpoint): its EMA weights, as SRModel does
                self.load_network(self.net_g_ema, load_path, self.opt['path'].get('strict_load_g', True), 'params_ema')
            else:
                self.model_ema(0)
            self.net_g_ema.eval()
        self.net_g.train()
        self.amp = check_amp(train_opt.get('amp'), 'train.amp') if self.device.type == 'cuda' else None
        self.grad_scaler = torch.amp.GradScaler('cuda') if self.amp == 'fp16' else None
        d = train_opt.get('diffusion', {})
        self.max_timestep = int(d.get('max_timestep', self.scheduler.config.num_train_timesteps))
        self.class_dropout = float(train_opt.get('class_dropout_prob', 0))
        if not 0 <= self.class_dropout < 1:
            raise SRDistillError(f'option train.class_dropout_prob: expected a probability in [0, 1), got '
                                 f'{self.class_dropout}')
        if self.class_dropout and getattr(self.get_bare_model(self.net_g), 'null_class', None) is None:
            raise SRDistillError('option train.class_dropout_prob: the network has no null class to drop labels to '
                                 '(set network_g.null_class: true)')
        self.lambdas = {k: float(d.get(f'lambda_{k}', 0)) for k in ('rep', 'div', 'sr')}
        num_classes = self.get_bare_model(self.net_g).num_classes
        self.real_memory = EmbeddingMemory(num_classes, int(d.get('memory_size', 64)))
        self.generated_memory = EmbeddingMemory(num_classes, int(d.get('memory_size', 64)))
        optim_opt = dict(train_opt['optim_g'])
        trainable = [p for p in self.net_g.parameters() if p.requires_grad]  # LoRA: adapters + class embedding
        self.optimizer_g = self.get_optimizer(optim_opt.pop('type'), trainable, **optim_opt)
        self.optimizers.append(self.optimizer_g)
        self.setup_schedulers()

    def feed_data(self, data: dict):
        self.gt = data['gt'].to(self.device) * 2 - 1
        self.class_ids = data['class_id'].to(self.device)

    def losses(self) -> tuple[OrderedDict, torch.Tensor]:
        """The named loss terms of the current batch and their weighted total."""
        bare, classes = self.get_bare_model(self.net_g), self.class_ids
        conditioning = classes
        if self.class_dropout and getattr(bare, 'null_class', None) is not None and not getattr(bare, 'is_dit', False):
            # classifier-free guidance's label dropout (a DiT's label embedding drops labels by itself); the
            # per-class memories of the minimax terms keep the true classes
            drop = torch.rand(len(classes), device=self.device) < self.class_dropout
            conditioning = torch.where(drop, torch.full_like(classes, bare.null_class), classes)
        latent = hasattr(bare, 'encode')  # a latent diffusion model: the diffusion runs on VAE latents
        x0 = bare.encode(self.gt) if latent else self.gt
        noise = torch.randn_like(x0)
        t = torch.randint(0, self.max_timestep, (len(x0), ), device=self.device)
        x_t = self.scheduler.add_noise(x0, noise, t)
        eps = self.net_g(x_t, t, conditioning)
        losses = OrderedDict(l_eps=F.mse_loss(eps, noise))
        if any(self.lambdas.values()):
            alpha_bar = self.scheduler.alphas_cumprod.to(self.device)[t]
            x0_pred = predicted_x0(x_t, eps, alpha_bar)
            x0_pred = x0_pred if latent else x0_pred.clamp(-1, 1)
            emb = embed(x0_pred)  # the coarse layout of the image, or of its latent
            self.real_memory.push(embed(x0), classes)
            if self.lambdas['rep'] or self.lambdas['div']:
                losses['l_rep'], losses['l_div'] = minimax_terms(emb, classes, self.real_memory, self.generated_memory)
            if self.lambdas['sr']:  # in pixels: through the frozen VAE decoder for a latent model
                image_pred = bare.decode(x0_pred).clamp(-1, 1) if latent else x0_pred
                weight = alpha_bar.view(-1, 1, 1, 1)
                losses['l_sr'] = (weight * (sobel_gradients(image_pred) - sobel_gradients(self.gt)).abs()).mean()
            self.generated_memory.push(emb, classes)
        total = losses['l_eps'] + sum(self.lambdas[k[2:]] * v for k, v in losses.items() if k != 'l_eps')
        return losses, total

    def optimize_parameters(self, current_iter: int):
        with autocast(self.amp, self.device):
            losses, total = self.losses()
        self.optimizer_g.zero_grad(set_to_none=True)
        if self.grad_scaler is None:
            total.backward()
            self.optimizer_g.step()
        else:
            self.grad_scaler.scale(total).backward()
            self.grad_scaler.step(self.optimizer_g)
            self.grad_scaler.update()
        self.log_dict = self.reduce_loss_dict(losses)
        if self.ema_decay > 0:
            self.model_ema(decay=self.ema_decay)

    def save(self, epoch: int, current_iter: int):
        if hasattr(self, 'net_g_ema'):
            self.save_network([self.net_g, self.net_g_ema], 'net_g', current_iter, param_key=['params', 'params_ema'])
        else:
            self.save_network(self.net_g, 'net_g', current_iter)
        self.save_training_state(epoch, current_iter)
