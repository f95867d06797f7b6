"""The distillation's options that would fail late or silently, checked when a run starts (before any stage)."""
from __future__ import annotations

import dataclasses
from collections.abc import Callable
from numbers import Integral, Real

import torch

from srdistill.core.errors import SRDistillError
from srdistill.core.option_schema import ANY, Section, check_options
from srdistill.core.patch_selection import SelectionOptions
from srdistill.core.precision import check_amp

from .registry import strategy_class

CLASS_BUDGETS = ('proportional', 'equal')
SEED_SELECTIONS = ('selected', 'herding')
HERDING_FEATURES = ('sr_stats', 'clip')
SAMPLERS = ('ddim', 'ddpm')
GROUPINGS = ('image', 'patch')
FEATURES = ('auto', 'clip', 'colour_texture')


# The keys a distillation file may hold, per section (``finetune`` holds BasicSR options, which BasicSR reads).
TOP_KEYS = ('name', 'scale', 'num_gpu', 'manual_seed', 'pool', 'pool_made_by', 'output', 'select', 'categorize',
            'finetune', 'synthesize')
SECTION_KEYS = {
    'select': tuple(f.name for f in dataclasses.fields(SelectionOptions) if f.name != 'scale'),
    'categorize': ('num_classes', 'features', 'clip', 'by'),
    'categorize.clip': ('model', 'pretrained', 'model_config'),
    'synthesize': ('mode', 'per_class', 'budget_percent', 'steps', 'batch', 'strength', 'noise_sigma', 'amp',
                   'class_budget', 'seed_selection', 'draw_seed', 'herding_reference', 'herding_features',
                   'informative_share', 'coverage_candidates', 'patch_size', 'guidance_scale', 'sampler'),
}


def distill_schema(top_level: bool = True) -> Section:
    """The keys of a distillation file (``top_level=False``: an experiment's ``distill`` block, whose top-level keys
    the experiment sets)."""
    sections = {name: Section({key: ANY for key in keys}) for name, keys in SECTION_KEYS.items() if '.' not in name}
    sections['categorize'] = Section({**sections['categorize'].keys,
                                      'clip': Section({key: ANY for key in SECTION_KEYS['categorize.clip']})})
    return Section({**{key: ANY for key in TOP_KEYS}, **sections}, open=not top_level)


def check_known_keys(opt: dict, top_level: bool = True) -> None:
    """Every key of a distillation file (or an experiment's ``distill`` block, ``top_level=False``) is one the
    stages read: a misspelled section or key stops the run at start instead of leaving its defaults in force."""
    check_options(distill_schema(top_level), opt)


def _number(value) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool)


def _integer(section: dict, key: str, option: str, default: int, low: int = 1, high: int | None = None) -> int:
    value = section.get(key, default)
    if not isinstance(value, Integral) or isinstance(value, bool) or value < low or (high is not None and value > high):
        allowed = f'an integer in [{low}, {high}]' if high is not None else f'an integer >= {low}'
        raise SRDistillError(f'option {option}: expected {allowed}, got {value!r}')
    return int(value)


def _real(section: dict, key: str, option: str, default: float, ok: Callable[[float], bool], expected: str) -> float:
    value = section.get(key, default)
    if not _number(value) or not ok(value):
        raise SRDistillError(f'option {option}: expected {expected}, got {value!r}')
    return float(value)


def _choice(section: dict, key: str, option: str, choices: tuple[str, ...], default: str) -> str:
    value = section.get(key, default)
    if value not in choices:
        raise SRDistillError(f'option {option}: expected one of {choices}, got {value!r}')
    return value


def synthesis_mode(syn: dict) -> str:
    """``synthesize.mode``: a registered synthesis mode (``sdedit``, the paper's, by default)."""
    mode = syn.get('mode', 'sdedit')
    strategy_class(mode)
    return mode


def draws_from_pool(syn: dict) -> bool:
    """Whether the set's patches may come from every grid patch of the pool (a pool-wide mode, or herding seeds),
    which needs every pool image classified and makes proportional class budgets the default."""
    return strategy_class(synthesis_mode(syn)).pool_wide or syn.get('seed_selection') == 'herding'


def class_budget(syn: dict) -> str:
    """``synthesize.class_budget``: ``equal`` (the paper's: every pseudo-class the same number of patches) or
    ``proportional`` (to the class's share of the pool's patches); the pool-wide modes and herding seeds default to
    proportional."""
    return _choice(syn, 'class_budget', 'synthesize.class_budget', CLASS_BUDGETS,
                   'proportional' if draws_from_pool(syn) else 'equal')


def herding_features(opt: dict) -> str:
    """``synthesize.herding_features``: ``sr_stats`` (band-pass, residual, orientation and colour statistics of
    each patch) or ``clip`` (the categorize stage's CLIP encoder, which needs its weights named)."""
    value = _choice(opt.get('synthesize') or {}, 'herding_features', 'synthesize.herding_features', HERDING_FEATURES,
                    'sr_stats')
    clip = (opt.get('categorize') or {}).get('clip') or {}
    if value == 'clip' and not (clip.get('pretrained') or str(clip.get('model', '')).startswith('hf-hub:')):
        raise SRDistillError('option synthesize.herding_features: clip needs CLIP weights (categorize.clip.pretrained '
                             'or an hf-hub: model), none given')
    return value


