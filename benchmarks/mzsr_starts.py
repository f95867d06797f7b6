"""The MZSR paper's x2 table with several starts side by side: each start's meta-transfer as a zero-shot experiment
read it (its ``summary.json``: Set5 / Set14 x four kernels x MZSR(0/1/10) at the rule-chosen checkpoints), the
paper's figures, ZSSR@1000 (it does not depend on the start: one file), and the blind benchmark's kernel sensitivity
of the shipped weights. The first start is the shipped one: issue 50's targets are checked on it::

    python -m benchmarks.mzsr_starts \\
        --start "own start (shipped)=benchmarks/results/mzsr_long_start/summary.json" \\
        --start "official start=benchmarks/results/mzsr_official_start_rule/summary.json" \\
        --zssr benchmarks/results/mzsr_official_start/mzsr_adaptation_official_cpu_task_lr_ho1500.json \\
        --curve "meta-transfer=benchmarks/results/mzsr_long_start/summary.json" \\
        --curve "continued from 1,600=benchmarks/results/mzsr_long_start_more/summary.json@1600"
    -> benchmarks/results/mzsr_starts/mzsr_starts_x2.{md,json} (and _curve.png with --curve)

Every figure is read from the files named (they are listed in the output); nothing is evaluated here. A missed target
shows the other starts' figure beside it; ``--curve`` draws the shipped arm's held-out curve (the checkpoint rule's
figure at every checkpoint) of one or more runs, a continued run's iterations moved by ``@OFFSET``.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import NamedTuple

from benchmarks.common import RESULTS, ROOT, repo_relative
from srdistill.cli import run_cli
from srdistill.core.atomic_io import atomic_path, atomic_write_text
from srdistill.core.errors import SRDistillError
from srdistill.core.options_file import read_options

PAPER = read_options(ROOT / 'options' / 'report' / '_base_' / 'mzsr_x2_paper.yml')
KERNELS = tuple(PAPER['kernels'])  # g^d_0.2, g^d_2.0, g^d_ani, g^b_1.3
SETS = ('Set5', 'Set14')
STEPS = ('mzsr0', 'mzsr1', 'mzsr10')
# issue 50's targets for the shipped weights: (set/kernel, figure, at least)
TARGETS = (('Set5/gd2.0', 'mzsr1', 34.90), ('Set5/gd2.0', 'mzsr10', 35.25), ('Set5/gb1.3', 'mzsr1', 35.00))
SENSITIVITY_TARGET = 0.3  # true - default kernel on the blind benchmark, dB


def read_summary(path: Path) -> dict:
    """``{set/kernel: figures}`` and the evaluated networks of a zero-shot results file; one line when it is not
    one or lacks a cell of the table."""
    try:
        data = json.loads(path.read_text())
        summary = data['summary']
    except (OSError, ValueError, KeyError) as err:
        raise SRDistillError(f'{path}: not a zero-shot results file with a summary ({err})') from err
    missing = [f'{s}/{k}' for s in SETS for k in KERNELS if f'{s}/{k}' not in summary]
    if missing:
        raise SRDistillError(f'{path}: no figures for {", ".join(missing)}')
    return {'summary': summary, 'networks': data.get('networks', {})}


def checkpoints(networks: dict) -> str:
    """The evaluated meta-transfer checkpoints, e.g. ``direct 1,300, bicubic 500``."""
    return ', '.join(f'{arm} {record["iteration"]:,}' for arm, record in networks.items()
                     if arm != 'pretrained' and record.get('iteration')) or 'not recorded'


def target_lines(summary: dict, blind: dict | None, others: dict[str, dict] | None = None) -> list[str]:
    """Each target of the shipped weights: the figure, met or missed and by how much (a miss with ``others``' figure
    for the same cell: ``{start name: summary}``)."""
    lines = []
    for key, figure, goal in TARGETS:
        value = summary[key][figure]
        verdict = 'met' if value >= goal else f'missed by {goal - value:.2f} dB'
        if value < goal and others:
            verdict += ' (' + ', '.join(f'{name}: {other[key][figure]:.2f}' for name, other in others.items()) + ')'
        lines.append(f'- {key} MZSR({figure[4:]}) {value:.2f} ≥ {goal:.2f}: {verdict}')
    below = [f'{s}/{k}' for s in SETS for k in KERNELS if summary[f'{s}/{k}']['mzsr10'] <= summary[f'{s}/{k}']['bicubic']]
    lines.append('- MZSR(10) above bicubic on all four kernels of Set5 and Set14: '
                 + ('met' if not below else f'missed on {", ".join(below)}'))
    if blind is not None:
        gain = blind['sensitivity_true_minus_default']
        lines.append(f'- blind benchmark, true − default kernel {gain:+.2f} ≥ {SENSITIVITY_TARGET:+.2f} dB: '
                     + ('met' if gain >= SENSITIVITY_TARGET else f'missed by {SENSITIVITY_TARGET - gain:.2f} dB'))
    return lines


class Curve(NamedTuple):
    """One run's held-out curve of an arm: ``{meta-iteration: dB}`` and the checkpoint the rule chose there."""
    name: str
    path: Path
    points: dict[int, float]
    best: int


