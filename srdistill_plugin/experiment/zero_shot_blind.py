"""The blind table of a zero-shot experiment (``blind:``): each image degraded by its own kernel from MZSR's task
distribution, the kernel estimated from the LR alone, and every named network adapted with the default, the
estimated, the true and a wrong kernel. Rows are stored per set in ``experiments/<name>/blind/<set>.json``: the
estimate (network-independent) under its settings, each network's row under its weights' hash."""
from __future__ import annotations

import zlib
from collections.abc import Callable
from functools import cached_property
from pathlib import Path
from statistics import mean

import numpy as np
import torch
from scipy import stats
from tqdm import tqdm

from srdistill.core.file_lock import FileLock
from srdistill.core.imageio import list_images
from srdistill.core.json_store import JsonStore
from srdistill.core.blur_synthesis import noisy_jpeg
from srdistill.core.errors import SRDistillError
from srdistill.core.kernel_estimation import KernelGANConfig
from srdistill.core.kernel_predictor import covariance_error, load_predictor
from srdistill.core.kernels import eval_kernel, gaussian_kernel, random_mzsr_kernel_params
from srdistill.core.zssr import ZSSRConfig
from srdistill.zero_shot.zoo import shipped_estimator
from srdistill_plugin.zero_shot.checkpoints import file_hash
from srdistill_plugin.zero_shot.protocol import (BLIND_CASES, BLIND_KERNEL_SIZE, Estimator, benchmark_images,
                                                 blind_estimate, blind_lr, covariance_errors, kernelgan_estimator,
                                                 learned_estimator, mzsr_kernel_rows)

from .zero_shot_options import ZeroShotExperiment


