"""What the report concludes from the finished runs: the arm chosen on validation (never on the test sets), what
each design choice of the selection costs (pairs of arms that differ in one choice), and the targets.

Everything here reads result dicts grouped as ``{(student, arm, budget): [result per seed]}``.
"""
from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Callable

import numpy as np

from .options import ExperimentOptions
from .results import FULL_POOL

# (arm, the arm it differs from in one choice, the choice): the built-in arms' one-step differences
BUILT_IN_PAIRS = [
    ('random_selected', 'random_real', 'draw only among the kept most-informative patches (select.keep_fraction)'),
    ('selected_real', 'random_selected', 'the most informative kept patches (spread over images) instead of uniform '
     'among them, equal class budgets'),
    ('coverage', 'selected_real', 'k-center coverage among the kept patches instead of the most informative'),
    ('random_proportional', 'random_real', 'uniform within pseudo-classes, budgets proportional to the pool'),
    ('herding', 'random_proportional', 'kernel herding (SR features) instead of uniform within each class'),
    ('distilled', 'selected_real', 'SDEdit re-synthesis of the same seed patches'),
]
TARGET_VS_RANDOM_DB = 0.15     # default arm - random_real at the target budget, every student
TARGET_VS_FULL_DB = -0.3       # default arm - full pool at the target budget (the paper's headline: SwinIR)
TARGET_EVERY_BUDGET_DB = -0.05  # default arm - random_real at every budget


def test_psnr(runs: list[dict], test_set: str) -> float:
    return float(np.mean([r['test_best'][test_set]['psnr'] for r in runs]))


def best_validation(runs: list[dict]) -> float:
    """Mean over seeds of the best validation PSNR (the checkpoint every test figure is read on)."""
    return float(np.mean([max(r['val_curve'].values()) for r in runs]))


def draw_and_kind(exp: ExperimentOptions, arm: str) -> tuple[int, dict]:
    """``(draw_seed, the rest of its spec)`` of ``arm``: arms of one kind differ only in the draw."""
    spec = exp.arm_spec(arm)
    return spec.pop('draw_seed', exp.manual_seed), spec


def draw_families(exp: ExperimentOptions) -> dict[str, str]:
    """``{arm: its family}``: arms whose settings differ only in ``draw_seed`` are draws of one kind of set; a
    family is named after its draw with the lowest seed (an arm without redraws is its own family)."""
    kinds = defaultdict(list)
    for arm in exp.arms:
        draw, spec = draw_and_kind(exp, arm)
        kinds[json.dumps(spec, sort_keys=True)].append((draw, arm))
    return {arm: min(members)[1] for members in kinds.values() for _, arm in members}


def pool_draws(exp: ExperimentOptions, groups: dict) -> tuple[dict, list[str]]:
    """``groups`` with each family's draws merged under the family's name (a draw counts like a seed), and the
    families in the order of ``exp.arms``."""
    family, pooled = draw_families(exp), defaultdict(list)
    for (student, arm, budget), runs in groups.items():
        pooled[(student, family.get(arm, arm), budget)] += [{**r, 'draw_of': arm} for r in runs]
    return dict(pooled), list(dict.fromkeys(family[a] for a in exp.arms))


def draw_values(runs: list[dict], value) -> list[float]:
    """``value(run)`` per draw of a pooled group (averaged over that draw's seeds), draws in name order."""
    per_draw = defaultdict(list)
    for r in runs:
        per_draw[r.get('draw_of', r['arm'])].append(value(r))
    return [float(np.mean(per_draw[d])) for d in sorted(per_draw)]


def validation_choice(groups: dict, arms: list[str], budget: float
                      ) -> tuple[str | None, dict[str, float], str, list[str]]:
    """``(best arm, {arm: mean best validation PSNR}, the runs averaged, arms left out)`` at ``budget``: arms are
    compared on the same (student, seed) runs only: those every compared arm has finished (over all its draws
    where ``groups`` pools draws); an arm that would leave no run in common (fewest runs first) is left out until
    some are in common."""
    done = {a: defaultdict(list) for a in arms}
    for a in arms:
        for r in (r for k, rs in groups.items() if k[1:] == (a, budget) for r in rs):
            done[a][(r['student'], r['seed'])].append(r)
    compared = sorted((a for a in arms if done[a]), key=lambda a: (-len(done[a]), arms.index(a)))
    while compared and not set.intersection(*(set(done[a]) for a in compared)):
        compared.pop()
    left_out = [a for a in arms if a not in compared]
    if not compared:
        return None, {}, 'no run has finished yet', left_out
    common = sorted(set.intersection(*(set(done[a]) for a in compared)))
    scores = {a: float(np.mean([best_validation(done[a][run]) for run in common])) for a in compared}
    what = ', '.join(f'{student} seed {seed}' for student, seed in common)
    draws = {a: len({r.get('draw_of', a) for rs in done[a].values() for r in rs}) for a in compared}
    if max(draws.values()) > 1:
        what += ' and every finished draw (' + ', '.join(f'{a} {n}' for a, n in draws.items() if n > 1) + ')'
    return max(scores, key=scores.get), scores, what, left_out