def read_curve(item: str, arm: str) -> Curve:
    """``NAME=SUMMARY[@OFFSET]``: ``arm``'s held-out curve in that file, its iterations moved by OFFSET."""
    name, sep, rest = item.partition('=')
    path, _, offset = rest.partition('@')
    if not sep or not name or not path or (offset and not offset.isdigit()):
        raise SRDistillError(f'--curve: expected NAME=SUMMARY[@OFFSET], got {item!r}')
    try:
        network = json.loads(Path(path).read_text())['networks'].get(arm) or {}
    except (OSError, ValueError, KeyError, AttributeError) as err:
        raise SRDistillError(f'{path}: not a zero-shot results file with networks ({err})') from err
    if not network.get('choice_curve') or 'chosen' not in network:
        raise SRDistillError(f'{path}: arm {arm} has no held-out curve of the checkpoint rule')
    shift = int(offset or 0)
    curve = {int(t) + shift: value for t, value in network['choice_curve'].items()}
    return Curve(name, Path(path), dict(sorted(curve.items())), int(network['chosen']) + shift)


def curve_lines(curves: list[Curve], arm: str, figure: str) -> list[str]:
    """The curves as a table (one column per run), each run's best and the figure."""
    iterations = sorted({t for c in curves for t in c.points})
    lines = [f'## The {arm} arm\'s held-out curve', '',
             'The checkpoint rule\'s figure (held-out MZSR(1), the mean over the arm\'s kernels) at every checkpoint, '
             'by meta-iteration from the start of the meta-transfer: '
             + '; '.join(f'{c.name} (`{c.path}`, its best {c.points[c.best]:.2f} dB at {c.best:,})'
                         for c in curves) + '.', '',
             '| meta-iteration | ' + ' | '.join(c.name for c in curves) + ' |',
             '|---|' + '---|' * len(curves)]
    for t in iterations:
        cells = [(f'**{c.points[t]:.2f}**' if t == c.best else f'{c.points[t]:.2f}') if t in c.points else '–'
                 for c in curves]
        lines.append(f'| {t:,} | ' + ' | '.join(cells) + ' |')
    return lines + ['', f'![the {arm} arm\'s held-out curve; bold: each run\'s best]({figure})']


def plot_curves(path: Path, curves: list[Curve]) -> None:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.5))
    for c in curves:
        line, = ax.plot(list(c.points), list(c.points.values()), 'o-', ms=3, label=c.name)
        ax.plot([c.best], [c.points[c.best]], '*', ms=12, color=line.get_color())
    ax.set(xlabel='meta-iteration', ylabel='held-out MZSR(1) PSNR (dB)')
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format='png')
    plt.close(fig)