class BlindTable:
    """Evaluate and read the blind table; ``net(name)`` loads a network, ``hashes`` names its weights."""

    def __init__(self, exp: ZeroShotExperiment, work: Path, net: Callable, hashes: dict[str, str]):
        self.exp, self.spec, self.work, self.net, self.hashes = exp, exp.blind, work, net, hashes

    def sets(self) -> list[Path]:
        return [s for s in self.exp.sets if s.name in self.spec.sets]

    def store(self, set_name: str) -> JsonStore:
        return JsonStore(self.work / 'blind' / f'{set_name}.json')

    def estimator_file(self) -> Path:
        return Path(self.spec.estimator_file) if self.spec.estimator_file else shipped_estimator()

    @cached_property
    def estimator_name(self) -> str:
        """The estimator in the rows' keys (the learned file hashed once per table, not once per key)."""
        b = self.spec
        if b.estimator == 'kernelgan':
            return f'kernelgan:{b.estimate_iters}'
        return f'learned:{file_hash(self.estimator_file())}'

    def estimator(self) -> Estimator:
        b = self.spec
        if b.estimator == 'kernelgan':
            return kernelgan_estimator(KernelGANConfig(max_iters=b.estimate_iters, seed=b.seed), self.exp.scale)
        net, settings, _ = load_predictor(self.estimator_file())
        if (settings.scale, settings.downsample) != (self.exp.scale, 'direct'):
            raise SRDistillError(f'{self.estimator_file()}: an estimator for x{settings.scale} {settings.downsample}, '
                                 f'the blind table is x{self.exp.scale} direct')
        return learned_estimator(net, settings)

    def corruption(self) -> str:
        """How the LRs were degraded beyond the kernel, as a key part ('' for clean 8-bit LRs)."""
        b = self.spec
        return ''.join([f'|noise={b.lr_noise_sigma:g}' if b.lr_noise_sigma else '',
                        f'|jpeg={b.lr_jpeg_quality}' if b.lr_jpeg_quality is not None else ''])

    def estimate_key(self, set_name: str, stem: str) -> str:
        b = self.spec
        return (f'{stem}|estimate|{self.estimator_name}|seed={b.seed}|default={b.default_kernel}|'
                f'zssr={set_name in b.zssr_sets}{self.corruption()}')

    def mzsr_key(self, stem: str, arm: str, weights: str | None = None, schedule: str | None = None) -> str:
        """The key of ``arm``'s row for one image: its weights' hash and step sizes, unless ``weights`` / ``schedule``
        name those another run used (an import's)."""
        b = self.spec
        return (f'{stem}|mzsr|{arm}:{weights or self.hashes[arm]}|steps={b.steps}|default={b.default_kernel}|'
                f'wrong={b.wrong_kernel}|seed={b.seed}|{self.estimator_name}{self.corruption()}'
                f'{schedule_key(schedule or self.exp.arms[arm].schedule)}')  # a new estimator, a new row

    def corrupted(self, lr: torch.Tensor, stem: str) -> torch.Tensor:
        """``lr`` with the table's noise and JPEG (the noise drawn from the seed and the image's name, so the
        kernels' draw order is untouched)."""
        b = self.spec
        if not b.lr_noise_sigma and b.lr_jpeg_quality is None:
            return lr
        rng = np.random.default_rng([b.seed, zlib.crc32(stem.encode())])
        bgr = lr[0].permute(1, 2, 0).numpy()[:, :, ::-1]
        out = noisy_jpeg(bgr, rng, b.lr_noise_sigma, b.lr_jpeg_quality)[:, :, ::-1]
        return torch.from_numpy(np.ascontiguousarray(out.transpose(2, 0, 1)))[None]

    def seed_imported(self, imported: dict, weights: dict[str, str]) -> None:
        """The rows of an imported blind results file (once; rows made here are kept): the estimates under this table's
        keys, each network's rows under the weights hash the file recorded (``weights``) and the step sizes it ran
        (the official direct_x2), so an arm whose weights or schedule differ is evaluated anew."""
        for set_name, images in imported.items():
            store = self.store(set_name)
            for stem, row in images.items():
                if store.get(self.estimate_key(set_name, stem)) is None:
                    store.put(self.estimate_key(set_name, stem), row['estimate'])
                for arm, model_row in row['models'].items():
                    if arm in self.spec.arms and store.get(key := self.mzsr_key(stem, arm, weights[arm],
                                                                                'direct_x2')) is None:
                        store.put(key, model_row)

    def sensitivity_key(self, stem: str, arm: str) -> str:
        b = self.spec
        return (f'{stem}|sensitivity|{arm}:{self.hashes[arm]}|steps={b.steps}|scales={list(b.scales)}|'
                f'turns={list(b.turns)}|seed={b.seed}{schedule_key(self.exp.arms[arm].schedule)}')

    def evaluate(self) -> None:
        """Every set not taken by another worker: each image's estimate and each network's row, where not stored."""
        b, scale = self.spec, self.exp.scale
        for set_dir in tqdm(self.sets(), desc=f'{self.exp.name}: blind', unit='set', disable=not self.spec.sets):
            lock = FileLock(self.work / 'locks' / f'blind_{set_dir.name}.lock')
            if not lock.acquire(blocking=False):
                continue
            try:
                store, rng, estimator = self.store(set_dir.name), np.random.default_rng(b.seed), None
                for stem, hr in benchmark_images(set_dir, scale):
                    lr, true_kernel, params = blind_lr(hr, rng, scale)
                    lr = self.corrupted(lr, stem)
                    key = self.estimate_key(set_dir.name, stem)
                    if store.get(key) is None:
                        zssr = (ZSSRConfig(crop_size=self.exp.zssr.crop, max_iters=self.exp.zssr.max_iters)
                                if set_dir.name in b.zssr_sets else None)
                        estimator = estimator or self.estimator()
                        store.put(key, blind_estimate(lr, hr, true_kernel, scale, estimator, b.default_kernel, zssr,
                                                      b.seed))
                    row = store.get(key)
                    kernels = {'default': eval_kernel(b.default_kernel)[0], 'estimated': row['estimated_kernel'],
                               'unfiltered': row.get('unfiltered_kernel'), 'true': true_kernel,
                               'wrong': eval_kernel(b.wrong_kernel)[0]}
                    for arm in b.arms:
                        if store.get(self.mzsr_key(stem, arm)) is None:
                            store.put(self.mzsr_key(stem, arm), mzsr_kernel_rows(
                                self.net(arm), lr, hr, {c: k for c, k in kernels.items() if k is not None}, scale,
                                b.steps, self.exp.arms[arm].schedule))
                        if (b.scales or b.turns) and store.get(self.sensitivity_key(stem, arm)) is None:
                            perturbed = {case: gaussian_kernel(BLIND_KERNEL_SIZE, *p)
                                         for case, p in perturbations(params, b.scales, b.turns).items()}
                            store.put(self.sensitivity_key(stem, arm), mzsr_kernel_rows(
                                self.net(arm), lr, hr, perturbed, scale, b.steps, self.exp.arms[arm].schedule))
            finally:
                lock.release()

    def rows(self) -> dict[str, list[dict]]:
        """``{set: [{'image', 'true_kernel', <estimate>, 'models': {arm: <row>}}]}`` of the sets whose every image
        is evaluated (the true kernels drawn again: they depend on the seed and the images' order only)."""
        out = {}
        for set_dir in self.sets():
            store, rows, rng = self.store(set_dir.name), [], np.random.default_rng(self.spec.seed)
            for path in list_images(set_dir / 'HR'):
                params = random_mzsr_kernel_params(rng, self.exp.scale)
                estimate = store.get(self.estimate_key(set_dir.name, path.stem))
                models = {arm: store.get(self.mzsr_key(path.stem, arm)) for arm in self.spec.arms}
                if self.spec.scales or self.spec.turns:
                    for arm in self.spec.arms:
                        extra = store.get(self.sensitivity_key(path.stem, arm))
                        models[arm] = None if extra is None or models[arm] is None else {**models[arm], **extra}
                if estimate is None or None in models.values():
                    break
                true_kernel = gaussian_kernel(BLIND_KERNEL_SIZE, *params)
                errors = covariance_errors({'estimated': np.asarray(estimate['estimated_kernel']),
                                            'default': eval_kernel(self.spec.default_kernel)[0]}, true_kernel)
                rows.append({'image': path.stem, 'true_kernel': true_kernel, 'true_params': params, **estimate,
                             'covariance_error': errors, 'models': models})
            else:
                out[set_dir.name] = rows
        return out