def choice_text(exp: ExperimentOptions, groups: dict, budget: float) -> str:
    """The validation choice among the arms' sets (recipe arms, which change the training, are read apart), every
    family of draws pooled (``groups`` as grouped by seed)."""
    groups, arms = pool_draws(exp, groups)
    best, scores, what, left_out = validation_choice(groups, [a for a in arms if not exp.recipe_changes(a)], budget)
    if best is None:
        return f'Not decidable yet at {budget:g} %: {what}.'
    text = (f'Mean best validation PSNR at {budget:g} % over {what} (held-out pool photographs; the test sets play '
            f'no part): {_ranking(scores)} dB. Best on validation: **{best}**')
    if 'random_real' in scores and best != 'random_real':
        text += f', {scores[best] - scores["random_real"]:+.2f} dB over random_real'
    elif best == 'random_real':
        runner_up = max((a for a in scores if a != best), key=scores.get, default=None)
        if runner_up:
            text += (f': uniformly random real patches beat every selection arm (by {scores[best] - scores[runner_up]:.2f}'
                     f' dB over the next, {runner_up})')
    shipped = exp.default_arm
    if shipped == best:
        text += f'. The options\' default_arm is {shipped} (the same).'
    elif shipped not in scores:
        text += f'. The options\' default_arm is {shipped}, with no run compared yet: nothing follows for it.'
    else:
        text += f'. The options\' default_arm is {shipped} — differs: set default_arm: {best} to follow validation.'
    if left_out:
        text += f' Not compared (no run in common with the others yet): {", ".join(left_out)}.'
    by_student = per_student_choice(groups, list(scores), budget)
    if by_student:
        text += f' Per student (the same arms, each on its own runs in common): {by_student}.'
    return text


def _ranking(scores: dict[str, float]) -> str:
    return ', '.join(f'{a} {v:.2f}' for a, v in sorted(scores.items(), key=lambda kv: -kv[1]))


def per_student_choice(groups: dict, arms: list[str], budget: float) -> str | None:
    """Each student's own validation ranking of ``arms`` at ``budget``, where more than one student ran them (the
    choice above averages the students; this says whether they agree)."""
    students = sorted({k[0] for k in groups if k[1] in arms and k[2] == budget})
    if len(students) < 2:
        return None
    parts = []
    for student in students:
        best, scores, _, _ = validation_choice({k: v for k, v in groups.items() if k[0] == student}, arms, budget)
        if best is not None:
            parts.append(f'{student}: {_ranking(scores)} dB (best {best})')
    return '; '.join(parts)


def pairs(exp: ExperimentOptions) -> list[tuple[str, str, str]]:
    """The one-choice pairs among the experiment's arms: the built-in ones, every recipe arm against the arm that
    trains on its set without the recipe, and every other custom arm against its base arm's set of the same draw
    (redraws excepted: the Draws table reads them together)."""
    arms = set(exp.arms)
    found = [(a, b, why) for a, b, why in BUILT_IN_PAIRS if a in arms and b in arms]
    for name, spec in exp.custom_arms.items():
        if 'sr_train' in spec:
            same_set = exp.set_arm(name)
            if name in arms and same_set in arms and same_set != name:
                found.append((name, same_set, f'sr_train: {spec["sr_train"]}'))
            continue
        changes = ', '.join(f'{k}: {v}' for k, v in spec.items() if k not in ('arm', 'draw_seed'))
        base = same_draw_base(exp, spec)
        if name in arms and base is not None and changes:
            found.append((name, base, changes))
    return found


def same_draw_base(exp: ExperimentOptions, spec: dict) -> str | None:
    """The experiment's arm that draws ``spec``'s built-in arm with the same ``draw_seed`` and nothing else changed
    (None if there is none): a custom arm on draw 1 is read against its base's draw 1, never against draw 0."""
    wanted = (spec.get('draw_seed', exp.manual_seed), {'arm': spec['arm']})
    return next((arm for arm in exp.arms if draw_and_kind(exp, arm) == wanted), None)


