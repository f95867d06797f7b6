"""The synthesis modes of the distillation's last stage, one registered class each.

A mode says in one place which real patches every pseudo-class starts from (``pick``: the selected patches or every
grid patch of the pool, drawn at random, by coverage, by kernel herding or best first) and what is made of them
(``render``: the patches as they are, with noise, or sampled by the fine-tuned diffusion model). ``DistillRun``
keeps the stages; a new mode is a subclass registered in ``SYNTHESIS_REGISTRY``, named by ``synthesize.mode``.
"""
from __future__ import annotations

import itertools
import logging
import math
from pathlib import Path
from typing import Iterator, Protocol

import numpy as np
import torch
from tqdm import tqdm

from srdistill.core.errors import SRDistillError
from srdistill.core.imageio import read_image, to_uint8
from srdistill.core.patch_selection import SelectionOptions
from srdistill.core.precision import autocast
from srdistill.core.representative import kernel_herding, proportional_split
from srdistill.core.set_diagnostics import k_center_greedy
from srdistill.core.synthesis import sample
from srdistill_plugin.data.selected_patch_dataset import SelectedPatchDataset

from .options import SynthesisOptions
from .pool import PoolGrid
from .registry import SYNTHESIS_REGISTRY

Batch = tuple[list[np.ndarray], int, 'np.ndarray | None']  # uint8 BGR patches, their class, their seeds (or None)


def spread_over_images(members: np.ndarray, images: list[int]) -> list[int]:
    """Reorder ranked patches round-robin over their source images (the best of every image, then the second
    best, ...), so that a budget is not spent on overlapping patches of one image."""
    by_image: dict[int, list[int]] = {}
    for member, image in zip(members.tolist(), images):
        by_image.setdefault(image, []).append(member)
    return [m for rank in itertools.zip_longest(*by_image.values()) for m in rank if m is not None]


def class_budgets(per_class: int, class_sizes: list[int], policy: str = 'equal',
                  pool_sizes: list[int] | None = None) -> list[int]:
    """Patches per pseudo-class: ``equal`` gives each ``per_class``, ``proportional`` splits the same total in
    proportion to the classes' shares of the pool's patches (``pool_sizes``). A class with no patches to draw from
    (``class_sizes`` 0) gets none, and its budget goes to the others."""
    if not any(class_sizes):
        raise SRDistillError('every pseudo-class is empty (no patches to draw from)')
    if policy == 'proportional':
        return proportional_split(per_class * len(class_sizes),
                                  [0 if n == 0 else p for n, p in zip(class_sizes, pool_sizes)])
    budgets = [0 if n == 0 else per_class for n in class_sizes]
    spare = per_class * (len(class_sizes) - sum(map(bool, class_sizes)))
    full = [c for c, n in enumerate(class_sizes) if n]
    for i, c in enumerate(full):
        budgets[c] += spare // len(full) + (i < spare % len(full))
    return budgets


def per_class_budget(options: SynthesisOptions, pool_pixels: int, num_classes: int, size: int) -> int:
    """Patches per pseudo-class of side ``size``: ``synthesize.budget_percent`` of the pool's pixels, else
    ``synthesize.per_class``."""
    patch_px = size ** 2
    if options.budget_percent is not None:
        total = math.ceil(options.budget_percent / 100 * pool_pixels / patch_px)
        per_class = math.ceil(total / num_classes)
    else:
        per_class = options.per_class
    if per_class * num_classes * patch_px > pool_pixels:
        raise SRDistillError(f'option synthesize: a budget of {per_class * num_classes} patches is larger than '
                             f'the pool ({pool_pixels} px)')
    return per_class


class StageRun(Protocol):
    """What a synthesis mode reads of the distillation run (``runner.DistillRun``) whose earlier stages it uses."""
    opt: dict
    seed: int
    stage_dir: Path
    device: torch.device
    logger: logging.Logger

    def manifest(self, stage: str) -> Path: ...
    def pool_image_classes(self) -> list[int]: ...
    def patch_features(self): ...
    def load_generator(self): ...


