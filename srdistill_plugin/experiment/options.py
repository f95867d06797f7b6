"""A distillation experiment's options (``options/report/*.yml``), read once when it is loaded: every key known,
every value checked (one line naming the option or file) and every default filled in, before anything runs."""
from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from basicsr.utils.registry import ARCH_REGISTRY

from srdistill.core.errors import SRDistillError
from srdistill.core.option_schema import (ANY, COUNT, INTEGER, LIST, NON_NEGATIVE, NON_NEGATIVE_INT, OPEN, POSITIVE,
                                          TEXT, Section, Value, check_options)
from srdistill.core.options_file import read_options
from srdistill_plugin.data.hr_only_dataset import check_augmentations
from srdistill_plugin.distill.options import check_distill_options, set_patch_size
from srdistill_plugin.distill.registry import SYNTHESIS_REGISTRY, strategy_class
from srdistill_plugin.engine.option_schema import signature_section

from .results import FULL_POOL
from .zero_shot_options import ZeroShotExperiment

# arm -> the registered synthesis mode whose set it trains on
ARM_MODES = {cls.arm or cls.mode: cls.mode for _, cls in SYNTHESIS_REGISTRY}

KIND = Value(choices=('distillation', 'zero_shot'))
REQUIRED = ('name', 'scale', 'pool', 'test_sets', 'arms', 'budgets_percent', 'seeds', 'students', 'distill')
SR_TRAIN_RULES = {'total_iter': COUNT, 'batch_size': COUNT, 'gt_size': COUNT, 'lr': POSITIVE,
                  'ema_decay': Value((float, ), low=0, below=1), 'milestones_fraction': LIST, 'eval_every': COUNT,
                  'patience_evals': NON_NEGATIVE_INT, 'max_iter': INTEGER,
                  'augment': Section({'rgb_permute': ANY, 'mixup': ANY})}  # their values: check_augmentations
# what a custom arm's ``sr_train`` recipe may change (never the iteration schedule, which every arm shares)
RECIPE_KEYS = ('augment', 'ema_decay', 'gt_size', 'batch_size', 'lr')
# the keys of an experiment file and the kinds of the ones not checked further below
EXPERIMENT_SCHEMA = Section({
    'name': Value((str, ), required=True), 'kind': KIND, 'scale': Value(choices=(2, 3, 4), required=True),
    **{key: Value((list, ), required=True) for key in ('test_sets', 'arms', 'budgets_percent', 'seeds')},
    'pool': Value((str, ), required=True), 'distill': Value((dict, ), required=True),
    'students': Section(each=Section({'network_g': OPEN})),
    'custom_arms': Section(each=Section({'arm': ANY, 'sr_train': Section({k: SR_TRAIN_RULES[k] for k in RECIPE_KEYS})},
                                        open=True)),  # open: synthesize options, checked with each arm's set
    'default_arm': TEXT, 'sweep_student': TEXT, 'student_budgets_percent': LIST,
    'sr_train': Section(SR_TRAIN_RULES), 'manual_seed': INTEGER, 'threads': COUNT,
    'convergence': Section({'min_gain_db': NON_NEGATIVE, 'window_fraction': Value((float, ), above=0, high=1)}),
    'validation': Section({'holdout_images': COUNT, 'crop_size': COUNT}),
    'full_pool': Section({'crop_size': COUNT, 'step': COUNT})})


@dataclass(frozen=True)
class TrainingRecipe:
    """``sr_train``: how every student is trained (a custom arm's ``sr_train`` changes some of ``RECIPE_KEYS``)."""
    total_iter: int = 12000
    batch_size: int = 16
    gt_size: int = 64  # HR crop side
    lr: float = 5e-4  # Adam, halved at each of milestones_fraction x total_iter
    ema_decay: float = 0.999
    milestones_fraction: tuple[float, ...] = (0.6, 0.85)
    eval_every: int = 1000  # a checkpoint and a validation PSNR every this many iterations
    patience_evals: int = 0  # > 0: stop once this many evaluations gained nothing (convergence.min_gain_db)
    max_iter: int | None = None  # past total_iter while not converged (None: total_iter)
    augment: dict = field(default_factory=dict)  # {rgb_permute: p, mixup: {prob: p, alpha: a}}