def decomposition_rows(exp: ExperimentOptions, groups: dict, sets: list[str], budget: float,
                       student: str) -> list[list[str]]:
    """One row per one-choice pair and budget where both arms ran a seed in common: the best validation and test
    PSNR difference it makes, paired seed by seed on the seeds both ran (± the standard error of the mean paired
    difference where two or more); ``budget`` (where the targets are read) first, then the others from the
    smallest."""
    rows, measures = [], _measures(sets).values()
    for b in budgets_of(groups, student, budget):
        for arm, other, why in pairs(exp):
            mine = {r['seed']: r for r in groups.get((student, arm, b), [])}
            theirs = {r['seed']: r for r in groups.get((student, other, b), [])}
            seeds = sorted(set(mine) & set(theirs))
            if seeds:
                cells = [_paired_gap([value(mine[s]) - value(theirs[s]) for s in seeds]) for value in measures]
                rows.append([f'{arm} − {other}', why, f'{b:g} %'] + cells + [', '.join(map(str, seeds))])
    return rows


def budgets_of(groups: dict, student: str, budget: float) -> list[float]:
    """The budgets ``student`` ran sets at: ``budget`` (where the targets are read) first, then from the smallest."""
    return sorted({k[2] for k in groups if k[0] == student and k[2] is not None}, key=lambda b: (b != budget, b))


def _paired_gap(diffs: list[float]) -> str:
    """Mean of paired differences, ± its standard error where there are two or more."""
    if len(diffs) < 2:
        return f'{diffs[0]:+.2f}'
    return f'{np.mean(diffs):+.2f} ± {np.std(diffs, ddof=1) / math.sqrt(len(diffs)):.2f}'


def by_student(exp: ExperimentOptions, first: str, rows_of: Callable[[str], list]) -> dict[str, list]:
    """``rows_of(student)`` of every student for which it is not empty, ``first`` (the sweep student) first."""
    found = {s: rows_of(s) for s in [first] + [s for s in exp.students if s != first]}
    return {s: rows for s, rows in found.items() if rows}


def _met(value: float, target: float) -> str:
    return f'target ≥ {target:+.2f}: {"met" if value >= target else "missed"}'


def budget_reaching(curve: dict[float, float], level: float) -> float | None:
    """The smallest budget at which the piecewise-linear (in log budget) curve reaches ``level``; None if never."""
    points = sorted(curve.items())
    for (b0, p0), (b1, p1) in zip([(None, None)] + points, points):
        if p1 >= level:
            if b0 is None or p0 >= level:
                return b1
            t = (level - p0) / (p1 - p0)
            return float(math.exp(math.log(b0) + t * (math.log(b1) - math.log(b0))))
    return None


def targets_text(exp: ExperimentOptions, groups: dict, sets: list[str], budget: float, student: str) -> list[str]:
    """The distillation study's targets on the default arm, one line each (best-on-validation checkpoints, mean of seeds and of
    every family's draws)."""
    default = exp.default_arm
    vs_random = default != 'random_real'  # random_real read against itself would be vacuous
    groups, _ = pool_draws(exp, groups)
    lines = []
    for s_name in sorted({k[0] for k in groups}):
        arm, rnd = groups.get((s_name, default, budget)), groups.get((s_name, 'random_real', budget))
        full = groups.get((s_name, FULL_POOL, None))
        parts = []
        for s in sets:
            if arm and rnd and vs_random:
                d = test_psnr(arm, s) - test_psnr(rnd, s)
                parts.append(f'{s}: − random_real {d:+.2f} dB ({_met(d, TARGET_VS_RANDOM_DB)})')
            if arm and full:
                d = test_psnr(arm, s) - test_psnr(full, s)
                parts.append(f'{s}: − full pool {d:+.2f} dB ({_met(d, TARGET_VS_FULL_DB)})')
        if parts:
            lines.append(f'{s_name}, {default} at {budget:g} %: ' + '; '.join(parts))
    mine = {k[2]: test_psnr(v, sets[0]) for k, v in groups.items() if k[:2] == (student, default)}
    rnd = {k[2]: test_psnr(v, sets[0]) for k, v in groups.items() if k[:2] == (student, 'random_real')}
    common = sorted(set(mine) & set(rnd))
    if common and vs_random:
        worst = min(common, key=lambda b: mine[b] - rnd[b])
        lines.append(f'{student}, every budget measured ({", ".join(f"{b:g} %" for b in common)}), {sets[0]}: worst '
                     f'{default} − random_real {mine[worst] - rnd[worst]:+.2f} dB at {worst:g} % '
                     f'({_met(mine[worst] - rnd[worst], TARGET_EVERY_BUDGET_DB)})')
    if budget in rnd and len(mine) > 1 and vs_random:
        reach = budget_reaching(mine, rnd[budget])
        verdict = ('never reached in the budgets measured' if reach is None
                   else f'{reach:.2f} % (target ≤ {budget / 2:.2f} %: {"met" if reach <= budget / 2 else "missed"})')
        lines.append(f'{student}, data efficiency on {sets[0]}: the budget at which {default} reaches random_real '
                     f'@ {budget:g} % ({rnd[budget]:.2f} dB): {verdict}')
    if not vs_random:
        lines.append('The default arm is random_real: the targets against random_real are not applicable')
    if lines:
        return lines
    if any(k[1:] == (default, budget) for k in groups):
        return [f'Not measurable in this experiment: {default} at {budget:g} % has no random_real run at that budget '
                'and no finished full pool to be read against']
    return [f'Not measurable yet: {default} at {budget:g} % has not finished']


