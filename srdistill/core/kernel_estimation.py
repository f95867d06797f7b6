"""Blind kernel estimation from one LR image, following KernelGAN's published design (Bell-Kligler, Shocher, Irani,
NeurIPS 2019; official code sefibk/KernelGAN).

A deep *linear* generator G (convolutions without bias or activation, the last one strided) learns to downscale
crops of the image x2 so that a fully convolutional patch discriminator D cannot tell its outputs from real crops of
the same image; the kernel G imitates is read out by passing a delta through its layers. Regularisers on that kernel
(the official terms): sum to one, small values near the boundaries, sparsity and centre of mass, plus a bicubic prior
that holds G near bicubic downscaling at first and is relaxed once G has got there. The x4 kernel is derived
analytically from the x2 one. Colour channels are treated as a batch of grey images, as in the original.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage, signal
from torch import nn
from tqdm import tqdm

from .atomic_io import atomic_write_text
from .basicsr_files import basicsr_module
from .errors import SRDistillError
from .imageio import image_size, list_images, read_image
from .io_checks import check_output_folder
from .kernel_files import save_kernel
from .matlab_resize import matlab_resize

cubic = basicsr_module('utils.matlab_functions').cubic


@dataclass
class KernelGANConfig:
    """Options; defaults are the official ones except ``max_iters`` (3000 officially), chosen so that one image
    takes about 2-3 minutes on 2 CPU cores. The official schedule: both learning rates / 10 every
    ``lr_decay_every`` iterations; once G is close to bicubic, the bicubic prior's weight / 100 every
    ``relax_every`` iterations, and the centre-of-mass and sparsity terms switch on when it is small."""
    crop_size: int = 64
    g_structure: tuple[int, ...] = (7, 5, 3, 1, 1, 1)
    g_channels: int = 64
    d_channels: int = 64
    d_layers: int = 7
    d_kernel_size: int = 7
    max_iters: int = 1000
    lr: float = 2e-4
    beta1: float = 0.5
    n_filtering: int = 40
    seed: int = 0
    lambda_sum2one: float = 0.5
    lambda_bicubic: float = 5.
    lambda_boundaries: float = 0.5
    lambda_centralized_end: float = 1.
    lambda_sparse_end: float = 5.
    bicubic_loss_to_relax: float = 0.4
    lr_decay_every: int = 750
    relax_every: int = 200

    @property
    def kernel_size(self) -> int:
        return sum(self.g_structure) - len(self.g_structure) + 1  # 13 for the official structure


class LinearDownscaler(nn.Module):
    """G: convolutions without bias or activation, the last one with stride 2 (a deep linear x2 downscaler)."""

    def __init__(self, cfg: KernelGANConfig):
        super().__init__()
        sizes, ch = cfg.g_structure, cfg.g_channels
        self.layers = nn.ModuleList(
            nn.Conv2d(1 if i == 0 else ch, 1 if i == len(sizes) - 1 else ch, k, stride=2 if i == len(sizes) - 1 else 1,
                      bias=False) for i, k in enumerate(sizes))
        for layer in self.layers:
            nn.init.xavier_normal_(layer.weight, 0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x.transpose(0, 1)  # (1, C, H, W) -> (C, 1, H, W): each colour plane is one grey image
        for layer in self.layers:
            y = layer(y)
        return y.transpose(0, 1)

    def kernel(self) -> torch.Tensor:
        """The ``k x k`` kernel G applies (before its stride), differentiable in G's weights."""
        size = sum(layer.kernel_size[0] for layer in self.layers) - len(self.layers) + 1
        k = torch.ones(1, 1, 1, 1, device=self.layers[0].weight.device)
        for i, layer in enumerate(self.layers):
            k = F.conv2d(k, layer.weight, padding=size - 1 if i == 0 else 0)
        return k.squeeze().flip(0, 1)


