"""A zero-shot experiment's options (``options/report/mzsr_*.yml``, ``kind: zero_shot``): the start, the
meta-transfer arms and the checkpoint each is evaluated at, and the evaluation (sets x kernels x MZSR(n), ZSSR,
bicubic, the paper's column). Read once: every key known, every value and path checked before anything runs."""
from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from srdistill.core.errors import SRDistillError
from srdistill.core.kernels import EVAL_KERNELS
from srdistill.core.option_schema import (COUNT, LIST, NON_NEGATIVE, NON_NEGATIVE_INT, TEXT, Section, Value,
                                          check_options)
from srdistill.core.zero_shot import STEP_SCHEDULES

SCHEDULE = Value(choices=tuple(sorted(STEP_SCHEDULES)))
CHOICE_SCHEMA = Section({'photos': Value((str, ), required=True), 'every': COUNT, 'kernels': LIST,
                         'steps': NON_NEGATIVE_INT, 'crop': COUNT, 'curve_sets': LIST, 'curve_steps': LIST})
ARM_SCHEMA = Section({
    'options': TEXT, 'weights': TEXT, 'overrides': LIST, 'total_iter': COUNT, 'checkpoint': COUNT,
    'branch': Section({'of': Value((str, ), required=True), 'at': Value((int, ), low=1, required=True)}),
    'average': Section({'of': Value((str, ), required=True), 'window': Value((int, ), low=1, required=True)}),
    'choose': CHOICE_SCHEMA, 'schedule': SCHEDULE})
SCHEMA = Section({
    'name': Value((str, ), required=True), 'kind': Value(choices=('zero_shot', ), required=True),
    'scale': Value(choices=(2, 3, 4), required=True), 'threads': COUNT, 'pool': TEXT,
    'start': Section({'official': TEXT, 'weights': TEXT,
                      'train': Section({'options': Value((str, ), required=True), 'overrides': LIST,
                                        'total_iter': COUNT})}),
    'arms': Section(each=ARM_SCHEMA), 'sets': Value((list, ), required=True),
    'kernels': Section(each=TEXT), 'mzsr_steps': LIST, 'mzsr_steps_by_set': Section(each=LIST),
    'zssr': Section({'sets': LIST, 'kernels': LIST, 'max_iters': COUNT, 'crop': COUNT}),
    'ablation': Section({'arms': LIST, 'sets': LIST, 'kernels': LIST, 'schedule': SCHEDULE}),
    'blind': Section({'sets': LIST, 'arms': LIST, 'seed': NON_NEGATIVE_INT, 'default_kernel': TEXT,
                      'wrong_kernel': TEXT, 'steps': COUNT, 'estimate_iters': COUNT, 'zssr_sets': LIST,
                      'scales': LIST, 'turns': LIST, 'estimator': Value(choices=('kernelgan', 'learned')),
                      'estimator_file': TEXT, 'lr_jpeg_quality': Value((int, ), low=1, high=100),
                      'lr_noise_sigma': NON_NEGATIVE}),
    'paper': Section(each=Section(each=Section(each=Value((float, ))))), 'import': TEXT,
    'checkpoint_rule': CHOICE_SCHEMA})


@dataclass(frozen=True)
class CheckpointChoice:
    """``choose``: evaluate the arm's checkpoints saved at multiples of ``every`` by mean MZSR(``steps``) PSNR on
    held-out ``photos`` (centre ``crop``, degraded by ``kernels``) and keep the best (the earliest of equal ones)."""
    photos: Path
    every: int = 100
    kernels: tuple[str, ...] = ('gd2.0', )
    steps: int = 1
    crop: int = 256
    curve_sets: tuple[str, ...] = ()  # test sets whose curve the report shows beside (never used to choose)
    curve_steps: tuple[int, ...] = ()  # adaptation steps the curves show (besides ``steps``)

    @property
    def all_steps(self) -> tuple[int, ...]:
        return tuple(sorted({self.steps, *self.curve_steps}))


