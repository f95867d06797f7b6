"""A learned blur-kernel estimator for MZSR's Gaussian kernel family: a small fully convolutional network reads the
LR image and predicts, at every location, the kernel's covariance and a confidence; the image's estimate is the
confidence-weighted mean, averaged over flips/rotations of the image (each turned back; all eight, or the fewest that
lose nothing on validation images), clipped to the range it was trained on and pulled toward the default kernel by a
factor chosen on validation images.

The shipped network reads the blur's size (``m``) and its elongation along the image axes (``u``), not along the
diagonals (``v``: its own estimate does not follow the truth, `benchmarks/results/kernel_predictor_x2`). The diagonal
elongation is therefore read as the axis elongation of the LR turned by 45 degrees, times a gain fitted on validation
images (``PredictorSettings.diagonal_gain``; 0 keeps the network's own ``v``).

The covariance is represented by its matrix logarithm ``log S = [[m + u, v], [v, m - u]]`` (log-Euclidean
coordinates): ``m`` is the mean log-eigenvalue, ``(u, v) = d (cos 2 theta, sin 2 theta)`` with ``d`` half the
log-eigenvalue gap. The doubled angle makes theta's period and near-isotropic kernels (``d -> 0``) harmless, and
averaging or shrinking in these coordinates keeps every estimate a valid covariance.
"""
from __future__ import annotations

import copy
import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .atomic_io import atomic_path, atomic_write_text
from .errors import SRDistillError, first_line
from .kernel_files import save_kernel
from .kernels import gaussian_kernel
from .safe_load import UnsafeCheckpointError, load_checkpoint


def coords_from_params(lambda1: float, lambda2: float, theta: float) -> np.ndarray:
    """``(m, u, v)`` of the Gaussian with covariance eigenvalues ``lambda1``, ``lambda2`` turned by ``theta``."""
    m = 0.5 * (math.log(lambda1) + math.log(lambda2))
    d = 0.5 * (math.log(lambda1) - math.log(lambda2))
    return np.array([m, d * math.cos(2 * theta), d * math.sin(2 * theta)])


def params_from_coords(coords) -> tuple[float, float, float]:
    """``(lambda1 >= lambda2, theta in [0, pi))`` of log-Euclidean coordinates ``(m, u, v)``."""
    m, u, v = (float(c) for c in coords)
    d = math.hypot(u, v)
    return math.exp(m + d), math.exp(m - d), (0.5 * math.atan2(v, u)) % math.pi


def clip_coords(coords, low: float, high: float) -> tuple[np.ndarray, bool]:
    """The coordinates with both eigenvalues moved into ``[low, high]`` (the orientation kept), and whether any was
    moved."""
    lambda1, lambda2, theta = params_from_coords(coords)
    clipped = min(max(lambda1, low), high), min(max(lambda2, low), high)
    return coords_from_params(*clipped, theta), clipped != (lambda1, lambda2)


# The eight flips/rotations as (transpose first?, flip x?, flip y?) and what each does to image coordinates (x, y).
DIHEDRAL = [(t, fx, fy) for t in (False, True) for fx in (False, True) for fy in (False, True)]
# The views an estimate may average (``PredictorSettings.views``): all eight, the four rotations (0, 90, 180 and 270
# degrees), the image and its transpose, or the image alone.
VIEWS = {8: DIHEDRAL, 4: [(False, False, False), (True, True, False), (False, True, True), (True, False, True)],
         2: [(False, False, False), (True, False, False)], 1: [(False, False, False)]}


def _transform(img: torch.Tensor, transpose: bool, flip_x: bool, flip_y: bool) -> torch.Tensor:
    if transpose:
        img = img.transpose(-1, -2)
    if flip_x:
        img = img.flip(-1)
    if flip_y:
        img = img.flip(-2)
    return img


def _matrix(transpose: bool, flip_x: bool, flip_y: bool) -> np.ndarray:
    """``A`` with ``(x', y') = A (x, y)`` for ``_transform``: a kernel of covariance ``S`` becomes ``A S A^T``."""
    a = np.array([[0., 1.], [1., 0.]]) if transpose else np.eye(2)
    return np.diag([-1. if flip_x else 1., -1. if flip_y else 1.]) @ a