@dataclass(frozen=True)
class Convergence:
    """A run is converged when its validation PSNR gains < ``min_gain_db`` over its last ``window_fraction``."""
    min_gain_db: float = 0.05
    window_fraction: float = 0.2


@dataclass(frozen=True)
class Validation:
    """The last ``holdout_images`` pool photographs, centre crops of ``crop_size``: every checkpoint choice."""
    holdout_images: int = 4
    crop_size: int = 256


@dataclass(frozen=True)
class PoolCrops:
    """The full pool's LMDB: sub-images of ``crop_size`` every ``step`` pixels."""
    crop_size: int = 192
    step: int = 192


@dataclass(frozen=True)
class ExperimentOptions:
    """Every option of one experiment, checked (:meth:`from_opt`); see ``options/report/sunhays80_x4.yml``."""
    kind = 'distillation'  # (a class constant, not an option field)
    name: str
    scale: int
    pool: str  # a folder of HR photographs, relative to the root
    test_sets: list[str]  # folders with HR/ and LR_bicubic/X<scale>/
    arms: list[str]  # registered arms (ARM_MODES) or names under custom_arms
    budgets_percent: list[float]  # of the pool's pixels
    seeds: list[int]  # of the SR training
    students: dict[str, dict]  # name -> {network_g: a BasicSR architecture's options}
    distill: dict  # the distillation options every set starts from (checked as each arm runs them)
    default_arm: str  # the arm the targets are read on
    sweep_student: str  # the student trained at every budget
    student_budgets_percent: list[float]  # the other students' budgets
    custom_arms: dict[str, dict] = field(default_factory=dict)  # name -> {arm: <built-in>, <option>: value, ...}
    sr_train: TrainingRecipe = field(default_factory=TrainingRecipe)
    manual_seed: int = 0  # of the distillation
    threads: int = 2
    convergence: Convergence = field(default_factory=Convergence)
    validation: Validation = field(default_factory=Validation)
    full_pool: PoolCrops = field(default_factory=PoolCrops)

    @classmethod
    def from_opt(cls, opt: dict, root: Path) -> 'ExperimentOptions':
        """The checked options of the experiment file's contents ``opt``, its folders relative to ``root``."""
        if 'students' not in opt:
            _fail('students', 'required, expected a mapping of name -> {network_g: ...}')
        check_options(EXPERIMENT_SCHEMA, opt)
        opt = copy.deepcopy(opt)
        _check_folders(opt, root)
        _check_arms(opt)
        _check_students(opt)
        options = cls(
            **{key: opt[key] for key in REQUIRED}, default_arm=opt.get('default_arm', opt['arms'][0]),
            sweep_student=opt.get('sweep_student', next(iter(opt['students']))),
            student_budgets_percent=opt.get('student_budgets_percent', opt['budgets_percent'][:1]),
            custom_arms=opt.get('custom_arms') or {}, sr_train=_sr_training(opt),
            manual_seed=opt.get('manual_seed', 0), threads=opt.get('threads', 2),
            convergence=Convergence(**opt.get('convergence') or {}),
            validation=Validation(**opt.get('validation') or {}), full_pool=PoolCrops(**opt.get('full_pool') or {}))
        options.check_choices()
        _check_sets(options)
        return options

    def check_choices(self) -> None:
        """``default_arm`` an arm with a set, ``sweep_student`` a student, ``student_budgets_percent`` among the
        budgets."""
        if self.default_arm not in self.arms_on_sets():
            _fail('default_arm', f'{self.default_arm!r} is not one of the arms that make a set: '
                  f'{self.arms_on_sets()}')
        if self.sweep_student not in self.students:
            _fail('sweep_student', f'{self.sweep_student!r} is not one of the students {list(self.students)}')
        for b in self.student_budgets_percent:
            if b not in self.budgets_percent:
                _fail('student_budgets_percent', f'{b!r} is not one of budgets_percent {self.budgets_percent}')

    def arm_spec(self, arm: str) -> dict:
        """``arm`` as ``{arm: <built-in arm>, <synthesize option>: value, ..., sr_train: {...}}``: a built-in arm
        (``ARM_MODES``) is ``{arm: arm}``, a custom one its entry in ``custom_arms``."""
        return dict(self.custom_arms.get(arm) or {'arm': arm})

    def arm_mode(self, arm: str) -> tuple[str, dict]:
        """``(synthesis mode, synthesize overrides)`` of ``arm`` (its ``sr_train`` recipe is not the set's)."""
        spec = self.arm_spec(arm)
        spec.pop('sr_train', None)
        return ARM_MODES[spec.pop('arm')], spec

    def recipe_changes(self, arm: str) -> dict:
        """The SR-training changes of ``arm`` (``custom_arms.<arm>.sr_train``; empty for an arm that changes the
        set)."""
        return self.arm_spec(arm).get('sr_train') or {}

    def recipe(self, arm: str) -> TrainingRecipe:
        """The SR training of ``arm``: ``sr_train`` with the arm's recipe changes."""
        return dataclasses.replace(self.sr_train, **self.recipe_changes(arm))

    def is_full_pool(self, arm: str) -> bool:
        """Whether ``arm`` trains on the whole pool (``full_pool``, or a custom arm ``{arm: full_pool, sr_train:
        ...}`` that trains it under a recipe)."""
        return self.arm_spec(arm)['arm'] == FULL_POOL

    def arms_on_sets(self) -> list[str]:
        """The arms that train on a distilled set (every arm but those on the full pool), in order."""
        return [a for a in self.arms if not self.is_full_pool(a)]

    def uses_generator(self, arm: str) -> bool:
        """Whether ``arm``'s set is sampled from the fine-tuned generator (so it depends on ``finetune``)."""
        return strategy_class(self.arm_mode(arm)[0]).needs_generator

    def set_arm(self, arm: str) -> str:
        """The arm whose distilled set ``arm`` trains on: a custom arm that only changes the SR training
        (``sr_train``) trains on the set of the arm with the same set options (the built-in arm, or the custom arm
        that differs from it by ``sr_train`` alone), so both read one set; any other arm is its own."""
        spec = self.arm_spec(arm)
        if not spec.pop('sr_train', None):
            return arm
        if set(spec) == {'arm'}:
            return spec['arm']
        same = [name for name, other in self.custom_arms.items() if other == spec]
        return same[0] if same else arm

    def set_arms(self) -> list[str]:
        """The arms whose distilled sets the experiment makes (a recipe arm trains on another arm's set)."""
        return list(dict.fromkeys(self.set_arm(arm) for arm in self.arms_on_sets()))


