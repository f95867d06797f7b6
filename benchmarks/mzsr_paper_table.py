"""The MZSR paper's x2 table side by side with both of this project's starts, read from the results files of
benchmarks/mzsr_adaptation.py (own start: ``mzsr_adaptation_cpu.json``; official start:
``mzsr_adaptation_official_cpu.json``). Trains and evaluates nothing. Writes benchmarks/results/mzsr_paper_table_<tag>.

    python -m benchmarks.mzsr_paper_table [--own cpu] [--official official_cpu] [--tag cpu]

ZSSR does not depend on the start: its column comes from whichever results file ran it.
"""
from __future__ import annotations

import argparse
import json

from benchmarks.common import ROOT, result_path, write_results
from benchmarks.mzsr_adaptation import PAPER_BICUBIC_SET5, STEP_NOTES
from benchmarks.mzsr_official_start import PAPER_MZSR1_SET5

PAPER_SET5_GD2 = {'mzsr10': 36.05, 'zssr': 34.90}  # the paper's Set5 x2 MZSR(10) and ZSSR on g^d_2.0
METHODS = ('pretrained', 'mzsr0', 'mzsr1', 'mzsr10')


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--own', default='cpu', help='tag of the own-start mzsr_adaptation results')
    p.add_argument('--official', default='official_cpu', help='tag of the official-start mzsr_adaptation results')
    p.add_argument('--tag', default='cpu')
    p.add_argument('--choice-rule', default=None,
                   help='how the held-out photos chose the official start\'s checkpoint, as stated in the table')
    return p.parse_args()


def load(tag: str) -> dict:
    path = result_path(f'mzsr_adaptation_{tag}.json')
    if not path.is_file():
        raise SystemExit(f'{path}: missing (python -m benchmarks.mzsr_adaptation writes it)')
    return json.loads(path.read_text())


def stages_text(name: str, data: dict) -> str:
    """The device and threads of each stage of one start, as its source file recorded them: the trainings ran with
    its ``args.threads`` (``OMP_NUM_THREADS`` of its last invocation; chunks resumed before it are not recorded),
    the evaluation with its ``env``."""
    env, threads = data['env'], data['args'].get('threads')
    trained = f'{env["device"]}, {threads} thread(s) (its last invocation)' if threads else 'not recorded'
    pretrain = (f'pretraining {trained}; ' if data['args'].get('start', 'own') == 'own'
                else 'pretraining: the official network, trained by its authors (GPU); ')
    return (f'{name} start: {pretrain}meta-transfer {trained}; evaluation (MZSR(n), ZSSR, bicubic) '
            f'{env["device"]}, {env["torch_threads"]} thread(s).')


def cells(s: dict | None) -> str:
    return ' / '.join(f'{s[m]:.2f}' if s and m in s else '–' for m in METHODS)


def targets(official: dict, zssr: dict) -> list[str]:
    """The official start's targets, each with its margin."""
    out = []
    gd = official.get('Set5/gd2.0', {})
    if 'mzsr1' in gd:
        out.append(f"Official start, Set5 g^d_2.0: MZSR(1) >= 35.10 (paper 35.20): "
                   f"{'met' if gd['mzsr1'] >= 35.10 else 'NOT met'} ({gd['mzsr1']:.2f}, {gd['mzsr1'] - 35.10:+.2f})")
    if 'mzsr10' in gd and 'Set5/gd2.0' in zssr:
        margin = gd['mzsr10'] - zssr['Set5/gd2.0'] - 0.3
        out.append(f"Official start, Set5 g^d_2.0: MZSR(10) >= ZSSR@1000 + 0.3 dB: {'met' if margin >= 0 else 'NOT met'}"
                   f" ({gd['mzsr10']:.2f} vs {zssr['Set5/gd2.0']:.2f} + 0.3, {margin:+.2f})")
    for kernel, paper in PAPER_MZSR1_SET5.items():
        s = official.get(f'Set5/{kernel}')
        if s and 'mzsr1' in s:
            ok = s['mzsr1'] > s['bicubic'] and abs(s['mzsr1'] - paper) <= 0.5
            out.append(f"Official start, Set5 {kernel}: MZSR(1) > bicubic and within 0.5 dB of the paper's "
                       f"{paper:.2f}: {'met' if ok else 'NOT met'} ({s['mzsr1']:.2f}; {s['mzsr1'] - s['bicubic']:+.2f} "
                       f"vs bicubic, {s['mzsr1'] - paper:+.2f} vs the paper)")
    return out


