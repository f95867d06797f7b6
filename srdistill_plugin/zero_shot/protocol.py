"""The zero-shot papers' evaluation protocol as library functions (MZSR: JWSoh/MZSR; ZSSR: assafshocher/ZSSR).

LR: a named kernel (variance convention, 21x21), correlation with symmetric borders, subsampling on the official
grid, rounded to 8 bits. Metrics: PSNR on the 8-bit-rounded Y channel and BasicSR's SSIM on Y, border = scale. One
row per image and method, ``(psnr, ssim, seconds)``; the benchmarks only choose sets, kernels and arms, and format.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch

from srdistill_plugin.archs.mzsr_arch import MZSRNet
from srdistill.core.degradations import mod_crop
from srdistill.core.imageio import list_images, read_image
from srdistill.core.kernel_estimation import KernelGANConfig, kernel_psnr, postprocess_kernel, train_kernel_gan
from srdistill.core.kernel_predictor import KernelPredictor, PredictorSettings, predict_kernel
from srdistill.core.kernels import degrade, eval_kernel, gaussian_kernel, moment_covariance, random_mzsr_kernel_params
from srdistill.core.matlab_resize import matlab_resize
from srdistill.core.safe_load import load_checkpoint
from srdistill.core.zero_shot import mzsr_adapt
from srdistill.core.zssr import ZSSRConfig, zssr_infer, zssr_train
from srdistill_plugin.metrics.y_channel import tensor_metrics, tensor_psnr

BLIND_KERNEL_SIZE = 15  # the meta-training kernels' size
BLIND_CASES = ('default', 'estimated', 'unfiltered', 'true', 'wrong')  # the kernels MZSR is given in the blind table


def benchmark_images(set_dir: Path, scale: int) -> Iterator[tuple[str, torch.Tensor]]:
    """``(stem, 1x3xHxW RGB [0, 1] HR mod-cropped to scale)`` of every image in ``set_dir/HR``."""
    for path in list_images(Path(set_dir) / 'HR'):
        yield path.stem, torch.from_numpy(mod_crop(read_image(path), scale)[:, :, ::-1].copy()).permute(2, 0, 1)[None]


def official_lr(hr: torch.Tensor, kernel_name: str, scale: int) -> tuple[torch.Tensor, torch.Tensor, str]:
    """``(8-bit LR, kernel, subsampling)`` of ``hr`` degraded by a named kernel (``core.kernels.EVAL_KERNELS``)."""
    kernel_np, downsample = eval_kernel(kernel_name)
    kernel = torch.from_numpy(kernel_np)
    lr = (degrade(hr, kernel, scale, downsample).clamp(0, 1) * 255).round() / 255
    return lr, kernel, downsample


def load_mzsr(path: Path, scale: int, **kwargs) -> MZSRNet:
    """An ``MZSRNet`` with the ``params`` of a (weights-only) checkpoint, in eval mode."""
    net = MZSRNet(upscale=scale, **kwargs)
    net.load_state_dict(load_checkpoint(path)['params'])
    return net.eval()


def mzsr_rows(net: MZSRNet, lr: torch.Tensor, kernel: torch.Tensor, downsample: str, hr: torch.Tensor, scale: int,
              steps: tuple[int, ...], schedule: str) -> dict[str, tuple[float, float, float]]:
    """``{'mzsr<n>': (psnr, ssim, adaptation seconds)}``: ``net`` adapted ``n`` steps on the LR image itself."""
    rows = {}
    for n in steps:
        adapted, seconds = mzsr_adapt(net, lr, kernel, scale, n, downsample, schedule=schedule)
        with torch.no_grad():
            rows[f'mzsr{n}'] = (*tensor_metrics(adapted(lr), hr, scale), seconds)
    return rows


def zssr_rows(lr: torch.Tensor, kernel: torch.Tensor, downsample: str, hr: torch.Tensor, scale: int,
              config: ZSSRConfig, seed: int = 0, prefix: str = 'zssr') -> dict:
    """ZSSR from scratch on the LR image (the official given-kernel protocol): the raw network's PSNR at every test
    point (``<prefix>_curve``: iteration, training seconds so far, PSNR; evaluation time excluded), the final output
    (``<prefix>_final``: psnr, ssim, training seconds) and the iterations run (``<prefix>_iters``)."""
    torch.manual_seed(seed)
    net, curve, spent, clock = MZSRNet(upscale=scale, bias=False, init_variance=0.1), [], [0.], [time.perf_counter()]

    def on_test(it: int, model: torch.nn.Module) -> None:
        spent[0] += time.perf_counter() - clock[0]
        with torch.no_grad():
            curve.append((it, spent[0], tensor_psnr(model(lr), hr, scale)))
        model.train()
        clock[0] = time.perf_counter()

    iters = zssr_train(net, lr, kernel, scale, config, downsample, on_test=on_test, seed=seed)
    spent[0] += time.perf_counter() - clock[0]
    final = zssr_infer(net, lr, kernel, scale, config, downsample)
    return {f'{prefix}_curve': curve, f'{prefix}_final': (*tensor_metrics(final, hr, scale), spent[0]),
            f'{prefix}_iters': iters}


def blind_lr(hr: torch.Tensor, rng: np.random.Generator, scale: int
             ) -> tuple[torch.Tensor, np.ndarray, tuple[float, float, float]]:
    """``(8-bit LR, kernel, its (lambda1, lambda2, theta))``: ``hr`` degraded by its own kernel drawn from MZSR's task
    distribution (direct subsampling); one draw from ``rng`` per image, so a set's kernels depend on its seed and
    order only."""
    params = random_mzsr_kernel_params(rng, scale)
    kernel = gaussian_kernel(BLIND_KERNEL_SIZE, *params)
    return (degrade(hr, torch.from_numpy(kernel), scale).clamp(0, 1) * 255).round() / 255, kernel, params


Estimator = Callable[[torch.Tensor], dict[str, np.ndarray]]


def kernelgan_estimator(config: KernelGANConfig, scale: int) -> Estimator:
    """KernelGAN's kernel with the official filtering (``estimated``) and without it (``unfiltered``)."""
    def estimate(lr: torch.Tensor) -> dict[str, np.ndarray]:
        raw = train_kernel_gan(lr[0].permute(1, 2, 0).numpy(), config, progress=False)
        return {'estimated': postprocess_kernel(raw, scale, config.n_filtering),
                'unfiltered': postprocess_kernel(raw, scale, 0)}
    return estimate