class PatchDiscriminator(nn.Module):
    """D: a ``d_kernel_size`` convolution (its receptive field) followed by 1x1 convolution blocks, spectral-normalised,
    giving a per-pixel real/fake map in [0, 1]."""

    def __init__(self, cfg: KernelGANConfig):
        super().__init__()
        sn = nn.utils.spectral_norm
        blocks = [sn(nn.Conv2d(3, cfg.d_channels, cfg.d_kernel_size))]
        for _ in range(cfg.d_layers - 2):
            blocks += [sn(nn.Conv2d(cfg.d_channels, cfg.d_channels, 1)), nn.BatchNorm2d(cfg.d_channels), nn.ReLU(True)]
        blocks += [sn(nn.Conv2d(cfg.d_channels, 1, 1)), nn.Sigmoid()]
        self.net = nn.Sequential(*blocks)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.xavier_normal_(m.weight, 0.1)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.normal_(m.weight, 1., 0.02)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def bicubic_half_kernel() -> torch.Tensor:
    """MATLAB's antialiased bicubic x1/2 as an 8x8 separable filter (the bicubic prior of G)."""
    taps = 0.5 * cubic(0.5 * torch.arange(-3.5, 4., 1., dtype=torch.float64))
    return torch.outer(taps / taps.sum(), taps / taps.sum()).float()