@dataclass(frozen=True)
class MetaArm:
    """One meta-transfer run from the start (a BasicSR options file and its overrides; a ``branch`` continues
    another arm from its training state at an iteration), given meta-trained ``weights``, or the running ``average``
    of another arm's checkpoints over a window; and how it is evaluated."""
    options: str | None = None
    weights: Path | None = None
    branch: tuple[str, int] | None = None  # (arm, iteration)
    average: tuple[str, int] | None = None  # (arm, window in iterations)
    overrides: tuple[str, ...] = ()
    total_iter: int | None = None  # None: the options file's
    checkpoint: int | None = None  # the iteration evaluated (None: the last, or the chosen one)
    choose: CheckpointChoice | None = None
    schedule: str = 'direct_x2'  # test-time step sizes
    by_rule: bool = False  # ``choose`` is the experiment's checkpoint rule (not the arm's own)


@dataclass(frozen=True)
class ZSSRSettings:
    sets: tuple[str, ...] = ()
    kernels: tuple[str, ...] = ()
    max_iters: int = 1000
    crop: int = 64  # the official ZSSR crop is 128


@dataclass(frozen=True)
class Ablation:
    """MZSR(0/1/10) of other arms on some sets and kernels (e.g. the paper's first-order / son-LR ablations)."""
    arms: tuple[str, ...] = ()
    sets: tuple[str, ...] = ()
    kernels: tuple[str, ...] = ()
    schedule: str = 'direct_x2'


@dataclass(frozen=True)
class Blind:
    """The blind table: each image of ``sets`` degraded by its own kernel from MZSR's task distribution (drawn in
    order from ``seed``), its kernel estimated from the LR (``estimator``: ``kernelgan``, ``estimate_iters``
    iterations, or ``learned``, the shipped estimator or ``estimator_file``), and the ``arms``
    adapted ``steps`` steps with the default, estimated, true and a wrong kernel (and, for the sensitivity, the true
    kernel with its eigenvalues scaled by ``scales`` and turned by ``turns`` degrees)."""
    sets: tuple[str, ...] = ()
    arms: tuple[str, ...] = ()
    seed: int = 0
    default_kernel: str = 'gd2.0'  # what a user without an estimate assumes
    wrong_kernel: str = 'gd0.2'  # far from every task kernel: the sensitivity
    steps: int = 10
    estimator: str = 'kernelgan'
    estimate_iters: int = 1000  # the official KernelGAN runs 3000
    estimator_file: str = ''  # learned: default the shipped weights
    lr_jpeg_quality: int | None = None  # the LRs JPEG-compressed at this quality (a real photograph's condition)
    lr_noise_sigma: float = 0.  # Gaussian noise (8-bit levels) on the LRs, before the JPEG
    zssr_sets: tuple[str, ...] = ()  # ZSSR with the estimated kernel on these
    scales: tuple[float, ...] = ()  # sensitivity: the true kernel with both eigenvalues scaled by each
    turns: tuple[float, ...] = ()  # and turned by each angle (degrees)