def learned_estimator(net: KernelPredictor, settings: PredictorSettings) -> Estimator:
    """The learned estimator's kernel (``estimated``)."""
    return lambda lr: {'estimated': predict_kernel(net, lr, settings).kernel}


def covariance_errors(kernels: dict[str, np.ndarray], true_kernel: np.ndarray) -> dict[str, float]:
    """Each kernel's covariance (second moments) against the true kernel's: relative Frobenius error."""
    truth = moment_covariance(true_kernel)
    return {name: float(np.linalg.norm(moment_covariance(k) - truth) / np.linalg.norm(truth))
            for name, k in kernels.items()}


def blind_estimate(lr: torch.Tensor, hr: torch.Tensor, true_kernel: np.ndarray, scale: int, estimator: Estimator,
                   default_kernel: str, zssr: ZSSRConfig | None = None, seed: int = 0) -> dict:
    """What does not depend on the MZSR network: the estimator's kernel(s), their and the default kernel's kernel
    PSNR against the truth, the estimation seconds, bicubic, and ZSSR with the estimate where
    ``zssr`` is given."""
    start = time.perf_counter()
    estimates = estimator(lr)
    row = {'estimate_s': time.perf_counter() - start,
           **{f'{name}_kernel': kernel.tolist() for name, kernel in estimates.items()},
           'bicubic': tensor_psnr(matlab_resize(lr, scale), hr, scale)}
    row['kernel_psnr'] = {name: kernel_psnr(k, true_kernel)
                          for name, k in {**estimates, 'default': eval_kernel(default_kernel)[0]}.items()}
    if zssr is not None:
        torch.manual_seed(seed)
        net, kernel = MZSRNet(upscale=scale, bias=False, init_variance=0.1), torch.from_numpy(estimates['estimated'])
        zssr_train(net, lr, kernel, scale, zssr, seed=seed)
        row['zssr_estimated'] = tensor_psnr(zssr_infer(net, lr, kernel, scale, zssr), hr, scale)
    return row


def mzsr_kernel_rows(net: MZSRNet, lr: torch.Tensor, hr: torch.Tensor, kernels: dict[str, np.ndarray], scale: int,
                     steps: int, schedule: str = 'direct_x2') -> dict[str, float]:
    """``{'mzsr_<case>': PSNR}``: ``net`` adapted ``steps`` steps (``schedule``'s step sizes) with each kernel."""
    row = {}
    for case, kernel in kernels.items():
        adapted, _ = mzsr_adapt(net, lr, torch.from_numpy(np.asarray(kernel)), scale, steps, schedule=schedule)
        with torch.no_grad():
            row[f'mzsr_{case}'] = tensor_psnr(adapted(lr), hr, scale)
    return row