def boundary_mask(size: int, penalty: float = 30.) -> torch.Tensor:
    """Weights that grow towards the kernel's border and vanish in its central region (the official mask)."""
    r = np.arange(size) - size // 2
    gauss = np.exp(-r ** 2 / (2 * size ** 2))
    mask = 1 - np.outer(gauss, gauss) / np.outer(gauss, gauss).max()
    margin = (size - (size // 2 + size % 2)) // 2 - 1
    mask[margin:size - margin, margin:size - margin] = 0
    return torch.from_numpy(penalty * mask).float()


def _crop_sampler(img: np.ndarray, crop: int, rng: np.random.Generator, downscaled_first: bool,
                  count: int) -> np.ndarray:
    """``count`` crop top-left corners (even), drawn where the image has strong edges, as the official data
    generator does (3 % strongest gradients, box-filtered; for G's crops on the x1/2 image, mapped back)."""
    grey = img @ np.array([0.299, 0.587, 0.114]) if img.ndim == 3 else img
    if downscaled_first:
        small = matlab_resize(torch.from_numpy(grey)[None], 0.5)[0].numpy()
        grad_map = np.kron(_edge_map(small), np.ones((2, 2)))[:grey.shape[0], :grey.shape[1]]
        grad_map = np.pad(grad_map, ((0, grey.shape[0] - grad_map.shape[0]), (0, grey.shape[1] - grad_map.shape[1])))
    else:
        grad_map = _edge_map(grey)
    half = crop // 2
    prob = np.clip(ndimage.uniform_filter(grad_map, half, mode='constant'), 0, None)
    prob[:half], prob[-half:], prob[:, :half], prob[:, -half:] = 0, 0, 0, 0
    prob = prob.ravel() / prob.sum() if prob.sum() > 0 else np.full(prob.size, 1 / prob.size)
    centres = rng.choice(prob.size, size=count, p=prob)
    h, w = grey.shape
    rows, cols = centres // w, centres % w
    tops = np.clip(rows - half, 0, h - crop) // 2 * 2
    lefts = np.clip(cols - half, 0, w - crop) // 2 * 2
    return np.stack([tops, lefts], axis=1)


def _edge_map(grey: np.ndarray, window: int = 5, percent: float = 0.97) -> np.ndarray:
    """Where the strongest gradients are: |gx|, |gy| and the magnitude, each kept above its ``percent`` quantile in a
    narrow band, summed with equal mass and box-filtered. One difference from sefibk/KernelGAN ``create_gradient_map``:
    it clips the magnitude but then adds the unclipped one, so a third of its mass follows every gradient of the
    image; here the clipped one is added, like |gx| and |gy| (the published KernelGAN figures use this map)."""
    gy, gx = np.gradient(grey)
    maps = []
    for g in (np.abs(gx), np.abs(gy), np.hypot(gx, gy)):
        g = g.copy()
        g[:window], g[-window:], g[:, :window], g[:, -window:] = 0, 0, 0, 0
        lo = np.quantile(g, percent)
        hi = max(np.quantile(g, min(percent + 1e-4, 1.)), lo + 1e-5)
        g = np.clip(g, lo, hi) - lo
        maps.append(g / g.sum() if g.sum() > 0 else g)
    combined = ndimage.uniform_filter(sum(maps), window, mode='constant')
    return combined / combined.mean() if combined.mean() > 0 else np.ones_like(combined)


def zeroize_negligible(kernel: np.ndarray, n: int) -> np.ndarray:
    """Keep the kernel's significant values (above 0.75 x its (n+1)-th largest), renormalised (official).
    ``n <= 0`` keeps every positive value. The official n = 40 also trims the tails of wide kernels: a Gaussian with
    variances (4, 1.2) keeps (2.3, 1.6)."""
    floor = 0.75 * np.sort(kernel.ravel())[-n - 1] if 0 < n < kernel.size else 0.
    kept = np.clip(kernel - floor, 0, None)
    return kept / kept.sum()


def center_kernel(kernel: np.ndarray) -> np.ndarray:
    """Shift a kernel so that its centre of mass sits on its central pixel (the convention of the MZSR test kernels
    and of this package's degradation: LR pixel (0, 0) is centred on HR pixel (0, 0))."""
    shift = (np.array(kernel.shape) - 1) / 2 - np.array(ndimage.center_of_mass(kernel))
    pad = int(np.ceil(np.abs(shift).max()))
    padded = np.pad(kernel, pad) if pad else kernel
    out = np.clip(ndimage.shift(padded, shift, order=3), 0, None)
    return (out / out.sum()).astype(np.float32)


def x4_from_x2(kernel: np.ndarray) -> np.ndarray:
    """The x4 kernel implied by applying the x2 kernel twice (the analytic derivation in KernelGAN's appendix)."""
    size = kernel.shape[0]
    stuffed = np.zeros((2 * size - 1, 2 * size - 1))
    stuffed[::2, ::2] = kernel
    big = signal.convolve2d(stuffed, kernel)
    crop = size // 2
    big = big[crop:-crop, crop:-crop]
    return (big / big.sum()).astype(np.float32)


def kernel_psnr(estimate: np.ndarray, truth: np.ndarray) -> float:
    """PSNR between two sum-one kernels (FKP's kernel-error unit, peak 1) after aligning their centres of mass and
    placing both on the larger of the two grids."""
    centred = [center_kernel(estimate), center_kernel(truth)]
    size = max(k.shape[0] for k in centred)
    placed = []
    for k in centred:
        pad = (size - k.shape[0]) // 2
        placed.append(np.pad(k, (pad, size - k.shape[0] - pad)))
    mse = float(np.mean((placed[0] - placed[1]) ** 2))
    return float('inf') if mse == 0 else 10 * np.log10(1. / mse)


def estimate_kernel(lr: np.ndarray, scale: int = 2, cfg: KernelGANConfig | None = None,
                    progress: bool = True, desc: str = 'KernelGAN') -> np.ndarray:
    """The blur kernel of a float HWC RGB image in [0, 1] (any size above the crop), centred, for ``scale`` 2 or 4."""
    cfg = cfg or KernelGANConfig()
    if scale not in (2, 4):
        raise SRDistillError(f'kernel estimation supports scale 2 or 4, got {scale}')
    return postprocess_kernel(train_kernel_gan(lr, cfg, progress, desc), scale, cfg.n_filtering)


def postprocess_kernel(raw: np.ndarray, scale: int, n_filtering: int) -> np.ndarray:
    """The generator's x2 kernel -> significant values kept, centred, and derived for x4 when asked."""
    kernel = center_kernel(zeroize_negligible(raw.astype(np.float64), n_filtering))
    return x4_from_x2(kernel) if scale == 4 else kernel


def kernel_terms(k: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
    """The official regularisers of G's ``k x k`` kernel, unweighted: ``sum2one`` |1 - sum|, ``boundaries`` the mean of
    |k * mask|, ``centralized`` the mean squared distance of its centre of mass (row, column) from the x2 grid's
    centre (``k // 2 + 0.5 (2 - k % 2)``), ``sparse`` the mean of |k|^0.2."""
    size = k.shape[-1]
    indices = torch.arange(size, dtype=k.dtype)
    centre = torch.full((2, ), size // 2 + 0.5 * (2 - size % 2), dtype=k.dtype)
    mass = torch.stack([k.sum(1) @ indices, k.sum(0) @ indices]) / k.sum()
    return {'sum2one': (1 - k.sum()).abs(), 'boundaries': (k * mask).abs().mean(),
            'centralized': F.mse_loss(mass, centre), 'sparse': (k.abs() + 1e-12).pow(0.2).mean()}


def bicubic_prior_loss(g_in: torch.Tensor, g_out: torch.Tensor, bicubic: torch.Tensor) -> torch.Tensor:
    """Mean squared difference of G's output from MATLAB's bicubic x1/2 of its input (centre-cropped to G's
    output)."""
    down = F.conv2d(g_in.transpose(0, 1), bicubic[None, None], stride=2, padding=3).transpose(0, 1)
    off = (down.shape[-1] - g_out.shape[-1]) // 2
    return F.mse_loss(g_out, down[..., off:off + g_out.shape[-2], off:off + g_out.shape[-1]])


class TermWeights:
    """The official schedule of the loss weights: the bicubic prior weighs ``lambda_bicubic`` until its loss has been
    below ``bicubic_loss_to_relax`` three iterations in a row; from then on every ``relax_every`` iterations it is
    divided by 100 (down to 5e-6), and the first time it falls below 5e-3 the centre-of-mass and sparsity terms
    switch on. Both learning rates drop / 10 every ``lr_decay_every`` iterations."""

    def __init__(self, cfg: KernelGANConfig):
        self.cfg = cfg
        self.weights = {'bicubic': cfg.lambda_bicubic, 'sum2one': cfg.lambda_sum2one,
                        'boundaries': cfg.lambda_boundaries, 'centralized': 0., 'sparse': 0.}
        self.close_to_bicubic, self.streak = False, 0

    def decays_lr(self, it: int) -> bool:
        return it > 0 and it % self.cfg.lr_decay_every == 0

    def update(self, it: int, loss_bicubic: float) -> None:
        """After iteration ``it`` whose bicubic-prior loss was ``loss_bicubic`` (the official learner skips
        iteration 0)."""
        if it == 0:
            return
        if not self.close_to_bicubic:
            self.streak = self.streak + 1 if loss_bicubic < self.cfg.bicubic_loss_to_relax else 0
            self.close_to_bicubic = self.streak >= 3
        elif it % self.cfg.relax_every == 0 and self.weights['bicubic'] > 5e-6:
            self.weights['bicubic'] = max(self.weights['bicubic'] / 100, 5e-6)
            if self.weights['bicubic'] < 5e-3:
                self.weights['centralized'] = self.cfg.lambda_centralized_end
                self.weights['sparse'] = self.cfg.lambda_sparse_end

    def total(self, loss_bicubic: torch.Tensor, terms: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.weights['bicubic'] * loss_bicubic + sum(self.weights[name] * term for name, term in terms.items())


def train_kernel_gan(lr: np.ndarray, cfg: KernelGANConfig, progress: bool = True,
                     desc: str = 'KernelGAN') -> np.ndarray:
    """Train G and D on one image; return the raw x2 kernel G imitates (not yet filtered or centred)."""
    h, w = lr.shape[:2]
    if min(h, w) < cfg.crop_size:
        raise SRDistillError(f'image is {w}x{h}, smaller than the estimator\'s {cfg.crop_size}px crop')
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    gen, disc = LinearDownscaler(cfg), PatchDiscriminator(cfg)
    d_size = gen(torch.zeros(1, 3, cfg.crop_size, cfg.crop_size)).shape[-1]
    g_opt = torch.optim.Adam(gen.parameters(), lr=cfg.lr, betas=(cfg.beta1, 0.999))
    d_opt = torch.optim.Adam(disc.parameters(), lr=cfg.lr, betas=(cfg.beta1, 0.999))
    image = torch.from_numpy(np.ascontiguousarray(lr.transpose(2, 0, 1))).float()[None] * 2 - 1  # [-1, 1]
    g_corners = _crop_sampler(lr, cfg.crop_size, rng, True, cfg.max_iters)
    d_corners = _crop_sampler(lr, d_size, rng, False, cfg.max_iters)
    bicubic, mask = bicubic_half_kernel(), boundary_mask(cfg.kernel_size)
    schedule = TermWeights(cfg)
    for it in tqdm(range(cfg.max_iters), desc=desc, unit='it', disable=not progress, leave=False):
        (gt, gl), (dt, dl) = g_corners[it], d_corners[it]
        g_in = image[..., gt:gt + cfg.crop_size, gl:gl + cfg.crop_size]
        d_real = image[..., dt:dt + d_size, dl:dl + d_size] + torch.randn(1, 3, d_size, d_size) * 2 / 255
        g_opt.zero_grad(set_to_none=True)
        g_out = gen(g_in)
        pred = disc(g_out)
        loss_bicubic = bicubic_prior_loss(g_in, g_out, bicubic)
        regularised = schedule.total(loss_bicubic, kernel_terms(gen.kernel(), mask))
        (F.l1_loss(pred, torch.ones_like(pred)) + regularised).backward()
        g_opt.step()
        d_opt.zero_grad(set_to_none=True)
        with torch.no_grad():
            fake = gen(g_in) + torch.randn_like(g_out) / 255
        real_pred, fake_pred = disc(d_real), disc(fake)
        (0.5 * (F.l1_loss(real_pred, torch.ones_like(real_pred))
                + F.l1_loss(fake_pred, torch.zeros_like(fake_pred)))).backward()
        d_opt.step()
        if schedule.decays_lr(it):  # the official learner: both learning rates / 10
            for group in (*g_opt.param_groups, *d_opt.param_groups):
                group['lr'] /= 10
        schedule.update(it, loss_bicubic.item())
    with torch.no_grad():
        return gen.kernel().numpy().astype(np.float64)


def estimate_folder(paths: list[Path], out_dir: Path, scale: int, cfg: KernelGANConfig,
                    read: Callable[[Path], np.ndarray]) -> dict[str, Path]:
    """Estimate and save the kernel of every image (``read(path)`` -> float HWC RGB); images whose kernel is already in
    ``out_dir`` from the same settings (``kernels.json``) are skipped. Returns ``{stem: <stem>.npy}``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest_path = out_dir / 'kernels.json'
    settings = {'scale': scale, **{k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(cfg).items()}}
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    if manifest.get('settings') != settings:
        manifest = {'settings': settings, 'images': {}}
    done = {}
    bar = tqdm(paths, desc=f'kernel estimation x{scale}', unit='img')
    for path in bar:
        kernel_file = out_dir / f'{path.stem}.npy'
        if path.stem not in manifest['images'] or not kernel_file.is_file():
            start = time.perf_counter()
            kernel = estimate_kernel(read(path), scale, cfg, desc=path.stem)
            save_kernel(kernel, out_dir, path.stem)
            manifest['images'][path.stem] = {'seconds': round(time.perf_counter() - start, 2)}
            atomic_write_text(manifest_path, json.dumps(manifest, indent=2))
        bar.set_postfix(last=f"{manifest['images'][path.stem]['seconds']:.0f}s")
        done[path.stem] = kernel_file
    return done


def read_rgb(path: Path) -> np.ndarray:
    """Float32 RGB [0, 1] (greyscale replicated, 16-bit scaled, alpha dropped)."""
    return np.ascontiguousarray(read_image(path)[:, :, ::-1])


def input_images(source: str | Path, min_size: int) -> list[Path]:
    """The images of a folder (or one file), each checked to be decodable-sized and at least ``min_size`` px."""
    source = Path(source)
    paths = [source] if source.is_file() else list_images(source)
    for path in paths:
        width, height = image_size(path)
        if min(width, height) < min_size:
            raise SRDistillError(f"{path}: image is {width}x{height}, smaller than the estimator's {min_size}px crop")
    return paths


def check_estimation_scale(scale: int) -> int:
    if scale not in (2, 4):
        raise SRDistillError(f'option --scale: kernel estimation supports 2 or 4, got {scale}')
    return scale


def estimate_kernels(source: str | Path, out_dir: str | Path, scale: int, cfg: KernelGANConfig) -> dict[str, Path]:
    """Check everything, then estimate (skipping kernels already there from the same settings)."""
    check_estimation_scale(scale)
    paths = input_images(source, cfg.crop_size)
    check_output_folder(Path(out_dir))
    return estimate_folder(paths, Path(out_dir), scale, cfg, read_rgb)