def analysis(own: dict, official: dict, choice_rule: str | None = None) -> list[str]:
    """Where the official start stands against the paper and the own start, from the two results files."""
    out = []
    gains = {start: {k.split('/')[1]: s['mzsr1'] - s['mzsr0'] for k, s in data['summary'].items()
                     if k.startswith('Set5/') and 'mzsr1' in s} for start, data in (('own', own), ('official', official))}
    out.append('One adaptation step (MZSR(1) − MZSR(0), Set5): ' + '; '.join(
        f"{k} own {gains['own'].get(k, float('nan')):+.2f}, official {g:+.2f}" for k, g in gains['official'].items())
        + '. The paper\'s method is the step: where it adds little, the meta-learned start does the work.')
    iters = official['args'].get('arm_iters', {}).get('direct', official['args'].get('meta_iters'))
    chosen = official['args'].get('arm_checkpoint', {}).get('direct')
    for arm, curve in official.get('val_curves', {}).items():
        if curve:
            points = sorted((int(it), v) for it, v in curve.items())
            out.append(f"Validation of the official-start {arm} arm during meta-transfer (MZSR(1), Set5, its options' "
                       f"kernel): " + ', '.join(f'{it}: {v:.2f}' for it, v in points)
                       + f" — the last 200 iterations moved it {points[-1][1] - points[-2][1]:+.2f} dB"
                       if len(points) > 1 else '')
    if iters:
        window = official['args'].get('arm_average', {}).get('direct')
        end = chosen or iters
        weights = (f'the mean weights of its checkpoints saved in ({end - window}, {end}]' if window
                   else f'its checkpoint {end}')
        rule = f' ({choice_rule})' if choice_rule else ''
        at = (f'; the direct columns are {weights} ({100 * end / 100000:.1f} %), chosen on held-out photos{rule} by '
              'benchmarks/mzsr_meta_stability.py' if chosen or window else '')
        out.append(f'The official-start run is {iters} meta-iterations for the direct arm ({100 * iters / 100000:.1f} % '
                   f"of the paper's 100,000), with 32x32 patches and meta-batch 2 on the CPU{at}: the figures above "
                   f"are where a CPU session's run stands, not a converged reproduction.")
    return out


def main() -> None:
    args = parse_args()
    own, official = load(args.own), load(args.official)
    starts = {'own': own['summary'], 'official': official['summary']}
    zssr = {k: s['zssr_final'] for start in starts.values() for k, s in start.items() if 'zssr_final' in s}
    keys = [k for k in starts['official'] if '/' in k and not k.startswith('ablation')]
    head = ('| set | kernel | bicubic | paper (Set5): bicubic / MZSR(1) / MZSR(10) / ZSSR | own start: pretrained / '
            'MZSR(0) / MZSR(1) / MZSR(10) | official start: pretrained / MZSR(0) / MZSR(1) / MZSR(10) | ZSSR@1000 |')
    lines = [head, '|---' * (head.count('|') - 1) + '|']
    for key in keys:
        set_name, kernel = key.split('/')
        paper = '–'
        if set_name == 'Set5':
            extra = PAPER_SET5_GD2 if kernel == 'gd2.0' else {}
            paper = ' / '.join(f'{v:.2f}' if v else '–' for v in (
                PAPER_BICUBIC_SET5[kernel], PAPER_MZSR1_SET5[kernel], extra.get('mzsr10'), extra.get('zssr')))
        zssr_cell = f'{zssr[key]:.2f}' if key in zssr else '–'
        lines.append(f"| {set_name} | {kernel} | {starts['official'][key]['bicubic']:.2f} | {paper} | "
                     f"{cells(starts['own'].get(key))} | {cells(starts['official'][key])} | {zssr_cell} |")
    how = {'own': own.get('training', ''), 'official': official.get('training', '')}
    markdown = (f'# MZSR x2: the paper\'s table beside both starts ({args.tag})\n\nPSNR (dB) on the Y channel rounded '
                f'to 8 bits, border 2, mean over each set, the paper\'s kernels and LR (see the two source files). '
                f'"pretrained": the start before meta-transfer (own: {own["args"].get("pretrain_iters")} bicubic '
                f'iterations on the pool; official: the converted official network). Adaptation of the official '
                f'start\'s direct model: {STEP_NOTES[official["args"].get("direct_schedule", "direct_x2")]}. '
                f'"–": not run. Sources: '
                f'`{result_path(f"mzsr_adaptation_{args.own}.md").relative_to(ROOT)}` (own start) and '
                f'`{result_path(f"mzsr_adaptation_{args.official}.md").relative_to(ROOT)}` (official start), where the '
                f'training of each model is stated.\n\n' + '\n'.join(lines) + '\n\n## Targets\n'
                + '\n'.join(f'- {line}' for line in targets(starts['official'], zssr)) + '\n\n## Why\n'
                + '\n'.join(f'- {line}' for line in analysis(own, official, args.choice_rule) if line) + '\n'
                + ''.join(f'\n{name} start: {text}\n' for name, text in how.items() if text)
                + '\n## Devices and threads\n' + ''.join(f'- {stages_text(name, data)}\n' for name, data in
                                                         (('Own', own), ('Official', official))))
    write_results(f'mzsr_paper_table_{args.tag}', {'sources': [f'mzsr_adaptation_{args.own}.json',
                                                               f'mzsr_adaptation_{args.official}.json'],
                                                   'zssr': zssr, 'summary': starts}, markdown)


if __name__ == '__main__':
    main()