def turn_back(coords: torch.Tensor, transpose: bool, flip_x: bool, flip_y: bool) -> torch.Tensor:
    """Coordinates predicted on a transformed image, expressed in the original image's frame (``A^T L A``)."""
    m, u, v = coords.unbind(-1)
    log_cov = torch.stack([torch.stack([m + u, v], -1), torch.stack([v, m - u], -1)], -2)
    a = torch.from_numpy(_matrix(transpose, flip_x, flip_y)).to(coords)
    back = a.T @ log_cov @ a
    return torch.stack([0.5 * (back[..., 0, 0] + back[..., 1, 1]), 0.5 * (back[..., 0, 0] - back[..., 1, 1]),
                        back[..., 0, 1]], -1)


class KernelPredictor(nn.Module):
    """LR RGB in [0, 1] -> per-location log-Euclidean kernel coordinates ``(N, 3, H, W)`` and confidence logits
    ``(N, 1, H, W)``; ``estimate`` gives the image's confidence-weighted ``(N, 3)``. Dilated 3x3 convolutions with
    reflected borders: the default receptive field is 31 LR pixels."""

    def __init__(self, num_in_ch: int = 3, num_feat: int = 32, dilations: tuple[int, ...] = (1, 1, 2, 2, 4, 4, 1)):
        super().__init__()
        layers, channels = [], num_in_ch
        for d in dilations:
            layers += [nn.Conv2d(channels, num_feat, 3, padding=d, dilation=d, padding_mode='reflect'),
                       nn.LeakyReLU(0.2, inplace=True)]
            channels = num_feat
        self.body = nn.Sequential(*layers)
        self.head = nn.Conv2d(num_feat, 4, 1)
        self.receptive_field = 1 + 2 * sum(dilations)

    def forward(self, lr: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.head(self.body(lr - 0.5))
        return out[:, :3], out[:, 3:]

    def estimate(self, lr: torch.Tensor) -> torch.Tensor:
        coords, logits = self(lr)
        weights = torch.softmax(logits.flatten(1), dim=1)  # (N, H*W)
        return torch.einsum('nk,nck->nc', weights, coords.flatten(2))


@torch.no_grad()
def dihedral_estimate(net: KernelPredictor, lr: torch.Tensor, views: int = 8) -> torch.Tensor:
    """The mean of ``net.estimate`` over the flips/rotations ``VIEWS[views]`` (all eight by default), each turned back
    to the image's frame: ``(N, 3)``. Runs a channels-last copy of ``net``: on one CPU thread its dilated convolutions
    run about 1.5x as fast, on two no slower; the caller's network keeps its layout, which trains faster."""
    fast = copy.deepcopy(net).to(memory_format=torch.channels_last)
    return torch.stack([turn_back(fast.estimate(_transform(lr, *t).contiguous(memory_format=torch.channels_last)), *t)
                        for t in VIEWS[views]]).mean(0)


def turn_45(lr: torch.Tensor) -> torch.Tensor:
    """The central square of an NCHW batch turned by 45 degrees (bicubic), cropped to the square inscribed in it.
    Content turns by -45 degrees in the (x = column, y = row) frame of :func:`covariance`, so a kernel's ``v`` becomes
    the turned image's ``u``."""
    side = min(lr.shape[-2:])
    top, left = (lr.shape[-2] - side) // 2, (lr.shape[-1] - side) // 2
    square = lr[..., top:top + side, left:left + side]
    c = math.cos(math.pi / 4)
    theta = torch.tensor([[c, -c, 0.], [c, c, 0.]], dtype=lr.dtype).expand(lr.shape[0], 2, 3)
    grid = F.affine_grid(theta, list(square.shape), align_corners=False)
    turned = F.grid_sample(square, grid, mode='bicubic', padding_mode='border', align_corners=False)
    inner = int(side / math.sqrt(2))
    start = (side - inner) // 2
    return turned[..., start:start + inner, start:start + inner]


def fit_diagonal_gain(turned_u: np.ndarray, true_v: np.ndarray) -> float:
    """Least-squares gain ``g`` of ``true_v ~ g * turned_u`` (no intercept: an isotropic kernel has ``v = 0``)."""
    turned_u, true_v = np.asarray(turned_u, dtype=np.float64), np.asarray(true_v, dtype=np.float64)
    return float(turned_u @ true_v / (turned_u @ turned_u))


@dataclass(frozen=True)
class PredictorSettings:
    """What the shipped estimator was trained for and how its raw estimate is post-processed."""
    scale: int = 2
    downsample: str = 'direct'
    min_variance: float = 0.2  # the eigenvalue range of its training kernels
    max_variance: float = 5.0
    shrink: float = 0.  # 0: the estimate as predicted; 1: the default kernel
    default: tuple[float, float, float] = (2.0, 2.0, 0.)  # g^d_2.0
    kernel_size: int = 15
    diagonal_gain: float = 0.  # v = gain * u of the 45-degree-turned LR; 0: the network's own v
    views: int = 8  # the flips/rotations each reading averages (a key of VIEWS)

    def __post_init__(self):
        if self.views not in VIEWS:
            raise SRDistillError(f'kernel estimator settings: views must be one of {sorted(VIEWS)}, got {self.views!r}')


@dataclass
class KernelEstimate:
    kernel: np.ndarray  # HR-grid, sums to 1
    params: tuple[float, float, float]  # (lambda1, lambda2, theta) of ``kernel``
    raw_params: tuple[float, float, float]  # before clipping and shrinking
    clipped: bool


def estimate_from_coords(raw, settings: PredictorSettings) -> KernelEstimate:
    """Clip to the trained range, shrink toward the default in log-Euclidean coordinates, draw the kernel."""
    clipped, was_clipped = clip_coords(np.asarray(raw, dtype=np.float64), settings.min_variance, settings.max_variance)
    pulled = (1 - settings.shrink) * clipped + settings.shrink * coords_from_params(*settings.default)
    params = params_from_coords(pulled)
    return KernelEstimate(gaussian_kernel(settings.kernel_size, *params), params, params_from_coords(raw), was_clipped)


def turned_axis_reading(net: KernelPredictor, lr: torch.Tensor, views: int = 8) -> float:
    """The ``u`` of one ``(1, 3, H, W)`` LR turned by 45 degrees (averaged over ``views``): its diagonal elongation,
    before the gain."""
    return float(dihedral_estimate(net.eval(), turn_45(lr.float()), views)[0, 1])


def raw_coords(net: KernelPredictor, lr: torch.Tensor, diagonal_gain: float, views: int = 8) -> np.ndarray:
    """The unprocessed ``(m, u, v)`` of one ``(1, 3, H, W)`` LR: the estimate over ``views``, its ``v`` replaced by
    ``diagonal_gain`` times :func:`turned_axis_reading` unless the gain is 0."""
    raw = dihedral_estimate(net.eval(), lr.float(), views)[0].double().numpy()
    if diagonal_gain:
        raw[2] = diagonal_gain * turned_axis_reading(net, lr, views)
    return raw


def predict_kernel(net: KernelPredictor, lr: torch.Tensor, settings: PredictorSettings) -> KernelEstimate:
    """The kernel of one LR image (``(3, H, W)`` or ``(1, 3, H, W)`` RGB in [0, 1])."""
    lr = lr if lr.dim() == 4 else lr[None]
    raw = raw_coords(net, lr, settings.diagonal_gain, settings.views)
    if not np.isfinite(raw).all():
        raise SRDistillError(f'the kernel estimator returned {raw.tolist()} (not finite): its weights are broken')
    return estimate_from_coords(raw, settings)


def coords_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared log-Euclidean distance: ``||log S - log T||_F^2 = 2 dm^2 + 2 du^2 + 2 dv^2``."""
    return 2 * F.mse_loss(pred, target, reduction='none').sum(-1).mean()


def covariance(params: tuple[float, float, float]) -> np.ndarray:
    """The 2x2 covariance of a Gaussian kernel with eigenvalues ``lambda1``, ``lambda2`` turned by ``theta``."""
    l1, l2, theta = params
    rot = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
    return rot @ np.diag([l1, l2]) @ rot.T


def covariance_error(params: tuple[float, float, float], truth: tuple[float, float, float]) -> float:
    """Relative Frobenius error of a Gaussian's covariance against the true one."""
    return float(np.linalg.norm(covariance(params) - covariance(truth)) / np.linalg.norm(covariance(truth)))


def settings_record(settings: PredictorSettings) -> dict:
    """``settings`` as plain JSON-able values (tuples as lists)."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(settings).items()}


def save_predictor(path, net: KernelPredictor, settings: PredictorSettings, record: dict) -> None:
    """The estimator as one file: its weights, its architecture, ``settings`` and how it was made (``record``)."""
    architecture = {'num_in_ch': net.body[0].in_channels, 'num_feat': net.head.in_channels,
                    'dilations': [layer.dilation[0] for layer in net.body if isinstance(layer, nn.Conv2d)]}
    with atomic_path(path) as tmp:
        torch.save({'params': net.state_dict(), 'architecture': architecture, 'settings': settings_record(settings),
                    'record': record}, tmp)


def load_predictor(path) -> tuple[KernelPredictor, PredictorSettings, dict]:
    """``(network, settings, record)`` of a file written by :func:`save_predictor`."""
    try:
        saved = load_checkpoint(path)
        net = KernelPredictor(**{k: tuple(v) if isinstance(v, list) else v for k, v in saved['architecture'].items()})
        net.load_state_dict(saved['params'])
        settings = PredictorSettings(**{k: tuple(v) if isinstance(v, list) else v
                                        for k, v in saved['settings'].items()})
    except UnsafeCheckpointError:
        raise
    except Exception as err:  # a missing or truncated file, another network's weights, ...
        raise SRDistillError(f'{path}: not a kernel-estimator file ({first_line(err)})') from err
    return net.eval(), settings, saved.get('record', {})


MIN_LR_SIDE = 24  # below this the estimator sees too little of the image to be trusted


def estimate_folder_kernels(images: list[tuple[str, torch.Tensor]], out_dir, net: KernelPredictor,
                            settings: PredictorSettings, log=print) -> dict[str, dict]:
    """Estimate the kernel of every ``(stem, RGB CHW LR)`` and save it as ``out_dir/<stem>.npy`` (+ ``.mat`` and a
    preview); ``out_dir/kernels.json`` records each estimate's parameters and seconds. Every image's size is checked
    before the first estimate; an estimate clipped to the trained range is logged (``log``)."""
    for stem, lr in images:
        if min(lr.shape[-2:]) < MIN_LR_SIDE:
            raise SRDistillError(f'{stem}: the LR is {lr.shape[-1]}x{lr.shape[-2]}, smaller than the kernel '
                                 f"estimator's {MIN_LR_SIDE} px")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    records = {}
    for stem, lr in images:
        start = time.perf_counter()
        estimate = predict_kernel(net, lr, settings)
        seconds = time.perf_counter() - start
        if estimate.clipped:
            log(f'{stem}: the estimated kernel (variances {estimate.raw_params[0]:.2f}, {estimate.raw_params[1]:.2f}) '
                f'was clipped to the trained range [{settings.min_variance}, {settings.max_variance}]')
        save_kernel(estimate.kernel, out_dir, stem)
        records[stem] = {'lambda1': estimate.params[0], 'lambda2': estimate.params[1], 'theta': estimate.params[2],
                         'clipped': estimate.clipped, 'seconds': round(seconds, 4)}
    atomic_write_text(out_dir / 'kernels.json', json.dumps(
        {'estimator': 'learned', 'settings': settings_record(settings), 'images': records}, indent=2))
    return records