def schedule_key(schedule: str) -> str:
    """Test-time step sizes in a row's key (none for the official direct_x2, as rows were first kept)."""
    return '' if schedule == 'direct_x2' else f'|schedule={schedule}'


def paired(differences: list[float]) -> tuple[float, float, float]:
    """Mean of paired differences, the half-width of its 95 % t interval, and the share above zero."""
    m = float(np.mean(differences))
    half = float(stats.t.ppf(0.975, len(differences) - 1) * stats.sem(differences)) if len(differences) > 1 else 0.
    return m, half, float(np.mean(np.asarray(differences) > 0))


def summarize_blind(rows: list[dict], arm: str) -> dict:
    """Means over images for one network: bicubic, MZSR with each kernel, the true − default gap and the share the
    estimate closes (none where the gap is under 0.05 dB), the estimate's paired gain over the default, kernel PSNRs
    and estimation seconds."""
    mine = [{**r, **r['models'][arm]} for r in rows]
    cases = [c for c in BLIND_CASES if all(f'mzsr_{c}' in r for r in mine)]
    s = {'bicubic': mean(r['bicubic'] for r in mine)}
    s.update({f'mzsr_{c}': mean(r[f'mzsr_{c}'] for r in mine) for c in cases})
    gap = s['mzsr_true'] - s['mzsr_default']
    s['sensitivity_true_minus_default'] = gap
    s['gap_closed_of_means'] = (s['mzsr_estimated'] - s['mzsr_default']) / gap if abs(gap) >= 0.05 else None
    s['estimated_minus_default'] = paired([r['mzsr_estimated'] - r['mzsr_default'] for r in mine])
    s['kernel_psnr'] = {k: mean(r['kernel_psnr'][k] for r in mine) for k in mine[0]['kernel_psnr']}
    s['kernel_closer_than_default'] = sum(r['kernel_psnr']['estimated'] > r['kernel_psnr']['default'] for r in mine)
    s['covariance_error'] = {k: mean(r['covariance_error'][k] for r in mine) for k in mine[0]['covariance_error']}
    s['covariance_closer_than_default'] = sum(
        r['covariance_error']['estimated'] < r['covariance_error']['default'] for r in mine)
    s['estimate_s'] = mean(r['estimate_s'] for r in mine)
    s['images'] = len(mine)
    if all('zssr_estimated' in r for r in mine):
        s['zssr_estimated'] = mean(r['zssr_estimated'] for r in mine)
    return s


