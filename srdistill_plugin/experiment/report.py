"""The experiment's report: tables and figures from the finished runs, as ``report.md`` (PNGs beside it) and a
self-contained ``report.html`` (the same content, PNGs embedded)."""
from __future__ import annotations

import base64
import html
import math
import re
import shutil
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import cv2
import markdown
import matplotlib
import numpy as np

from srdistill.core.atomic_io import atomic_write_text
from srdistill.core.json_store import JsonStore

from . import data, verdicts
from .options import ExperimentOptions
from .results import FULL_POOL, convergence_gain
from .evaluate import distilled_set_diagnostics, evaluate, load_student, paired_set, super_resolve

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the file-only backend)

TIME_TOLERANCE_DB = 0.2  # "within 0.2 dB of its plateau"


def mean_spread(values: list[float]) -> tuple[float, float]:
    """Mean and half the max-min range (0 for one value)."""
    return float(np.mean(values)), float((max(values) - min(values)) / 2)


def group_results(results: list[dict]) -> dict:
    """``{(student, arm, budget): [result per seed]}``."""
    groups = defaultdict(list)
    for r in results:
        groups[(r['student'], r['arm'], r['budget'])].append(r)
    return groups


def mean_curve(runs: list[dict]) -> dict[int, float]:
    """Validation PSNR per iteration, averaged over seeds (iterations all seeds have)."""
    iters = set.intersection(*(set(r['val_curve']) for r in runs))  # JSON keys: iterations as strings
    return {int(it): float(np.mean([r['val_curve'][it] for r in runs])) for it in sorted(iters, key=int)}


def seconds_to_plateau(curve: dict[int, float], seconds_per_iter: float) -> float:
    """Training time until the curve first comes within ``TIME_TOLERANCE_DB`` of its own maximum."""
    peak = max(curve.values())
    first = min(it for it, v in curve.items() if v >= peak - TIME_TOLERANCE_DB)
    return first * seconds_per_iter


def sign_changes(points: list[tuple[float, float]]) -> list[tuple[float, float, int]]:
    """Where a difference changes sign along sorted ``(x, difference)`` points: ``(x_before, x_after, new_sign)``."""
    changes, last = [], None
    for x, d in points:
        sign = 1 if d > 0 else -1
        if last is not None and sign != last[1]:
            changes.append((last[0], x, sign))
        last = (x, sign)
    return changes


def describe_crossing(name: str, other: str, points: list[tuple[float, float]], unit: str, fmt) -> str:
    """One clause: ``name`` above/below ``other`` along ``points`` and where it crosses (``fmt`` formats an x)."""
    if not points:
        return f'{name} vs {other}: no common points yet'
    side = {1: 'above', -1: 'below'}
    spans = ', '.join(f'{fmt(x)}: {d:+.2f}' for x, d in points)
    changes = sign_changes(points)
    if not changes:
        where = f'{side[1 if points[0][1] > 0 else -1]} at every {unit} measured'
    else:
        where = '; '.join(f'crosses to {side[sg]} between {fmt(a)} and {fmt(b)}' for a, b, sg in changes)
    return f'{name} vs {other}: {where} ({spans} dB)'


class Report:
    """Markdown with figures as files beside it, and the same as one self-contained HTML page (rendered by
    python-markdown, the figures embedded)."""

    def __init__(self, folder: Path):
        self.folder, self.lines = folder, []

    def heading(self, text: str, level: int = 2) -> None:
        self.lines += ['#' * level + ' ' + text, '']

    def text(self, text: str) -> None:
        self.lines += [text, '']

    def table(self, header: list[str], rows: list[list[str]]) -> None:
        self.lines += ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
        self.lines += ['| ' + ' | '.join(row) + ' |' for row in rows] + ['']

    def figure(self, name: str, caption: str) -> None:
        self.lines += [f'![{caption}]({name})\n\n*{caption}*', '']

    def markdown(self) -> str:
        return '\n'.join(self.lines)

    def html(self, title: str) -> str:
        def embedded(match: re.Match) -> str:
            return f'src="data:image/png;base64,{base64.b64encode((self.folder / match[1]).read_bytes()).decode()}"'

        body = re.sub(r'src="([^"/]+\.png)"', embedded, markdown.markdown(self.markdown(), extensions=['tables']))
        return (f'<!DOCTYPE html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title><style>'
                'body{font-family:sans-serif;max-width:1100px;margin:auto}table{border-collapse:collapse}'
                'td,th{border:1px solid #bbb;padding:2px 6px;text-align:right}img{max-width:100%}</style></head>'
                f'<body>\n{body}\n</body></html>')