def load_experiment(opt_path: str, root: Path) -> ExperimentOptions | ZeroShotExperiment:
    """The checked options of the experiment file ``opt_path`` (``_base_`` files merged), by its ``kind``:
    distillation (the default) or zero_shot."""
    opt = read_options(opt_path)
    KIND.check(opt.get('kind', 'distillation'), 'kind')
    if opt.get('kind') == 'zero_shot':
        return ZeroShotExperiment.from_opt(opt, root)
    return ExperimentOptions.from_opt(opt, root)


def _fail(option: str, message: str) -> None:
    raise SRDistillError(f'option {option}: {message}')


def _check_recipe(sr: dict, prefix: str, scale: int) -> None:
    """The augmentations and the crop size of ``sr`` (an experiment's or an arm's recipe; the kinds: the schema)."""
    check_augmentations(sr.get('augment') or {}, f'{prefix}.augment.')
    if sr.get('gt_size', scale) % scale:
        _fail(f'{prefix}.gt_size', f'{sr["gt_size"]} is not a multiple of scale {scale}')


def _check_folders(opt: dict, root: Path) -> None:
    """The pool and every test set's HR and bicubic LR folders exist."""
    if not (root / opt['pool']).is_dir():
        _fail('pool', f'{root / opt["pool"]} is not a folder of HR images')
    for folder in opt['test_sets']:
        for sub in ('HR', f'LR_bicubic/X{opt["scale"]}'):
            if not (root / folder / sub).is_dir():
                _fail('test_sets', f'{root / folder / sub} does not exist')