def render(starts: dict[str, dict], zssr: dict, zssr_file: Path, sources: dict[str, Path],
           blind: dict | None, blind_file: Path | None) -> str:
    names = list(starts)
    lines = ['# MZSR x2: the paper\'s table with the starts side by side', '',
             'PSNR (dB) on 8-bit Y, border 2, mean over each set; the paper\'s protocol (its kernels, the official '
             'subsampling grid, 8-bit LR). Each start\'s figures are its zero-shot experiment\'s, read at the '
             'checkpoints its checkpoint rule chose on held-out photographs before Set5 / Set14 were read:', '']
    lines += [f'- {name}: `{sources[name]}` (meta-transfer checkpoints: {checkpoints(starts[name]["networks"])})'
              for name in names]
    lines += [f'- ZSSR@1000 (the official given-kernel protocol; it does not depend on the start): `{zssr_file}`', '',
              '| set | kernel | bicubic | paper MZSR(1) / MZSR(10) | '
              + ' | '.join(f'{name}: MZSR(0) / (1) / (10)' for name in names) + ' | ZSSR@1000 |',
              '|---|---|---|---|' + '---|' * len(names) + '---|']
    for set_name in SETS:
        for kernel in KERNELS:
            key = f'{set_name}/{kernel}'
            paper = PAPER['paper'].get(set_name, {}).get(kernel, {})
            paper_cell = ' / '.join(f'{paper[m]:.2f}' if m in paper else '–' for m in ('mzsr1', 'mzsr10'))
            cells = [' / '.join(f'{starts[n]["summary"][key][m]:.2f}' for m in STEPS) for n in names]
            lines.append(f'| {set_name} | {kernel} | {starts[names[0]]["summary"][key]["bicubic"]:.2f} | '
                         f'{paper_cell} | ' + ' | '.join(cells) + f' | {zssr[key]["zssr_final"]:.2f} |')
    lines += ['', f'Targets for the shipped weights ({names[0]}; issue 50):', '',
              *target_lines(starts[names[0]]['summary'], blind,
                            {n: starts[n]['summary'] for n in names[1:]})]
    if blind is not None:
        lines += ['', f'Blind benchmark (`{blind_file}`, {blind["images"]} images, MZSR(10)): default kernel '
                      f'{blind["mzsr_default"]:.2f}, true {blind["mzsr_true"]:.2f}, wrong {blind["mzsr_wrong"]:.2f} '
                      f'dB (bicubic {blind["bicubic"]:.2f}).']
    return '\n'.join(lines) + '\n'


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--start', action='append', required=True, metavar='NAME=SUMMARY',
                        help='a start and its zero-shot results file (the shipped one first)')
    parser.add_argument('--zssr', required=True, help='a results file with the ZSSR@1000 column')
    parser.add_argument('--blind', default=None, help="a blind benchmark's summary.json (kernel sensitivity)")
    parser.add_argument('--blind-arm', default='own', help='its arm of the shipped weights')
    parser.add_argument('--curve', action='append', default=[], metavar='NAME=SUMMARY[@OFFSET]',
                        help="a run of the shipped arm whose held-out curve is drawn (OFFSET: the iteration it "
                             "continued from)")
    parser.add_argument('--curve-arm', default='direct', help='the arm whose curves --curve draws')
    parser.add_argument('--output', default=str(RESULTS / 'mzsr_starts' / 'mzsr_starts_x2'))
    args = parser.parse_args()
    sources = {}
    for item in args.start:
        name, sep, path = item.partition('=')
        if not sep or not name:
            parser.error(f'--start: expected NAME=SUMMARY, got {item!r}')
        sources[name] = Path(path)
    starts = {name: read_summary(path) for name, path in sources.items()}
    zssr = read_summary(Path(args.zssr))['summary']
    if any('zssr_final' not in zssr[f'{s}/{k}'] for s in SETS for k in KERNELS):
        raise SRDistillError(f'{args.zssr}: no ZSSR@1000 column')
    blind = None
    if args.blind:
        key = f'all/{args.blind_arm}'
        blind = json.loads(Path(args.blind).read_text()).get('blind', {}).get(key)
        if blind is None:
            raise SRDistillError(f'{args.blind}: no blind figures for {key}')
    curves = [read_curve(item, args.curve_arm) for item in args.curve]
    output = Path(args.output)
    figure = output.with_name(f'{output.name}_curve.png')
    text = render(starts, zssr, Path(args.zssr), sources, blind, Path(args.blind) if args.blind else None)
    if curves:
        text += '\n' + '\n'.join(curve_lines(curves, args.curve_arm, figure.name)) + '\n'
    markdown = repo_relative(text)
    output.parent.mkdir(parents=True, exist_ok=True)
    if curves:
        plot_curves(figure, curves)
    payload = {'sources': {name: str(path) for name, path in sources.items()}, 'zssr': args.zssr,
               'blind': args.blind, 'starts': {name: s['summary'] for name, s in starts.items()},
               'zssr_final': {k: v['zssr_final'] for k, v in zssr.items()}, 'blind_figures': blind,
               'curves': {c.name: {'file': str(c.path), 'curve': c.points, 'best': c.best} for c in curves}}
    atomic_write_text(output.with_suffix('.json'), repo_relative(json.dumps(payload, indent=1)))
    atomic_write_text(output.with_suffix('.md'), markdown)
    print(markdown)


if __name__ == '__main__':
    run_cli(main)
