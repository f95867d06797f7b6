"""Training the learned blur-kernel estimator (``KernelPredictor``) as a BasicSR model."""
from __future__ import annotations

from collections import OrderedDict

import numpy as np
import torch
from basicsr.archs import build_network
from basicsr.models.base_model import BaseModel
from basicsr.utils import get_root_logger
from basicsr.utils.registry import MODEL_REGISTRY
from tqdm import tqdm

from srdistill.core.kernel_predictor import coords_loss, covariance_error, dihedral_estimate, params_from_coords

# What the validation reports; the checkpoint to keep is the one with the lowest ``cov_error``.
METRICS = {'cov_error': 'lower', 'default_cov_error': 'lower', 'closer_than_default': 'higher',
           'log_euclidean': 'lower'}


@MODEL_REGISTRY.register()
class KernelPredictorModel(BaseModel):
    """Regresses the blur kernel's log-Euclidean coordinates from the LR (``network_g``: ``KernelPredictor``): the
    loss is the squared log-Euclidean distance of the image's confidence-weighted estimate to the truth. Validation
    estimates with the eight flips/rotations averaged (as the command does) and reports the covariance's relative
    error against the truth, beside that of ``val.default_kernel`` ([lambda1, lambda2, theta], default g^d_2.0)."""

    def __init__(self, opt: dict):
        super().__init__(opt)
        self.net_g = self.model_to_device(build_network(opt['network_g']))
        self.print_network(self.net_g)
        load_path = self.opt['path'].get('pretrain_network_g')
        if load_path is not None:
            self.load_network(self.net_g, load_path, self.opt['path'].get('strict_load_g', True),
                              self.opt['path'].get('param_key_g', 'params'))
        if self.is_train:
            self.net_g.train()
            train_opt = self.opt['train']
            optim = dict(train_opt['optim_g'])
            self.optimizer_g = self.get_optimizer(optim.pop('type'), self.net_g.parameters(), **optim)
            self.optimizers.append(self.optimizer_g)
            self.setup_schedulers()

    def feed_data(self, data: dict):
        self.lq = data['lq'].to(self.device)
        self.target = data['kernel_coords'].to(self.device)

    def optimize_parameters(self, current_iter: int):
        self.optimizer_g.zero_grad(set_to_none=True)
        loss = coords_loss(self.get_bare_model(self.net_g).estimate(self.lq), self.target)
        loss.backward()
        self.optimizer_g.step()
        self.log_dict = self.reduce_loss_dict(OrderedDict(l_coords=loss))

    def test(self):
        self.net_g.eval()
        self.estimate = dihedral_estimate(self.get_bare_model(self.net_g), self.lq)
        self.net_g.train()

    def save(self, epoch: int, current_iter: int):
        self.save_network(self.net_g, 'net_g', current_iter)
        self.save_training_state(epoch, current_iter)

    def dist_validation(self, dataloader, current_iter, tb_logger, save_img):
        if self.opt['rank'] == 0:
            self.nondist_validation(dataloader, current_iter, tb_logger, save_img)

    def nondist_validation(self, dataloader, current_iter, tb_logger, save_img):
        name = dataloader.dataset.opt['name']
        default = tuple(self.opt['val'].get('default_kernel', (2.0, 2.0, 0.)))
        rows = []
        for data in tqdm(dataloader, desc=f'validate {name}', unit='batch', leave=False,
                         disable=not self.opt['val'].get('pbar', False)):
            self.feed_data(data)
            self.test()
            for estimate, target, truth in zip(self.estimate.cpu().double().numpy(), self.target.cpu().double().numpy(),
                                               data['kernel_params'].numpy()):
                truth = tuple(truth)
                error = covariance_error(params_from_coords(estimate), truth)
                default_error = covariance_error(default, truth)
                rows.append((error, default_error, error < default_error,
                             float(np.sum(2 * (estimate - target) ** 2))))
        values = dict(zip(METRICS, (float(np.mean(column)) for column in zip(*rows))))
        if not hasattr(self, 'best_metric_results'):
            self.best_metric_results = {}
        self.best_metric_results.setdefault(name, {m: {'better': b, 'val': float('inf') if b == 'lower' else
                                                       float('-inf'), 'iter': -1} for m, b in METRICS.items()})
        message = f'Validation {name}'
        for metric, value in values.items():
            self._update_best_metric_result(name, metric, value, current_iter)
            best = self.best_metric_results[name][metric]
            message += f'\n\t # {metric}: {value:.4f}\tBest: {best["val"]:.4f} @ {best["iter"]} iter'
            if tb_logger:
                tb_logger.add_scalar(f'metrics/{name}/{metric}', value, current_iter)
        get_root_logger().info(message)
        self.metric_results = values