def _check_arms(opt: dict) -> None:
    """``custom_arms``, ``arms`` (registered or custom), ``budgets_percent`` and ``seeds``."""
    custom = opt.get('custom_arms') or {}
    bases = (*ARM_MODES, FULL_POOL)
    for name, spec in custom.items():
        if name in bases or not isinstance(spec, dict) or spec.get('arm') not in bases:
            _fail(f'custom_arms.{name}', f'expected a new name with arm: one of {sorted(ARM_MODES)} or '
                  f'{FULL_POOL}, got {spec!r}')
        if spec['arm'] == FULL_POOL and set(spec) != {'arm', 'sr_train'}:
            _fail(f'custom_arms.{name}', f'an arm on the {FULL_POOL} changes only its SR training: expected {{arm: '
                  f'{FULL_POOL}, sr_train: {{...}}}}, got {spec!r}')
    unknown = [a for a in opt['arms'] if a not in ARM_MODES and a not in custom]
    if unknown or not opt['arms']:
        _fail('arms', f'unknown arm {unknown[0] if unknown else None!r}; expected some of {sorted(ARM_MODES)} '
              'or a name defined under custom_arms')
    for b in opt['budgets_percent']:
        if isinstance(b, bool) or not isinstance(b, (int, float)) or not 0 < b < 100:
            _fail('budgets_percent', f'{b!r} is not a percentage of the pool between 0 and 100 (exclusive; the '
                  'full pool is always trained)')
    if not opt['budgets_percent']:
        _fail('budgets_percent', 'empty')
    if not opt['seeds'] or any(isinstance(s, bool) or not isinstance(s, int) for s in opt['seeds']):
        _fail('seeds', f'expected a list of integers, got {opt["seeds"]!r}')


def _check_students(opt: dict) -> None:
    """Every student a registered BasicSR architecture with its own arguments, at the experiment's scale."""
    for name, student in opt['students'].items():
        net = (student or {}).get('network_g') or {}
        if net.get('type') not in ARCH_REGISTRY:
            _fail(f'students.{name}.network_g.type', f'{net.get("type")!r} is not in BasicSR\'s ARCH_REGISTRY')
        check_options(signature_section(ARCH_REGISTRY.get(net['type'])), net, f'students.{name}.network_g')
        net_scale = net.get('upscale', net.get('scale'))
        if net_scale != opt['scale']:
            _fail(f'students.{name}.network_g.upscale',
                  f'{net_scale!r} differs from the distilled sets\' scale {opt["scale"]}')


def _sr_training(opt: dict) -> TrainingRecipe:
    """``sr_train`` over its defaults (``max_iter`` at least ``total_iter``), every custom arm's recipe checked."""
    recipe = TrainingRecipe(**opt.get('sr_train') or {})
    _check_recipe(dataclasses.asdict(recipe), 'sr_train', opt['scale'])
    max_iter = recipe.total_iter if recipe.max_iter is None else recipe.max_iter
    if max_iter < recipe.total_iter:
        _fail('sr_train.max_iter', f'expected an integer >= total_iter ({recipe.total_iter}), got {max_iter!r}')
    for name, spec in (opt.get('custom_arms') or {}).items():
        _check_recipe(spec.get('sr_train') or {}, f'custom_arms.{name}.sr_train', opt['scale'])
    return dataclasses.replace(recipe, max_iter=max_iter)


def _check_sets(options: ExperimentOptions) -> None:
    """The distillation options, and each arm's as it will run: its synthesis mode and overrides, with patches no
    smaller than its training crops."""
    check_distill_options(options.distill)
    for arm in options.arms_on_sets():
        mode, overrides = options.arm_mode(arm)
        arm_distill = {**options.distill, 'scale': options.scale,
                       'synthesize': {**options.distill.get('synthesize', {}), **overrides, 'mode': mode}}
        check_distill_options(arm_distill)
        patch, gt_size = set_patch_size(arm_distill), options.recipe(arm).gt_size
        if patch < gt_size:
            _fail(f'custom_arms.{arm}' if arm in options.custom_arms else 'sr_train.gt_size',
                  f'the set of {arm} has {patch}-px patches, smaller than its training crops (gt_size {gt_size})')