@dataclass(frozen=True)
class ZeroShotExperiment:
    """The checked options of a ``kind: zero_shot`` experiment file."""
    name: str
    scale: int
    start: dict | None  # one of {official: checkpoint prefix}, {weights: file}, {train: {options, ...}}
    arms: dict[str, MetaArm]
    sets: tuple[Path, ...]
    kernels: dict[str, str]  # evaluation kernel -> the arm that adapts to it (empty: no fixed-kernel table)
    pool: Path | None = None  # HR photographs the trainings read (as 192x192 crops)
    threads: int = 2
    mzsr_steps: tuple[int, ...] = (0, 1, 10)
    mzsr_steps_by_set: dict[str, tuple[int, ...]] = field(default_factory=dict)
    zssr: ZSSRSettings = field(default_factory=ZSSRSettings)
    ablation: Ablation = field(default_factory=Ablation)
    blind: Blind = field(default_factory=Blind)
    paper: dict = field(default_factory=dict)  # {set: {kernel: {method: dB}}}
    import_file: Path | None = None  # a results file of the former benchmark scripts whose rows are taken as run
    checkpoint_rule: CheckpointChoice | None = None  # the one choice every trained arm without its own follows

    kind = 'zero_shot'

    @classmethod
    def from_opt(cls, opt: dict, root: Path) -> 'ZeroShotExperiment':
        check_options(SCHEMA, opt)
        opt = copy.deepcopy(opt)
        resolve = lambda p: Path(p) if Path(p).is_absolute() else root / p  # noqa: E731
        arms = {name: _meta_arm(name, spec, resolve) for name, spec in (opt.get('arms') or {}).items()}
        arms = _inherit_branches(arms)
        rule = _choice('checkpoint_rule', opt.get('checkpoint_rule'), resolve)
        if rule:
            named = rule.kernels if 'kernels' in opt['checkpoint_rule'] else None
            arms = _apply_rule(arms, rule, named, dict(opt.get('kernels') or {}), opt.get('ablation') or {})
        needs_start = opt.get('kernels') or any(arm.options for arm in arms.values())
        exp = cls(
            name=opt['name'], scale=opt['scale'], start=_start(opt.get('start'), resolve) if needs_start else None,
            arms=arms,
            sets=tuple(resolve(s) for s in opt['sets']), kernels=dict(opt.get('kernels') or {}),
            pool=resolve(opt['pool']) if opt.get('pool') else None, threads=opt.get('threads', 2),
            mzsr_steps=tuple(opt.get('mzsr_steps', (0, 1, 10))),
            mzsr_steps_by_set={k: tuple(v) for k, v in (opt.get('mzsr_steps_by_set') or {}).items()},
            zssr=ZSSRSettings(**_tuples(opt.get('zssr'))), ablation=Ablation(**_tuples(opt.get('ablation'))),
            blind=Blind(**_tuples(opt.get('blind'))),
            paper=opt.get('paper') or {}, import_file=resolve(opt['import']) if opt.get('import') else None,
            checkpoint_rule=rule)
        exp.check()
        return exp

    @property
    def set_names(self) -> list[str]:
        return [s.name for s in self.sets]

    def steps_for(self, set_name: str) -> tuple[int, ...]:
        return self.mzsr_steps_by_set.get(set_name, self.mzsr_steps)

    def check(self) -> None:
        """Names that must refer to each other, and the folders and files the experiment reads."""
        if not self.arms:
            _fail('arms', 'expected at least one meta-transfer arm')
        if not self.kernels and not self.blind.sets:
            _fail('kernels', 'expected a mapping of evaluation kernel -> arm, e.g. {gd2.0: direct} (or a blind table)')
        for kernel, arm in self.kernels.items():
            _known(f'kernels.{kernel}', kernel, EVAL_KERNELS)
            _known(f'kernels.{kernel}', arm, self.arms)
        for option, names, known in (('zssr.sets', self.zssr.sets, self.set_names),
                                     ('zssr.kernels', self.zssr.kernels, self.kernels),
                                     ('ablation.sets', self.ablation.sets, self.set_names),
                                     ('ablation.kernels', self.ablation.kernels, self.kernels),
                                     ('ablation.arms', self.ablation.arms, self.arms),
                                     ('blind.sets', self.blind.sets, self.set_names),
                                     ('blind.zssr_sets', self.blind.zssr_sets, self.blind.sets),
                                     ('blind.arms', self.blind.arms, self.arms),
                                     ('blind.default_kernel', [self.blind.default_kernel], EVAL_KERNELS),
                                     ('blind.wrong_kernel', [self.blind.wrong_kernel], EVAL_KERNELS),
                                     ('mzsr_steps_by_set', self.mzsr_steps_by_set, self.set_names)):
            for name in names:
                _known(option, name, known)
        for arm_name, arm in self.arms.items():
            for kernel in arm.choose.kernels if arm.choose else ():
                _known(f'arms.{arm_name}.choose.kernels', kernel, EVAL_KERNELS)
            for set_name in arm.choose.curve_sets if arm.choose else ():
                _known(f'arms.{arm_name}.choose.curve_sets', set_name, self.set_names)
        for option, values, low in (('blind.scales', self.blind.scales, 0), ('blind.turns', self.blind.turns, None)):
            if any(isinstance(v, bool) or not isinstance(v, (int, float)) or (low is not None and v <= low)
                   for v in values):
                _fail(option, f'expected a list of numbers{"" if low is None else " > 0"}, got {list(values)}')
        for option, steps in (('mzsr_steps', self.mzsr_steps), *self.mzsr_steps_by_set.items()):
            if not steps or any(not isinstance(n, int) or isinstance(n, bool) or n < 0 for n in steps):
                _fail(option, f'expected a list of whole numbers >= 0 (adaptation steps), got {list(steps)}')
        for path in self.sets:
            if not (path / 'HR').is_dir():
                _fail('sets', f'{path}: no HR/ folder of benchmark images')
        if self.import_file and not self.import_file.is_file():
            _fail('import', f'{self.import_file}: no such results file')