def set_patch_size(opt: dict) -> int:
    """``synthesize.patch_size``: the side (HR pixels) of the set's patches. Every mode makes patches of
    ``select.patch_size`` (64), the size it scores, groups and generates; ``random_real`` may draw another size at
    the same pixel budget (smaller: more patches from more places of the pool)."""
    syn = opt.get('synthesize') or {}
    select_size = (opt.get('select') or {}).get('patch_size', SelectionOptions.patch_size)
    if 'patch_size' not in syn:
        return select_size
    scale = opt.get('scale', 1)
    value = _integer(syn, 'patch_size', 'synthesize.patch_size', select_size, low=scale)
    if value % scale:
        raise SRDistillError(f'option synthesize.patch_size: {value} is not a multiple of scale {scale}')
    if synthesis_mode(syn) != 'random_real' and value != select_size:
        raise SRDistillError(f'option synthesize.patch_size: only random_real draws patches of another size than '
                             f'select.patch_size ({select_size}); mode {synthesis_mode(syn)!r} got {value}')
    return value



def categorize_by(opt: dict) -> str:
    """``categorize.by``: ``image`` (the default: a kept patch takes its image's pseudo-class) or ``patch`` (every
    kept patch clustered on its own, as the SRDD code does). Per-patch classes exist for the kept patches only, so
    the modes that draw from the whole pool, herding seeds and proportional class budgets need ``image``."""
    value = _choice(opt.get('categorize') or {}, 'by', 'categorize.by', GROUPINGS, 'image')
    syn = opt.get('synthesize') or {}
    if value == 'patch':
        if draws_from_pool(syn) or class_budget(syn) == 'proportional':
            raise SRDistillError('option categorize.by: patch gives classes to the kept patches only; mode '
                                 f'{synthesis_mode(syn)!r} with these budget and seed options needs the pool\'s '
                                 'images classified (by: image), or class_budget: equal with seeds from the kept '
                                 'patches')
    return value


def guidance_scale(opt: dict) -> float:
    """``synthesize.guidance_scale``: classifier-free guidance at sampling (1: none, the default; the paper's DiT:
    4.0). Above 1 the generator needs an unconditional class: a pretrained DiT has one, the pixel UNet gets one with
    ``finetune.network_g.null_class: true`` (trained by ``finetune.train.class_dropout_prob``)."""
    value = (opt.get('synthesize') or {}).get('guidance_scale', 1)
    if not _number(value) or value < 1:
        raise SRDistillError(f'option synthesize.guidance_scale: expected a number >= 1 (1: no guidance), got {value!r}')
    network = (opt.get('finetune') or {}).get('network_g') or {}
    pixel_unet = network.get('type', 'ClassConditionalUNet') == 'ClassConditionalUNet'
    if value > 1 and pixel_unet and not network.get('null_class'):
        raise SRDistillError(f'option synthesize.guidance_scale: {value} needs an unconditional class, and the pixel '
                             'UNet has none (set finetune.network_g.null_class: true and '
                             'finetune.train.class_dropout_prob, e.g. 0.1)')
    return float(value)


def synthesis_device(opt: dict) -> torch.device:
    """``num_gpu`` as BasicSR reads it: 0 runs on the CPU, ``auto`` or >= 1 on the first CUDA device."""
    num_gpu = opt.get('num_gpu', 0)
    if num_gpu == 'auto':
        return torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    if not isinstance(num_gpu, Integral) or isinstance(num_gpu, bool) or num_gpu < 0:
        raise SRDistillError(f"option num_gpu: expected an integer >= 0 or 'auto', got {num_gpu!r}")
    if num_gpu and not torch.cuda.is_available():
        raise SRDistillError(f'option num_gpu: {num_gpu} GPU(s) asked for, but torch sees no CUDA device '
                             '(set num_gpu: 0 to run on the CPU)')
    return torch.device('cuda' if num_gpu else 'cpu')


def check_distill_options(opt: dict) -> tuple['CategorizeOptions', 'SynthesisOptions']:
    """Every key, and every categorize, synthesis and fine-tuning option that is read after hours of work, checked
    now; the typed categorize and synthesis options."""
    check_known_keys(opt)
    synthesis = SynthesisOptions.from_opt(opt)
    categorize = CategorizeOptions.from_opt(opt)
    synthesis_device(opt)
    ft = opt.get('finetune') or {}
    timesteps = _integer(ft.get('diffusion') or {}, 'num_train_timesteps', 'finetune.diffusion.num_train_timesteps',
                         1000)
    train = ft.get('train') or {}
    _integer(train.get('diffusion') or {}, 'max_timestep', 'finetune.train.diffusion.max_timestep', timesteps,
             high=timesteps)
    check_amp(train.get('amp'), 'finetune.train.amp')
    return categorize, synthesis