def _mean_sd(values: list[float]) -> str:
    return f'{np.mean(values):.2f} ± {np.std(values, ddof=1):.2f} ({min(values):.2f}–{max(values):.2f})'


def _measures(sets: list[str]) -> dict:
    """``{'validation': run -> best validation PSNR, set: run -> test PSNR of the best checkpoint}``."""
    measures = {'validation': lambda r: max(r['val_curve'].values())}
    measures.update({s: (lambda r, s=s: r['test_best'][s]['psnr']) for s in sets})
    return measures


def _per_draw(runs: list[dict], sets: list[str]) -> dict[str, list[float]]:
    """Best validation and test PSNR per draw of a pooled group: ``{'validation': [...], set: [...]}``."""
    return {what: draw_values(runs, value) for what, value in _measures(sets).items()}


def draw_rows(exp: ExperimentOptions, groups: dict, sets: list[str], budget: float, student: str) -> list[list[str]]:
    """One row per family of draws and budget with at least two draws finished: PSNR mean ± sample std over its
    draws (min–max); ``budget`` first, then the others from the smallest."""
    pooled, families = pool_draws(exp, groups)
    rows = []
    for b in budgets_of(groups, student, budget):
        for family in families:
            values = _per_draw(pooled.get((student, family, b), []), sets)
            if len(values['validation']) > 1:
                rows.append([family, f'{b:g} %', str(len(values['validation']))]
                            + [_mean_sd(v) for v in values.values()])
    return rows


def random_reference(exp: ExperimentOptions, arm: str) -> str:
    """The arm a family of draws is read against: random_real trained with the same SR recipe when ``arm`` has one
    and another set (herding under RGB permutation against random_real under it), else random_real itself."""
    mine = exp.recipe_changes(arm)
    if not mine or exp.arm_spec(arm)['arm'] == 'random_real':
        return 'random_real'
    same = [a for a in exp.arms if exp.arm_spec(a)['arm'] == 'random_real' and exp.recipe_changes(a) == mine]
    return draw_families(exp)[same[0]] if same else 'random_real'


def draw_gap_text(exp: ExperimentOptions, groups: dict, sets: list[str], budget: float, student: str) -> str | None:
    """Each family of draws against random_real's (under the same SR recipe, ``random_reference``): the gap of their
    means over draws, with the standard error of the difference (sample std over draws), at every budget where a
    pair of families has two draws each (``budget`` first); None where none has."""
    pooled, families = pool_draws(exp, groups)
    texts = [_draw_gaps_at(exp, pooled, families, sets, b, student) for b in budgets_of(groups, student, budget)]
    return ' '.join(t for t in texts if t) or None