def _fail(option: str, message: str) -> None:
    raise SRDistillError(f'option {option}: {message}')


def _tuples(section: dict | None) -> dict:
    """A section's options with its lists as tuples (the option classes are frozen)."""
    return {k: tuple(v) if isinstance(v, list) else v for k, v in (section or {}).items()}


def _known(option: str, name: str, known) -> None:
    if name not in known:
        _fail(option, f'{name!r} is not one of {sorted(known)}')


def _start(spec: dict | None, resolve) -> dict:
    """The one start of the meta-transfer: the official network's checkpoint prefix, a weights file, or a training."""
    if not spec or len(spec) != 1:
        _fail('start', 'expected exactly one of official (checkpoint prefix), weights (file) or train (options)')
    (kind, value), = spec.items()
    if kind == 'train':
        if not resolve(value['options']).is_file():
            _fail('start.train.options', f'{value["options"]}: no such options file')
        return {'train': {**value, 'overrides': tuple(value.get('overrides', ()))}}
    path = resolve(value)
    if kind == 'official' and not Path(f'{path}.index').is_file():
        _fail('start.official', f'{path}.index: no such file (the official TensorFlow checkpoint prefix)')
    if kind == 'weights' and not path.is_file():
        _fail('start.weights', f'{path}: no such file')
    return {kind: path}


def _inherit_branches(arms: dict[str, MetaArm]) -> dict[str, MetaArm]:
    """Branches and averages name an earlier trained arm and adapt with its step sizes unless they name theirs; a
    branch trains with its options and overrides, then its own."""
    out = {}
    for name, arm in arms.items():
        kind, of = ('branch', arm.branch[0]) if arm.branch else ('average', arm.average[0]) if arm.average else ('', '')
        if kind and (of not in out or not out[of].options or out[of].branch):
            _fail(f'arms.{name}.{kind}.of', f'{of!r} is not an arm trained here before it (arms: {list(out)})')
        if kind:  # adapted as its arm is, unless it says otherwise
            arm = dataclasses.replace(arm, schedule=arm.schedule or out[of].schedule)
        if arm.branch:
            arm = dataclasses.replace(arm, options=out[of].options, overrides=(*out[of].overrides, *arm.overrides))
        out[name] = arm
    return out