class SynthesisStrategy:
    """A synthesis mode: the patches every pseudo-class starts from, and what is made of them."""
    mode = ''  # the ``synthesize.mode`` that names it
    arm = ''  # the experiment arm that trains on its set (the mode's own name when empty)
    needs_generator = False  # renders with the fine-tuned diffusion model (so it needs the finetune stage)
    pool_wide = False  # draws from every grid patch of the pool, not only the selected ones
    keeps_seeds = True  # each output comes from one real patch, whose difference to it is reported

    def __init__(self, run: StageRun, options: SynthesisOptions):
        self.run, self.options = run, options
        self.rng = np.random.default_rng(options.draw_seed)
        self.generator = torch.Generator().manual_seed(run.seed)

    def herded(self) -> bool:
        """Whether the starting patches are chosen by kernel herding over the pool's grid."""
        return False

    def draws_from_pool(self) -> bool:
        """Whether the starting patches come from every grid patch of the pool (which needs every pool image's
        class), not only from the selected ones."""
        return self.pool_wide or self.herded()

    def source(self, selection: dict) -> tuple[PoolGrid | SelectedPatchDataset, PoolGrid | None]:
        """``(where the patches are drawn from, the pool's grid when the budgets or the draw need it)``."""
        grid = None
        if self.draws_from_pool() or self.options.class_budget == 'proportional':
            grid = self.pool_grid(selection, with_features=self.herded())
        if self.draws_from_pool():
            return grid, grid
        return SelectedPatchDataset({'stage_dir': str(self.run.stage_dir)}), grid

    def pool_grid(self, selection: dict, with_features: bool) -> PoolGrid:
        """Every grid patch of the pool with its image's pseudo-class (and, for herding, its features in the
        ``synthesize.herding_features`` space)."""
        space = self.options.herding_features if with_features else None
        extract = self.run.patch_features() if space == 'clip' else None
        return PoolGrid(selection['images'], self.run.pool_image_classes(), SelectionOptions(**selection['options']),
                        space, extract)

    def picks(self, selection: dict, num_classes: int, per_class: int) -> tuple[object, dict[int, list[int]]]:
        """``(patch source, {class: source indices})``: which real patches every class starts from."""
        source, grid = self.source(selection)
        class_ids = np.asarray(source.class_ids)
        sizes = np.bincount(class_ids, minlength=num_classes).tolist()
        if not any(sizes):
            raise SRDistillError(f'{self.run.manifest("categorize")}: every pseudo-class is empty (no selected '
                                 'patches)')
        for c in (c for c, n in enumerate(sizes) if n == 0):
            self.run.logger.warning(f'[synthesize] pseudo-class {c} has no patches to draw from: skipped, its budget '
                                    'is shared among the other classes')
        budgets = class_budgets(per_class, sizes, self.options.class_budget,
                                grid.class_sizes(num_classes) if grid is not None else None)
        members = {c: np.flatnonzero(class_ids == c) for c in range(num_classes) if budgets[c]}
        return source, {c: self.pick(source, m, budgets[c]) for c, m in members.items()}

    def pick(self, source, members: np.ndarray, count: int) -> list[int]:
        """``count`` of one class's ``members`` (indices into ``source``): uniformly at random by default."""
        return self.rng.choice(members, count, replace=len(members) < count).tolist()

    def render(self, real: np.ndarray, c: int, size: int) -> np.ndarray:
        """What is made of a batch of class ``c``'s real patches (``(N, size, size, 3)`` RGB in [0, 1]): the same
        layout out. By default the patches themselves."""
        return real

    def batches(self, selection: dict, num_classes: int, per_class: int, size: int) -> Iterator[Batch]:
        """The set, one batch at a time: ``(uint8 BGR patches, class, their seed patches or None)``."""
        source, picks_by_class = self.picks(selection, num_classes, per_class)
        batch = self.options.batch
        for c, picks in picks_by_class.items():
            if isinstance(source, PoolGrid):
                picks = sorted(picks, key=lambda i: source.image[i])  # image by image: one image decoded at a time
            for start in tqdm(range(0, len(picks), batch), desc=f'synthesize ({self.mode}) class {c}/{num_classes}',
                              unit='batch'):
                real = np.stack([source.patch(i)[:, :, ::-1] for i in picks[start:start + batch]])  # RGB
                out = self.render(real, c, size)
                seeds = np.stack([to_uint8(r[:, :, ::-1]) for r in real]) if self.keeps_seeds else None
                yield [to_uint8(o[:, :, ::-1]) for o in out], c, seeds


@SYNTHESIS_REGISTRY.register()
class RandomRealSynthesis(SynthesisStrategy):
    """The random-subset baseline: uniformly random patches of the whole pool (no scoring, no classes)."""
    mode = 'random_real'
    keeps_seeds = False

    def batches(self, selection: dict, num_classes: int, per_class: int, size: int) -> Iterator[Batch]:
        paths = selection['images']
        picks = self.rng.integers(len(paths), size=per_class * num_classes)
        for i in tqdm(sorted(set(picks.tolist())), desc='synthesize (random_real)', unit='img'):
            img, images = read_image(paths[i], min_size=size), []
            for _ in range(int((picks == i).sum())):
                y, x = self.rng.integers(img.shape[0] - size + 1), self.rng.integers(img.shape[1] - size + 1)
                images.append(to_uint8(img[y:y + size, x:x + size]))
            yield images, 0, None


@SYNTHESIS_REGISTRY.register()
class RandomSelectedSynthesis(SynthesisStrategy):
    """Uniformly random among the selected patches, whatever their class."""
    mode = 'random_selected'

    def picks(self, selection: dict, num_classes: int, per_class: int) -> tuple[object, dict[int, list[int]]]:
        source = self.source(selection)[0]
        class_ids, total = np.asarray(source.class_ids), per_class * num_classes
        picks = self.rng.choice(len(class_ids), total, replace=len(class_ids) < total)
        return source, {c: picks[class_ids[picks] == c].tolist() for c in range(num_classes)}


