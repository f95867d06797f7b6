"""The fixed-kernel table of a zero-shot experiment: every set x kernel, each image's bicubic, start, MZSR(n), ZSSR
and ablation rows, stored per unit in ``experiments/<name>/rows/<set>_<kernel>.json`` under the hashes of the
weights they read (rows of other weights are never mixed in)."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from tqdm import tqdm

from srdistill.core.file_lock import FileLock
from srdistill.core.imageio import list_images
from srdistill.core.json_store import JsonStore
from srdistill.core.matlab_resize import matlab_resize
from srdistill.core.zssr import ZSSRConfig
from srdistill_plugin.metrics.y_channel import tensor_metrics
from srdistill_plugin.zero_shot.protocol import benchmark_images, mzsr_rows, official_lr, zssr_rows

from .zero_shot_options import ZeroShotExperiment


class KernelTable:
    """Evaluate and read the fixed-kernel table; ``net(name)`` loads a network, ``hashes`` names its weights."""

    def __init__(self, exp: ZeroShotExperiment, work: Path, net: Callable, hashes: dict[str, str]):
        self.exp, self.work, self.net, self.hashes = exp, work, net, hashes

    def row_key(self, stem: str, arm: str, steps: tuple[int, ...], schedule: str) -> str:
        return (f'{stem}|{arm}:{self.hashes.get(arm)}|pretrained:{self.hashes.get("pretrained")}|steps={list(steps)}|'
                f'{schedule}')

    def zssr_key(self, stem: str) -> str:
        return f'{stem}|zssr|crop={self.exp.zssr.crop}|iters={self.exp.zssr.max_iters}'

    def ablation_key(self, stem: str, arm: str, steps: tuple[int, ...]) -> str:
        return (f'{stem}|ablation|{arm}:{self.hashes.get(arm)}|steps={list(steps)}|'
                f'{self.exp.ablation.schedule}')

    def rows(self, set_name: str, kernel: str) -> JsonStore:
        return JsonStore(self.work / 'rows' / f'{set_name}_{kernel}.json')

    def evaluate(self) -> None:
        """Every set x kernel not taken by another worker: each image's row, computed where not stored."""
        exp, scale = self.exp, self.exp.scale
        units = [(s, k) for s in exp.sets for k in exp.kernels]
        for set_dir, kernel in tqdm(units, desc=f'{exp.name}: evaluation', unit='set x kernel', disable=not units):
            lock = FileLock(self.work / 'locks' / f'{set_dir.name}_{kernel}.lock')
            if not lock.acquire(blocking=False):
                continue
            try:
                store, arm = self.rows(set_dir.name, kernel), exp.kernels[kernel]
                steps, schedule = exp.steps_for(set_dir.name), exp.arms[arm].schedule
                zssr = set_dir.name in exp.zssr.sets and kernel in exp.zssr.kernels
                ablate = set_dir.name in exp.ablation.sets and kernel in exp.ablation.kernels
                for stem, hr in benchmark_images(set_dir, scale):
                    lr, k, downsample = official_lr(hr, kernel, scale)
                    key = self.row_key(stem, arm, steps, schedule)
                    if store.get(key) is None:
                        with torch.no_grad():
                            row = {'bicubic': (*tensor_metrics(matlab_resize(lr, scale), hr, scale), 0.),
                                   'pretrained': (*tensor_metrics(self.net('pretrained')(lr), hr, scale), 0.)}
                        row.update(mzsr_rows(self.net(arm), lr, k, downsample, hr, scale, steps, schedule))
                        store.put(key, row)
                    if zssr and store.get(self.zssr_key(stem)) is None:
                        config = ZSSRConfig(crop_size=exp.zssr.crop, max_iters=exp.zssr.max_iters)
                        store.put(self.zssr_key(stem), zssr_rows(lr, k, downsample, hr, scale, config))
                    for other in exp.ablation.arms if ablate else ():
                        if store.get(self.ablation_key(stem, other, steps)) is None:
                            store.put(self.ablation_key(stem, other, steps), mzsr_rows(
                                self.net(other), lr, k, downsample, hr, scale, steps, exp.ablation.schedule))
            finally:
                lock.release()

    def rows_by_unit(self) -> dict[str, dict[str, list[dict]]]:
        """``{'<set>/<kernel>': {'rows': [...], 'zssr': [...], 'ablation': {arm: [...]}}}`` of the units whose
        every image is evaluated (ZSSR and ablations where run)."""
        exp, out = self.exp, {}
        for set_dir in exp.sets:
            stems = [p.stem for p in list_images(set_dir / 'HR')]
            for kernel, arm in exp.kernels.items():
                store = self.rows(set_dir.name, kernel)
                rows = [store.get(self.row_key(s, arm, exp.steps_for(set_dir.name), exp.arms[arm].schedule))
                        for s in stems]
                if None in rows:
                    continue
                unit = {'rows': rows, 'zssr': [store.get(self.zssr_key(s)) for s in stems], 'ablation': {}}
                if None in unit['zssr']:
                    unit['zssr'] = []
                if set_dir.name in exp.ablation.sets and kernel in exp.ablation.kernels:
                    steps = exp.steps_for(set_dir.name)
                    unit['ablation'] = {a: [store.get(self.ablation_key(s, a, steps)) for s in stems]
                                        for a in exp.ablation.arms}
                    unit['ablation'] = {a: r for a, r in unit['ablation'].items() if None not in r}
                out[f'{set_dir.name}/{kernel}'] = unit
        return out

    def seed_imported(self, imported: dict) -> None:
        """The import's rows, under the keys of the weights it recorded (once; rows made here are kept)."""
        for (set_name, kernel), rows in imported.items():
            store, arm = self.rows(set_name, kernel), self.exp.kernels[kernel]
            for stem, row in rows.items():
                keys = {'main': self.row_key(stem, arm, self.exp.steps_for(set_name), self.exp.arms[arm].schedule),
                        'zssr': self.zssr_key(stem),
                        **{other: self.ablation_key(stem, other, self.exp.steps_for(set_name))
                           for other in self.exp.ablation.arms}}
                for part, value in row.items():
                    if part in keys and store.get(keys[part]) is None:
                        store.put(keys[part], value)