def _meta_arm(name: str, spec: dict, resolve) -> MetaArm:
    if spec.get('checkpoint') and spec.get('choose'):
        _fail(f'arms.{name}', 'checkpoint and choose exclude each other (a fixed iteration, or one chosen on held-out '
              'photographs)')
    choose = _choice(f'arms.{name}.choose', spec.pop('choose', None), resolve)
    if spec.get('branch') or spec.get('average'):
        return _derived_arm(name, spec, choose)
    if bool(spec.get('options')) == bool(spec.get('weights')):
        _fail(f'arms.{name}', 'expected exactly one of options (a meta-transfer to run), weights (a meta-trained '
              'network), branch or average')
    if spec.get('weights'):
        if set(spec) - {'weights', 'schedule'} or choose:
            _fail(f'arms.{name}', f'given weights take no {sorted(set(spec) - {"weights", "schedule"}) or "choose"}')
        return MetaArm(weights=resolve(spec['weights']), schedule=spec.get('schedule', 'direct_x2'))
    if spec.get('checkpoint') and spec.get('total_iter') and spec['checkpoint'] > spec['total_iter']:
        _fail(f'arms.{name}.checkpoint', f'{spec["checkpoint"]} is past total_iter {spec["total_iter"]}')
    if not resolve(spec['options']).is_file():
        _fail(f'arms.{name}.options', f'{spec["options"]}: no such options file')
    return MetaArm(**{**spec, 'overrides': tuple(spec.get('overrides', ()))}, choose=choose)


def _apply_rule(arms: dict[str, MetaArm], rule: CheckpointChoice, named: tuple[str, ...] | None,
                kernels: dict[str, str], ablation: dict) -> dict[str, MetaArm]:
    """``checkpoint_rule`` on every trained arm that fixes no checkpoint and has no ``choose`` of its own: its
    checkpoint is chosen on the rule's photographs, by MZSR on the ``named`` kernels, else on the table's kernels the
    arm adapts to, else (an arm of the ablation only) on the ablation's kernels."""
    out = {}
    for name, arm in arms.items():
        if arm.weights is None and arm.checkpoint is None and arm.choose is None:
            scored = (named or tuple(k for k, a in kernels.items() if a == name)
                      or (tuple(ablation.get('kernels') or ()) if name in (ablation.get('arms') or ()) else ()))
            if not scored:
                _fail('checkpoint_rule.kernels', f'arm {name!r} adapts to no kernel of the table; name the kernels '
                      'the rule scores it on')
            arm = dataclasses.replace(arm, choose=dataclasses.replace(rule, kernels=scored), by_rule=True)
        out[name] = arm
    return out


def _choice(option: str, choose: dict | None, resolve) -> CheckpointChoice | None:
    if not choose:
        return None
    photos = resolve(choose['photos'])
    if not photos.is_dir():
        _fail(f'{option}.photos', f'{photos}: no such folder of held-out photographs')
    return CheckpointChoice(**{**_tuples(choose), 'photos': photos})


def _derived_arm(name: str, spec: dict, choose: CheckpointChoice | None) -> MetaArm:
    """A branch (trained on from another arm's state) or an average (of another arm's checkpoints)."""
    if spec.get('branch') and spec.get('average') or spec.get('options') or spec.get('weights'):
        _fail(f'arms.{name}', 'a branch or an average takes no options or weights of its own (and not both)')
    if spec.get('average') and (spec.get('total_iter') or spec.get('overrides')):
        _fail(f'arms.{name}', 'an average is not trained: it takes no total_iter or overrides')
    if spec.get('branch') and not spec.get('total_iter'):
        _fail(f'arms.{name}.total_iter', 'required for a branch (the iteration it trains to)')
    if spec.get('branch') and spec['total_iter'] <= spec['branch']['at']:
        _fail(f'arms.{name}.total_iter', f'{spec["total_iter"]} is not past branch.at {spec["branch"]["at"]}')
    branch, average = spec.get('branch'), spec.get('average')
    return MetaArm(branch=(branch['of'], branch['at']) if branch else None,
                   average=(average['of'], average['window']) if average else None,
                   overrides=tuple(spec.get('overrides', ())), total_iter=spec.get('total_iter'),
                   checkpoint=spec.get('checkpoint'), choose=choose, schedule=spec.get('schedule'))