def _budget_label(budget: float | None) -> str:
    return 'full pool' if budget is None else f'{budget:g} %'


def plot_psnr_vs_budget(path: Path, groups: dict, student: str, arms: list[str], sets: list[str],
                        bicubic: dict) -> None:
    fig, axes = plt.subplots(1, len(sets), figsize=(5.5 * len(sets), 4), squeeze=False)
    for ax, s in zip(axes[0], sets):
        for arm in arms:
            points = sorted((b, [r['test_best'][s]['psnr'] for r in rs]) for (st, a, b), rs in groups.items()
                            if st == student and a == arm and b is not None)
            if points:
                xs = [b for b, _ in points]
                means, spreads = zip(*(mean_spread(v) for _, v in points))
                ax.errorbar(xs, means, yerr=spreads, marker='o', capsize=3, label=arm)
        full = groups.get((student, FULL_POOL, None))
        if full:
            m, sp = mean_spread([r['test_best'][s]['psnr'] for r in full])
            ax.axhline(m, color='k', label=f'full pool ({m:.2f} ± {sp:.2f})')
        ax.axhline(bicubic[s]['psnr'], color='grey', linestyle=':', label='bicubic')
        ax.set(xscale='log', xlabel='budget (% of the pool\'s pixels)', ylabel='PSNR (Y, dB)', title=f'{s}, {student}')
        ax.grid(alpha=.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def arm_keys(exp: ExperimentOptions, arms: list[str], budget: float) -> list[tuple[str, float | None]]:
    """``(arm, budget)`` of the full pool and each arm at ``budget`` (an arm on the full pool: at None)."""
    return [(FULL_POOL, None)] + [(a, None if exp.is_full_pool(a) else budget) for a in arms]


def plot_curves(path: Path, groups: dict, student: str, keys: list[tuple[str, float | None]]) -> None:
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for arm, b in keys:
        runs = groups.get((student, arm, b))
        if runs:
            curve = mean_curve(runs)
            ax.plot(list(curve), list(curve.values()), marker='.', label=f'{arm} ({_budget_label(b)})')
    ax.set(xlabel='iteration', ylabel='validation PSNR (Y, dB)', title=f'{student}: PSNR vs iteration (mean of seeds)')
    ax.grid(alpha=.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def plot_gradient_energy(path: Path, diagnostics: dict, budget: float, arms: list[str]) -> None:
    fig, ax = plt.subplots(figsize=(6.5, 4))
    pool = diagnostics['pool']['gradient_energy']
    bins = np.linspace(0, np.percentile(pool, 99.5) * 1.5, 40)
    ax.hist(pool, bins=bins, density=True, histtype='stepfilled', alpha=.3, color='k', label='pool (random patches)')
    for arm in arms:
        d = diagnostics.get(f'{arm}_{budget:g}pct')
        if d:
            ax.hist(d['gradient_energy'], bins=bins, density=True, histtype='step', label=arm)
    ax.set(xlabel='mean Sobel magnitude of a patch', ylabel='density', title=f'gradient energy, {budget:g} % sets')
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def zoomed_crops(path: Path, experiment, groups: dict, student: str, budget: float, arms: list[str]) -> list[str]:
    """One benchmark region (the most detailed 48 px of the first test image) from bicubic, every arm's best
    seed-0 network, and HR, side by side; returns the column labels (a run kept as its result alone, without its
    checkpoints, has no column)."""
    scale = experiment.scale
    folder = experiment.root / experiment.exp.test_sets[0]
    name, lr, hr = paired_set(str(folder), scale)[0]
    grey = cv2.cvtColor(hr, cv2.COLOR_BGR2GRAY).astype(np.float32)
    energy = cv2.boxFilter(np.abs(cv2.Laplacian(grey, cv2.CV_32F)), -1, (48, 48))
    y, x = np.unravel_index(np.argmax(energy[24:-24, 24:-24]), energy[24:-24, 24:-24].shape)
    box = (slice(y, y + 48), slice(x, x + 48))
    columns, labels = [super_resolve(None, lr, scale)[box]], ['bicubic']
    for arm, b in arm_keys(experiment.exp, arms, budget):
        r = min(groups.get((student, arm, b), []), key=lambda run: run['seed'], default=None)
        checkpoint = experiment.checkpoint(r['run'], r['best_iter']) if r else None
        if checkpoint and checkpoint.is_file():
            net = load_student(experiment.exp.students[student]['network_g'], checkpoint)
            columns.append(super_resolve(net, lr, scale)[box])
            labels.append(arm)
    columns.append(hr[box])
    labels.append('HR')
    tiles = []
    for crop, label in zip(columns, labels):
        tile = np.full((164, 148, 3), 255, np.uint8)
        tile[2:146, 2:146] = cv2.resize(crop, (144, 144), interpolation=cv2.INTER_NEAREST)
        cv2.putText(tile, label, (4, 159), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
        tiles.append(tile)
    cv2.imwrite(str(path), np.concatenate(tiles, 1))
    return [f'{name}'] + labels


def student_table(report: Report, header: list[str], rows_by_student: dict[str, list[list[str]]]) -> None:
    """One table of every student's rows; a student column leads them where there is more than one student."""
    several = len(rows_by_student) > 1
    report.table((['student'] if several else []) + header,
                 [([name] if several else []) + row for name, rows in rows_by_student.items() for row in rows])


@dataclass
class ReportContext:
    """What every section of the report reads: the experiment, its finished results grouped by (student, arm,
    budget), the test sets' names, their bicubic figures, and the sweep student and budget the report centres on."""
    experiment: object
    runs: list
    results: list[dict]
    groups: dict
    sets: list[str]
    bicubic: dict
    diagnostics: dict

    @property
    def exp(self) -> ExperimentOptions:
        return self.experiment.exp

    @property
    def student(self) -> str:
        return self.exp.sweep_student

    @property
    def budget(self) -> float:
        """The budget nearest the paper's 0.68 % (log scale): the one the tables and figures centre on."""
        return min(self.exp.budgets_percent, key=lambda b: abs(math.log(b / 0.68)))


def write_report(experiment, runs: list) -> Path:
    """Render everything finished so far (markdown and a self-contained html, each written whole); return the
    markdown report's path."""
    exp, out = experiment.exp, experiment.results
    out.mkdir(parents=True, exist_ok=True)
    results = experiment.stored_results(runs)
    sets = [Path(s).name for s in exp.test_sets]
    store = JsonStore(experiment.work / 'bicubic.json')
    for s, folder in zip(sets, exp.test_sets):
        if store.get(s) is None:
            store.put(s, evaluate(None, experiment.root / folder, experiment.scale))
    diagnostics = distilled_set_diagnostics(exp, experiment.work, experiment.train_dir, exp.set_arms())
    ctx = ReportContext(experiment, runs, results, group_results(results), sets, store.data, diagnostics)
    report = Report(out)
    for section in (_introduction, _findings, _budget_table, _students_table, _distilled_sets, _wall_times):
        section(report, ctx)
    atomic_write_text(out / 'report.md', report.markdown())
    atomic_write_text(out / 'report.html', report.html(f'srdistill report {exp.name}'))
    return out / 'report.md'


def _introduction(report: Report, ctx: ReportContext) -> None:
    exp, experiment, sets, results, runs = ctx.exp, ctx.experiment, ctx.sets, ctx.results, ctx.runs
    report.heading(f'Distillation experiment {exp.name} (x{experiment.scale})', 1)
    finished = f'{len(results)} of {len(runs)} training runs finished'
    report.text(f'{finished}. Pool: {exp.pool} minus {exp.validation.holdout_images} held-out '
                f'photographs (validation: the best checkpoint of every run is chosen on them; the test sets are '
                f'never used for a choice). Test: {", ".join(sets)}, PSNR/SSIM on Y, border {experiment.scale}. '
                f'Seeds {exp.seeds} of the SR training (each set is made once, with manual_seed '
                f'{exp.manual_seed}); tables give the mean over the finished seeds ± half their range. '
                f'Threads: {exp.threads}.')
    features = next((d['feature_description'] for k, d in ctx.diagnostics.items() if k != 'pool'), None)
    if features:
        report.text(f'Grouping features: {features}.')


def _findings(report: Report, ctx: ReportContext) -> None:
    """Targets, the default arm's choice, one-choice differences, draws, recipes and where the arms cross."""
    exp, groups, sets, student, budget = ctx.exp, ctx.groups, ctx.sets, ctx.student, ctx.budget
    default = exp.default_arm
    report.heading('Targets')
    lines = verdicts.targets_text(exp, groups, sets, budget, student)
    if groups.get((student, default, budget)) and groups.get((student, FULL_POOL, None)):
        lines.append(plateau_text(exp, groups[(student, default, budget)], groups[(student, FULL_POOL, None)], default))
    report.text('; '.join(lines) + '. Where a target is missed, the one-choice differences below say which choice '
                'costs what.')

    report.heading('Default arm (chosen on validation)')
    report.text(verdicts.choice_text(exp, groups, budget))

    decomposition = verdicts.by_student(exp, student,
                                        lambda s: verdicts.decomposition_rows(exp, groups, sets, budget, s))
    if decomposition:
        report.heading('Why: one choice at a time')
        report.text(f'Best validation and test PSNR difference between two arms that differ in one choice '
                    f'({", ".join(decomposition)}, {budget:g} % first, then every other budget where both ran; '
                    'best-on-validation checkpoints), paired seed by seed on the SR seeds both arms ran, mean ± the '
                    'standard error of the paired differences where two or more; negative: the choice costs that '
                    'much. Each arm is one draw of its set: the standard error is the SR seeds\' alone, not the '
                    'draw\'s (the Draws table, where there is one, gives that).')
        student_table(report, ['arms', 'the one choice', 'budget', 'validation Δ dB'] + [f'{s} Δ dB' for s in sets]
                      + ['seeds'], decomposition)

    draws = verdicts.by_student(exp, student, lambda s: verdicts.draw_rows(exp, groups, sets, budget, s))
    if draws:
        report.heading('Draws: how much is the set\'s draw')
        report.text(f'Arms drawn more than once (synthesize.draw_seed; everything else equal), {", ".join(draws)}, '
                    f'at every budget where drawn twice or more ({budget:g} % first): best validation and test PSNR '
                    'over the draws, mean ± sample std (min–max), each draw the mean of its seeds. The targets and '
                    'the default arm above pool the draws.')
        student_table(report, ['arm', 'budget', 'draws', 'validation PSNR'] + [f'{s} PSNR' for s in sets], draws)
        gaps = [verdicts.draw_gap_text(exp, groups, sets, budget, s) for s in draws]
        if any(gaps):
            report.text(' '.join(g for g in gaps if g) + ' One draw of a set moves test PSNR by the std above, so a '
                        'single-draw gap smaller than about two of those stds is the draw, not the arm.')

    recipe = verdicts.recipe_text(exp, groups, sets, budget, student)
    if recipe:
        report.heading('Recipe: SR training on a tiny set')
        report.text(recipe + ' A recipe changes how the student trains (custom_arms.<name>.sr_train), not the set; '
                    'it is read against the set without it and takes no part in the choice of the default arm.')

    report.heading('Where the arms cross')
    report.text(crossings_text(exp, groups, sets, budget, default, student))


def _budget_table(report: Report, ctx: ReportContext) -> None:
    exp, groups, sets, student, budget = ctx.exp, ctx.groups, ctx.sets, ctx.student, ctx.budget
    out, arms, bicubic = ctx.experiment.results, exp.arms, ctx.bicubic
    report.heading(f'Test PSNR by budget ({student})')
    header = ['arm', 'budget', 'patches'] + [f'{s} PSNR / SSIM' for s in sets] + ['best iter', 'seeds']
    rows = [['bicubic', '-', '-'] + [f'{bicubic[s]["psnr"]:.2f} / {bicubic[s]["ssim"]:.4f}' for s in sets] + ['-', '-']]
    for key in sorted((k for k in groups if k[0] == student), key=lambda k: (k[2] is not None, k[2] or 0, k[1])):
        rs = groups[key]
        cells = []
        for s in sets:
            m, sp = mean_spread([r['test_best'][s]['psnr'] for r in rs])
            cells.append(f'**{m:.2f}** ± {sp:.2f} / {np.mean([r["test_best"][s]["ssim"] for r in rs]):.4f}')
        rows.append([key[1], _budget_label(key[2]), str(rs[0]['num_train_images'])] + cells
                    + [', '.join(str(r['best_iter']) for r in rs), str(len(rs))])
    report.table(header, rows)
    if groups:
        plot_psnr_vs_budget(out / 'psnr_vs_budget.png', groups, student, arms, sets, bicubic)
        report.figure('psnr_vs_budget.png', 'Test PSNR of the best-on-validation checkpoint vs budget (log x); '
                      'bars: seed range; black: full pool; dotted: bicubic.')
        plot_curves(out / 'psnr_vs_iteration.png', groups, student, arm_keys(exp, arms, budget))
        report.figure('psnr_vs_iteration.png', f'Validation PSNR vs iteration at {budget:g} % and the full pool.')


def _students_table(report: Report, ctx: ReportContext) -> None:
    exp, groups, sets, student = ctx.exp, ctx.groups, ctx.sets, ctx.student
    report.heading('Students (one option swap each)')
    report.text(convergence_text(exp, groups))
    header = ['student', 'arm', 'budget'] + [f'{s} PSNR' for s in sets] + ['s / iter', 'trained on']
    rows = []
    for key in sorted(groups, key=lambda k: (k[0], k[2] is not None, k[2] or 0, k[1])):
        if key[0] != student and key[2] not in (None, *exp.student_budgets_percent):
            continue
        rs = groups[key]
        rows.append([key[0], key[1], _budget_label(key[2])]
                    + ['{:.2f} ± {:.2f}'.format(*mean_spread([r['test_best'][s]['psnr'] for r in rs])) for s in sets]
                    + [seconds_per_iter_cell(rs), trained_on(rs)])
    report.table(header, rows)


def _distilled_sets(report: Report, ctx: ReportContext) -> None:
    exp, groups, sets, student, budget = ctx.exp, ctx.groups, ctx.sets, ctx.student, ctx.budget
    experiment, diagnostics, out, arms = ctx.experiment, ctx.diagnostics, ctx.experiment.results, exp.arms
    report.heading('The distilled sets')
    rows = []
    made = sorted((d for k, d in diagnostics.items() if k != 'pool'), key=lambda d: (d['budget'], d['arm']))
    for d in made:
        residual = d['seed_residual_std']
        rows.append([d['arm'], f'{d["budget"]:g} %', str(d['num_patches']), ' '.join(map(str, d['patches_per_class'])),
                     f'{d["coverage"]:.4f}', f'{d["diversity"]:.4f}', f'{np.mean(d["gradient_energy"]):.3f}',
                     '-' if residual is None else f'{residual:.2f}'])
    report.text('Coverage: mean distance from 1,000 random pool patches to their nearest patch of the set (lower '
                'covers more); diversity: mean pairwise distance within the set; both in the colour-texture '
                'descriptor space. Distance from seeds: std of (synthesized − seed patch) in 8-bit levels. Pool '
                f'patches\' mean gradient energy: {np.mean(diagnostics["pool"]["gradient_energy"]):.3f}.')
    report.table(['arm', 'budget', 'patches', 'patches per class', 'coverage', 'diversity', 'gradient energy',
                  'distance from seeds'], rows)
    plot_gradient_energy(out / 'gradient_energy.png', diagnostics, budget, arms)
    report.figure('gradient_energy.png', f'Gradient energy of the {budget:g} % sets vs random pool patches.')
    for arm in arms:
        preview = experiment.work / 'data' / f'{arm}_{budget:g}pct' / 'preview.png'
        if preview.is_file():
            shutil.copyfile(preview, out / f'preview_{arm}.png')
            report.figure(f'preview_{arm}.png', f'{arm} at {budget:g} %: one row per pseudo-class.')
    if any(k[0] == student and k[2] in (None, budget) for k in groups):
        labels = zoomed_crops(out / 'crops.png', experiment, groups, student, budget, arms)
        report.figure('crops.png', f'{labels[0]} of {sets[0]}, x{experiment.scale}, the most detailed 48 px region: '
                      + ', '.join(labels[1:]) + f' ({student}, {budget:g} %, seed-0 best checkpoints).')


def _wall_times(report: Report, ctx: ReportContext) -> None:
    exp, experiment, results = ctx.exp, ctx.experiment, ctx.results
    report.heading('Wall times')
    times = data.stage_times(exp, experiment.work, JsonStore(experiment.times.path).data)
    rows = [[k, f'{v:.2f}', device or 'not recorded'] for k, (v, device) in times.items()]  # tiny pools: hundredths
    train_s = defaultdict(float)
    for r in results:
        iterations = r.get('last_iter', exp.sr_train.total_iter)
        train_s[r['student'], trained_on([r])] += r['seconds_per_iter'] * iterations
    rows += [[f'SR training, {k} (all its runs)', f'{v:.1f}', device] for (k, device), v in train_s.items()]
    report.table(['stage', 'seconds', 'ran on'], rows)


def trained_on(results: list[dict]) -> str:
    """The devices that trained ``results``."""
    return ', '.join(sorted({r['device'] for r in results}))


def seconds_per_iter_cell(results: list[dict]) -> str:
    """Mean seconds per iteration of ``results``; '-' where they were trained on more than one device (not
    comparable)."""
    if ', ' in trained_on(results):
        return '-'
    return f'{np.mean([r["seconds_per_iter"] for r in results]):.3f}'


def plateau_text(exp: ExperimentOptions, arm_runs: list[dict], full_runs: list[dict], default: str) -> str:
    """Seconds to within ``TIME_TOLERANCE_DB`` of the own validation plateau, the default arm against the full pool
    (compared only when both trained on one device)."""
    devices = trained_on(arm_runs + full_runs)
    if ', ' in devices:
        return f'time to plateau not compared: the runs were trained on different devices ({devices})'
    arm_t = seconds_to_plateau(mean_curve(arm_runs), np.mean([r['seconds_per_iter'] for r in arm_runs]))
    full_t = seconds_to_plateau(mean_curve(full_runs), np.mean([r['seconds_per_iter'] for r in full_runs]))
    return (f'time to within {TIME_TOLERANCE_DB} dB of the own validation plateau: {default} {arm_t:.0f} s, '
            f'full pool {full_t:.0f} s, ratio {arm_t / max(full_t, 1e-9):.2f} (read every '
            f'{exp.sr_train.eval_every:,} iterations; trained on {devices})')


def crossings_text(exp: ExperimentOptions, groups: dict, sets: list[str], budget: float, default: str,
                   student: str) -> str:
    """Where the default arm crosses the others: over budgets (test PSNR on the first set) and over iterations
    (validation PSNR at the target budget), each as the differences it is read from; redraws pooled."""
    groups, arms = verdicts.pool_draws(exp, groups)
    arms = [a for a in arms if not exp.is_full_pool(a)]

    def psnr(runs: list[dict]) -> float:
        return float(np.mean([r['test_best'][sets[0]]['psnr'] for r in runs]))

    def by_budget(arm: str) -> dict:
        return {k[2]: psnr(v) for k, v in groups.items() if k[:2] == (student, arm)}

    mine = by_budget(default)
    others = {a: by_budget(a) for a in arms if a != default}
    if groups.get((student, FULL_POOL, None)):
        others['full pool'] = dict.fromkeys(mine, psnr(groups[(student, FULL_POOL, None)]))
    parts = []
    for other, theirs in others.items():
        points = [(b, mine[b] - theirs[b]) for b in sorted(set(mine) & set(theirs))]
        parts.append(describe_crossing(default, other, points, 'budget', lambda b: f'{b:g} %'))
    text = f'Over budgets ({student}, test PSNR on {sets[0]}, {default} minus the other): ' + '; '.join(parts) + '.'
    arm_runs = groups.get((student, default, budget))
    if not arm_runs:
        return text
    mine_curve, parts = mean_curve(arm_runs), []
    for other, key in [(a, (student, a, budget)) for a in arms if a != default] + [
            ('full pool', (student, FULL_POOL, None))]:
        if groups.get(key):
            theirs = mean_curve(groups[key])
            points = [(it, mine_curve[it] - theirs[it]) for it in sorted(set(mine_curve) & set(theirs))]
            parts.append(describe_crossing(default, other, points, 'iteration', lambda it: f'{it:,}'))
    return (text + f' Over iterations (validation PSNR at {budget:g} %, mean of seeds, while both ran): '
            + '; '.join(parts) + '.')


def convergence_text(exp: ExperimentOptions, groups: dict) -> str:
    """The convergence rule's verdict per student, read on each full-pool seed at its own last iteration (the
    rule that also ends a run past ``total_iter``; seeds may stop at different iterations)."""
    rule, sr = exp.convergence, exp.sr_train
    parts = []
    for student in exp.students:
        runs = sorted(groups.get((student, FULL_POOL, None), []), key=lambda r: r['seed'])
        if not runs:
            parts.append(f'{student}: no full-pool run finished yet, not measured')
            continue
        gains, seeds = [], []
        for r in runs:
            last = max(map(int, r['val_curve']))
            gains.append(convergence_gain(r['val_curve'], rule.window_fraction))
            how = (' (stopped early: no gain for patience_evals evaluations)' if last < sr.total_iter
                   else ' (continued past total_iter at the last learning rate)' if last > sr.total_iter else '')
            seeds.append(f'seed {r["seed"]} {gains[-1]:+.3f} dB over the last {rule.window_fraction:.0%} of its '
                         f'{last:,} iterations{how}')
        verdict = 'converged' if max(gains) < rule.min_gain_db else 'NOT converged (still rising)'
        parts.append(f'{student}: full pool ({len(runs)} of {len(exp.seeds)} seeds): {", ".join(seeds)}; '
                     f'{verdict}')
    extension = (f'A run still gaining that much at total_iter ({sr.total_iter:,}) trains on at the last learning '
                 f'rate, {sr.eval_every:,} iterations at a time, until it is converged or reaches max_iter '
                 f'{sr.max_iter:,}. ' if sr.max_iter > sr.total_iter else '')
    return (f'Convergence rule: a student is converged when the full-pool validation PSNR of each of its seeds gains '
            f'< {rule.min_gain_db} dB over the last {rule.window_fraction:.0%} of that run\'s iterations. '
            + extension + ' | '.join(parts) + '.')