@dataclasses.dataclass(frozen=True)
class CategorizeOptions:
    """The ``categorize`` section: how the kept patches are grouped into pseudo-classes, checked once
    (:meth:`from_opt`)."""
    num_classes: int  # k of the k-means
    features: str  # auto (CLIP where weights are named, else the colour-texture descriptor), clip or colour_texture
    clip_model: str  # an open_clip architecture, or an hf-hub: name
    clip_pretrained: str | None  # a checkpoint file (relative to the root) or an open_clip tag
    clip_model_config: str | None  # an open_clip model config file for an architecture open_clip does not know
    by: str  # see categorize_by

    @classmethod
    def from_opt(cls, opt: dict) -> 'CategorizeOptions':
        cat = opt.get('categorize') or {}
        clip = cat.get('clip') or {}
        return cls(num_classes=_integer(cat, 'num_classes', 'categorize.num_classes', 7),
                   features=_choice(cat, 'features', 'categorize.features', FEATURES, 'auto'),
                   clip_model=clip.get('model', 'ViT-B-32'), clip_pretrained=clip.get('pretrained'),
                   clip_model_config=clip.get('model_config'), by=categorize_by(opt))


@dataclasses.dataclass(frozen=True)
class SynthesisOptions:
    """The ``synthesize`` section as the synthesis modes read it: every value checked and every default filled in
    once, when the run starts (:meth:`from_opt`)."""
    mode: str  # a registered synthesis mode (sdedit, the paper's, by default)
    per_class: int  # patches per pseudo-class when no budget_percent is given
    budget_percent: float | None  # of the pool's pixels
    patch_size: int  # see set_patch_size
    steps: int  # sampling steps
    batch: int
    strength: float  # the fraction of the diffusion time SDEdit noises a seed patch to, in (0, 1]
    noise_sigma: float  # the std of selected_noise's Gaussian noise (8-bit levels)
    amp: str | None
    class_budget: str  # see class_budget
    seed_selection: str  # the seeds of the seeded modes: selected (the most informative kept patches) or herding
    draw_seed: int  # the seed of the random and herding draws (manual_seed by default): another draw of one kind
    herding_reference: int
    herding_features: str  # see herding_features
    informative_share: float  # of each class's herding budget, given to its most informative patches first
    coverage_candidates: int
    guidance_scale: float  # see guidance_scale
    sampler: str  # ddim (deterministic, the default) or ddpm (ancestral, the DiT/SRDD sampling)

    @classmethod
    def from_opt(cls, opt: dict) -> 'SynthesisOptions':
        """The checked ``synthesize`` section of a distillation's options ``opt`` (one line naming a bad option)."""
        syn = opt.get('synthesize') or {}
        mode = synthesis_mode(syn)
        budget = syn.get('budget_percent')
        if budget is not None and (not _number(budget) or budget <= 0):
            raise SRDistillError(f'option synthesize.budget_percent: expected a number > 0 (a share of the pool\'s '
                                 f'pixels), got {budget!r}')
        check_amp(syn.get('amp'), 'synthesize.amp')
        per_class = 16 if syn.get('per_class') is None else _integer(syn, 'per_class', 'synthesize.per_class', 16)
        return cls(
            mode=mode, per_class=per_class, budget_percent=None if budget is None else float(budget),
            patch_size=set_patch_size(opt), steps=_integer(syn, 'steps', 'synthesize.steps', 10),
            batch=_integer(syn, 'batch', 'synthesize.batch', 16),
            strength=_real(syn, 'strength', 'synthesize.strength', 0.3, lambda v: 0 < v <= 1, 'a number in (0, 1] '
                           '(the fraction of the diffusion time a seed patch is noised to)'),
            noise_sigma=_real(syn, 'noise_sigma', 'synthesize.noise_sigma', 0, lambda v: v >= 0,
                              'a number >= 0 (8-bit levels)'),
            amp=syn.get('amp') or None, class_budget=class_budget(syn),
            seed_selection=_choice(syn, 'seed_selection', 'synthesize.seed_selection', SEED_SELECTIONS, 'selected'),
            draw_seed=_integer(syn, 'draw_seed', 'synthesize.draw_seed', int(opt.get('manual_seed', 0)), low=0),
            herding_reference=_integer(syn, 'herding_reference', 'synthesize.herding_reference', 4096),
            herding_features=herding_features(opt),
            informative_share=_real(syn, 'informative_share', 'synthesize.informative_share', 0,
                                    lambda v: 0 <= v <= 1, 'a number in [0, 1]'),
            coverage_candidates=_integer(syn, 'coverage_candidates', 'synthesize.coverage_candidates', 1500),
            guidance_scale=guidance_scale(opt),
            sampler=_choice(syn, 'sampler', 'synthesize.sampler', SAMPLERS, 'ddim'))