def kernel_figure(path: Path, entries: list[tuple[str, np.ndarray, np.ndarray]]) -> None:
    """True (top row) and estimated (bottom row) kernels of every image side by side."""
    import cv2

    from srdistill.core.kernel_files import kernel_preview

    cell = 72
    canvas = np.full((2 * cell + 24, cell * len(entries), 3), 255, np.uint8)
    for i, (name, true_k, est_k) in enumerate(entries):
        for row, k in enumerate((true_k, est_k)):
            tile = cv2.applyColorMap(cv2.resize(kernel_preview(np.asarray(k), 1), (64, 64),
                                                interpolation=cv2.INTER_NEAREST), cv2.COLORMAP_VIRIDIS)
            canvas[row * cell + 4:row * cell + 68, i * cell + 4:i * cell + 68] = tile
        cv2.putText(canvas, name[:9], (i * cell + 2, 2 * cell + 16), cv2.FONT_HERSHEY_SIMPLEX, 0.33, (0, 0, 0), 1)
    cv2.imwrite(str(path), canvas)


def perturbations(params: tuple[float, float, float], scales: tuple[float, ...], turns: tuple[float, ...]
                  ) -> dict[str, tuple[float, float, float]]:
    """``{case: (lambda1, lambda2, theta)}``: both eigenvalues scaled by each of ``scales`` (``scale<f>``), and the
    kernel turned by each of ``turns`` degrees (``turn<t>``)."""
    l1, l2, theta = params
    out = {f'scale{f:g}': (l1 * f, l2 * f, theta) for f in scales}
    out.update({f'turn{t:g}': (l1, l2, theta + np.deg2rad(t)) for t in turns})
    return out


def sensitivity_summary(rows: list[dict], arm: str, scales: tuple[float, ...], turns: tuple[float, ...]) -> dict:
    """Per perturbation of the true kernel: mean MZSR PSNR, its difference from the true and the default kernel, the
    share of images where it beats the default, and the covariance's relative error (Frobenius) it stands for."""
    out = {}
    changed = [perturbations(r['true_params'], scales, turns) for r in rows]
    for case in changed[0]:
        psnr = [r['models'][arm][f'mzsr_{case}'] for r in rows]
        error = [covariance_error(c[case], r['true_params']) for c, r in zip(changed, rows)]
        out[case] = {'mzsr': mean(psnr), 'covariance_error': mean(error),
                     'minus_true': mean(p - r['models'][arm]['mzsr_true'] for p, r in zip(psnr, rows)),
                     'minus_default': mean(p - r['models'][arm]['mzsr_default'] for p, r in zip(psnr, rows)),
                     'beats_default': sum(p > r['models'][arm]['mzsr_default'] for p, r in zip(psnr, rows)) / len(rows)}
    return out