def _draw_gaps_at(exp: ExperimentOptions, pooled: dict, families: list[str], sets: list[str], budget: float,
                  student: str) -> str | None:
    """The sentence of ``draw_gap_text`` at one budget (``pooled, families`` as ``pool_draws`` returns them)."""
    sentences = []
    for family in families:
        reference = random_reference(exp, family)
        mine = _per_draw(pooled.get((student, family, budget), []), sets)
        rnd = _per_draw(pooled.get((student, reference, budget), []), sets)
        if family == reference or min(len(mine['validation']), len(rnd['validation'])) < 2:
            continue
        parts = []
        for what in mine:
            a, b = np.array(mine[what]), np.array(rnd[what])
            gap = a.mean() - b.mean()
            se = math.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b))
            parts.append(f'{what} {gap:+.2f} ± {se:.2f} dB ({"within" if abs(gap) < 2 * se else "beyond"} two '
                         'standard errors)')
        sentences.append(f'{family} − {reference} over {len(mine["validation"])} / {len(rnd["validation"])} draws: '
                         + '; '.join(parts))
    if not sentences:
        return None
    return (f'{student}, {budget:g} %, mean of each draw\'s seeds, ± the standard error of the difference: '
            + '. '.join(sentences) + '.')


def recipe_text(exp: ExperimentOptions, groups: dict, sets: list[str], budget: float, student: str) -> str | None:
    """Each family of recipe arms (custom arms with ``sr_train`` overrides) against the same sets trained without
    the recipe, paired draw by draw (same set, same seeds): mean difference ± its standard error over the draws."""
    family, measures = draw_families(exp), _measures(sets)
    paired = defaultdict(lambda: defaultdict(list))  # family -> what -> [difference per draw]
    for arm in (a for a in exp.arms if exp.recipe_changes(a) and exp.set_arm(a) != a):
        b = None if exp.is_full_pool(arm) else budget
        mine, theirs = groups.get((student, arm, b), []), groups.get((student, exp.set_arm(arm), b), [])
        seeds = {r['seed'] for r in mine} & {r['seed'] for r in theirs}
        for what, value in measures.items() if seeds else ():
            gap = np.mean([value(r) for r in mine if r['seed'] in seeds]) - np.mean(
                [value(r) for r in theirs if r['seed'] in seeds])
            paired[family[arm]][what].append(float(gap))
    sentences = []
    for name, diffs in paired.items():
        n = len(diffs['validation'])
        parts = [f'{what} {_paired_gap(d)} dB' for what, d in diffs.items()]
        sentences.append(f'{name} ({exp.recipe_changes(name)}) − the same set{"s" if n > 1 else ""} without it, '
                         f'paired over {n} draw{"s" if n > 1 else ""}: ' + '; '.join(parts))
    sentences += full_pool_gaps(exp, groups, sets, budget, student)
    if not sentences:
        return None
    se = any(len(d['validation']) > 1 for d in paired.values())
    return (f'{student}, {budget:g} %, best validation and test PSNR, each pair on one set and the same SR seeds'
            + (' (± standard error of the mean paired difference)' if se else '') + ': ' + '. '.join(sentences) + '.')


def full_pool_gaps(exp: ExperimentOptions, groups: dict, sets: list[str], budget: float, student: str) -> list[str]:
    """Per recipe on the full pool (``{arm: full_pool, sr_train: ...}``): each family of sets trained under the same
    recipe minus the full pool under it (means over draws and seeds), beside the same gap without the recipe."""
    pooled, families = pool_draws(exp, groups)
    plain_full = pooled.get((student, FULL_POOL, None))
    sentences = []
    for full_arm in (a for a in families if exp.is_full_pool(a) and pooled.get((student, a, None))):
        full = pooled[(student, full_arm, None)]
        same_recipe = exp.recipe_changes(full_arm)
        for family in (f for f in families if not exp.is_full_pool(f) and exp.recipe_changes(f) == same_recipe):
            mine, plain = pooled.get((student, family, budget)), pooled.get((student, exp.set_arm(family), budget))
            if not mine:
                continue
            gaps = [f'{s} {test_psnr(mine, s) - test_psnr(full, s):+.2f} dB' for s in sets]
            text = (f'{family} ({_draws(mine)}) − {full_arm} (the full pool under the same recipe, {len(full)} '
                    'seed(s)): ' + ', '.join(gaps))
            if plain and plain_full:
                text += (f' (without the recipe, {exp.set_arm(family)} ({_draws(plain)}) − {FULL_POOL}: '
                         + ', '.join(f'{s} {test_psnr(plain, s) - test_psnr(plain_full, s):+.2f} dB' for s in sets)
                         + ')')
            sentences.append(text)
    return sentences


def _draws(runs: list[dict]) -> str:
    n = len({r.get('draw_of', r['arm']) for r in runs})
    return f'{n} draw{"s" if n > 1 else ""}'