@SYNTHESIS_REGISTRY.register()
class RandomProportionalSynthesis(SynthesisStrategy):
    """Uniformly random grid patches of the pool, each pseudo-class in proportion to its share of the pool."""
    mode = 'random_proportional'
    pool_wide = True


@SYNTHESIS_REGISTRY.register()
class HerdingSynthesis(SynthesisStrategy):
    """Kernel herding over each class's grid patches towards a random reference sample of them, after the class's
    ``informative_share`` most informative patches (spread over images)."""
    mode = 'herding'
    pool_wide = True

    def herded(self) -> bool:
        return True

    def pick(self, source: PoolGrid, members: np.ndarray, count: int) -> list[int]:
        ranked = source.ranked(members)
        best = spread_over_images(ranked, source.image[ranked].tolist())[:round(self.options.informative_share * count)]
        reference = self.rng.choice(members, min(len(members), self.options.herding_reference), replace=False)
        local = {m: i for i, m in enumerate(members.tolist())}
        chosen = kernel_herding(source.features[members], count, source.features[reference],
                                preselected=[local[m] for m in best])
        return members[chosen].tolist()


@SYNTHESIS_REGISTRY.register()
class CoverageSynthesis(SynthesisStrategy):
    """Greedy k-center in the grouping feature space among the class's most informative
    ``synthesize.coverage_candidates`` selected patches (1500), starting from the most informative one."""
    mode = 'coverage'

    def pick(self, source: SelectedPatchDataset, members: np.ndarray, count: int) -> list[int]:
        extract = self.run.patch_features()
        candidates = members[:self.options.coverage_candidates]
        features = np.stack([extract(source.patch(i)) for i in candidates])
        return [int(candidates[i]) for i in k_center_greedy(features, count)]


@SYNTHESIS_REGISTRY.register()
class SelectedRealSynthesis(SynthesisStrategy):
    """The seeds of the seeded modes as they are: each class's most informative selected patches spread over
    images (``seed_selection: selected``, the paper's), or the herding mode's patches (``herding``)."""
    mode = 'selected_real'

    def herded(self) -> bool:
        return self.options.seed_selection == 'herding'

    def pick(self, source, members: np.ndarray, count: int) -> list[int]:
        if self.herded():
            return HerdingSynthesis.pick(self, source, members, count)
        ranked = spread_over_images(members, [source.patches[m][0] for m in members])
        return list(itertools.islice(itertools.cycle(ranked), count))


@SYNTHESIS_REGISTRY.register()
class SelectedNoiseSynthesis(SelectedRealSynthesis):
    """The seeds with Gaussian noise of ``synthesize.noise_sigma`` (8-bit levels) added: the generator's
    variation without a generator."""
    mode = 'selected_noise'

    def render(self, real: np.ndarray, c: int, size: int) -> np.ndarray:
        noise = torch.randn(real.shape, generator=self.generator, dtype=torch.float64).numpy()
        return np.clip(real + self.options.noise_sigma / 255 * noise, 0, 1)


class GeneratedSynthesis(SynthesisStrategy):
    """Rendered by the fine-tuned class-conditional diffusion model, from the seeds (``init``) or from noise."""
    needs_generator = True
    from_seeds = True

    def batches(self, selection: dict, num_classes: int, per_class: int, size: int) -> Iterator[Batch]:
        self.net, self.scheduler = self.run.load_generator()
        yield from super().batches(selection, num_classes, per_class, size)

    def render(self, real: np.ndarray, c: int, size: int) -> np.ndarray:
        init = torch.from_numpy(real.copy()).permute(0, 3, 1, 2) if self.from_seeds else None
        opts = self.options
        with autocast(opts.amp, self.run.device):
            out = sample(self.net, self.scheduler, torch.full((len(real), ), c), size, opts.steps, self.generator,
                         init, opts.strength, self.run.device, opts.guidance_scale)
        return out.float().permute(0, 2, 3, 1).cpu().numpy()


@SYNTHESIS_REGISTRY.register()
class SDEditSynthesis(GeneratedSynthesis, SelectedRealSynthesis):
    """SDEdit: each seed (chosen as ``selected_real`` chooses) noised to ``synthesize.strength`` and denoised by
    the fine-tuned model; the paper's set and the default mode."""
    mode = 'sdedit'
    arm = 'distilled'


@SYNTHESIS_REGISTRY.register()
class NoiseSynthesis(GeneratedSynthesis):
    """Sampled from pure noise by the fine-tuned model, per class (the class counts drawn as the random modes)."""
    mode = 'noise'
    keeps_seeds = False
    from_seeds = False
