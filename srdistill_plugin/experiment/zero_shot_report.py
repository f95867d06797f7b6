"""The zero-shot experiment's report: the papers' table (bicubic, the start, MZSR(n), ZSSR, the paper's column) per
set and kernel, the bicubic column checked against the paper's first, ablations, the held-out checkpoint choice,
PSNR against adaptation time, and where every network came from. Reads rows; trains and evaluates nothing."""
from __future__ import annotations

import json
from pathlib import Path
from statistics import mean, median

from srdistill.core.atomic_io import atomic_write_text

from .report import Report
from .zero_shot_blind import kernel_figure, sensitivity_summary, summarize_blind
from .zero_shot_options import ZeroShotExperiment

METHODS = ('bicubic', 'pretrained', 'mzsr0', 'mzsr1', 'mzsr10')
LABELS = {'bicubic': 'bicubic', 'pretrained': 'start', 'mzsr0': 'MZSR(0)', 'mzsr1': 'MZSR(1)', 'mzsr10': 'MZSR(10)',
          'zssr': 'ZSSR'}


def summarize(unit: dict) -> dict:
    """Means over a set's images: PSNR and SSIM of each method, MZSR adaptation seconds, and for ZSSR its final
    PSNR, training seconds, how many images its raw network brought to MZSR(1)'s PSNR and at what time ratio."""
    rows = unit['rows']
    methods = [m for m in METHODS if all(m in r for r in rows)]
    s = {'images': len(rows), **{m: mean(r[m][0] for r in rows) for m in methods}}
    s['ssim'] = {m: mean(r[m][1] for r in rows) for m in methods}
    s['adapt_time_s'] = {m: mean(r[m][2] for r in rows) for m in methods if m.startswith('mzsr')}
    if unit['zssr']:
        z = unit['zssr']
        s['zssr_final'] = mean(r['zssr_final'][0] for r in z)
        s['zssr_time_s'] = mean(r['zssr_final'][2] for r in z)
        if 'mzsr1' in s:
            reach = [next(((it, t) for it, t, p in zr['zssr_curve'] if p >= r['mzsr1'][0]), None)
                     for zr, r in zip(z, rows)]
            ratios = [x[1] / r['mzsr1'][2] for x, r in zip(reach, rows) if x]
            s['zssr_reached_mzsr1'] = sum(x is not None for x in reach)
            s['zssr_steps_to_mzsr1'] = median(x[0] for x in reach if x) if ratios else None
            s['time_ratio_to_equal_psnr'] = mean(ratios) if ratios else None
    return s


def plot_psnr_vs_time(path: Path, table: dict, summary: dict) -> None:
    """Per set x kernel with ZSSR: its raw network's PSNR against training seconds, and MZSR(n) at its adaptation
    seconds (mean over the set's images)."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 4.5))
    for (key, unit), color in zip(((k, u) for k, u in table.items() if u['zssr']), plt.cm.tab10.colors):
        curves = [r['zssr_curve'] for r in unit['zssr']]
        points = min(len(c) for c in curves)
        ax.plot([max(mean(c[i][1] for c in curves), 1e-2) for i in range(points)],
                [mean(c[i][2] for c in curves) for i in range(points)], color=color, label=f'ZSSR {key}')
        steps = [m for m in ('mzsr0', 'mzsr1', 'mzsr10') if m in summary[key]]
        ax.plot([max(summary[key]['adapt_time_s'][m], 1e-2) for m in steps], [summary[key][m] for m in steps], 'o--',
                color=color, label=f'MZSR(0/1/10) {key}')
    ax.set_xscale('log')
    ax.set_xlabel('seconds on the test image (training / adaptation; 0 drawn at 0.01)')
    ax.set_ylabel('PSNR (Y, 8-bit, dB)')
    ax.legend(fontsize=7, loc='center left', bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _cell(value: float | None, fmt: str = '{:.2f}') -> str:
    return '–' if value is None else fmt.format(value)


def _main_table(report: Report, exp: ZeroShotExperiment, summary: dict) -> None:
    header = ['set', 'kernel', 'paper: bicubic / MZSR(1) / MZSR(10) / ZSSR',
              *(LABELS[m] for m in METHODS), f'ZSSR@{exp.zssr.max_iters}', 'ZSSR steps to MZSR(1)',
              'time ratio ZSSR / MZSR(1)']
    rows = []
    for key, s in summary.items():
        set_name, kernel = key.split('/')
        paper = exp.paper.get(set_name, {}).get(kernel, {})
        reached = (f"{s['zssr_steps_to_mzsr1']:g} ({s['zssr_reached_mzsr1']}/{s['images']} reached)"
                   if s.get('zssr_steps_to_mzsr1') is not None else '–')
        rows.append([set_name, kernel, ' / '.join(_cell(paper.get(m)) for m in ('bicubic', 'mzsr1', 'mzsr10', 'zssr')),
                     *(_cell(s.get(m)) for m in METHODS), _cell(s.get('zssr_final')), reached,
                     _cell(s.get('time_ratio_to_equal_psnr'), '{:.0f}×')])
    report.table(header, rows)


def _fidelity(report: Report, exp: ZeroShotExperiment, summary: dict) -> None:
    """The paper's own baseline first: our bicubic column against the paper's."""
    checks = [(key, s['bicubic'], exp.paper[key.split('/')[0]][key.split('/')[1]]['bicubic'])
              for key, s in summary.items() if 'bicubic' in exp.paper.get(key.split('/')[0], {}).get(
                  key.split('/')[1], {})]
    if checks:
        report.text('Bicubic against the paper\'s column (the protocol check): ' + ', '.join(
            f'{key} {ours:.2f} ({ours - paper:+.2f})' for key, ours, paper in checks) + '.')


def _ablation(report: Report, table: dict) -> None:
    cells = {(key, arm): ' / '.join(f'{mean(r[m][0] for r in rows):.2f}' for m in rows[0])
             for key, unit in table.items() for arm, rows in unit['ablation'].items()}
    if not cells:
        return
    keys, arms = sorted({k for k, _ in cells}), list(dict.fromkeys(a for _, a in cells))
    steps = next(rows[0] for unit in table.values() for rows in unit['ablation'].values())
    report.heading(f'Ablation ({" / ".join(LABELS[m] for m in steps)}, dB)')
    report.table(['arm', *keys], [[arm, *(cells.get((k, arm), '–') for k in keys)] for arm in arms])


def _networks(report: Report, exp: ZeroShotExperiment, networks: dict) -> None:
    report.heading('Networks')
    rows = []
    for name, rec in networks.items():
        chosen = (f"{rec['iteration']} (best of {len(rec['choice_curve'])} checkpoints on {len(rec['choice_photos'])} "
                  f"held-out photographs{', the rule' if name in exp.arms and exp.arms[name].by_rule else ''})"
                  if 'choice_curve' in rec else str(rec.get('iteration', '–')))
        rows.append([name, chosen if name != 'pretrained' else '–', rec.get('source', 'missing'),
                     _cell(rec.get('seconds'), '{:.0f}'), rec.get('device', 'not recorded'), rec.get('hash', '–')])
    report.table(['network', 'evaluated iteration', 'source', 'training s', 'trained on', 'weights hash'], rows)


def _choices(report: Report, exp: ZeroShotExperiment, networks: dict) -> None:
    """Each chosen arm's checkpoints: held-out PSNR (what chooses) and the curve sets (shown only), table and plot."""
    for name, rec in networks.items():
        if 'curves' not in rec:
            continue
        spec, chosen = exp.arms[name].choose, rec['chosen']
        curves = {int(it): c for it, c in sorted(rec['curves'].items(), key=lambda kv: int(kv[0]))}
        sets = list(next(iter(curves.values())))
        report.heading(f'Checkpoint choice: {name}')
        report.text(f'Every checkpoint at a multiple of {spec.every}, adapted {"/".join(map(str, spec.all_steps))} '
                    f'step(s) to {", ".join(spec.kernels)}; held-out: centre {spec.crop}² crops of '
                    f'{", ".join(rec["choice_photos"])} (never a test set). Chosen: {chosen}, the best held-out '
                    f'MZSR({spec.steps}) (the earliest of equal ones)'
                    + (f'; {", ".join(sets[1:])} shown only, never used to choose.' if len(sets) > 1 else '.'))
        report.table(['iteration', *(f'{s}: MZSR({"/".join(map(str, spec.all_steps))})' for s in sets)],
                     [[f'**{it}**' if it == chosen else str(it),
                       *(' / '.join(f'{c[s][f"mzsr{n}"]:.2f}' for n in spec.all_steps) for s in sets)]
                      for it, c in curves.items()])
        plot_choice(report.folder / f'choice_{name}.png', curves, spec.all_steps, chosen)
        report.figure(f'choice_{name}.png', f'{name}: MZSR PSNR of every checkpoint; dotted line: the chosen one')


def plot_choice(path: Path, curves: dict[int, dict], steps: tuple[int, ...], chosen: int) -> None:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    sets = list(next(iter(curves.values())))
    fig, axes = plt.subplots(1, len(sets), figsize=(5 * len(sets), 3.5), squeeze=False)
    for ax, set_name in zip(axes[0], sets):
        for n, style in zip(steps, ('-', '--', ':', '-.')):
            ax.plot(list(curves), [c[set_name][f'mzsr{n}'] for c in curves.values()], style, label=f'MZSR({n})')
        ax.axvline(chosen, color='grey', ls=':')
        ax.set(title=set_name, xlabel='meta-iteration', ylabel='PSNR (Y, 8-bit, dB)')
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _blind(report: Report, exp: ZeroShotExperiment, rows: dict[str, list[dict]]) -> dict:
    """The blind table (per set and over all images, per network), per image, and the kernels drawn."""
    b = exp.blind
    report.heading('Blind: the kernel estimated from the LR')
    estimator = (f'KernelGAN-style, {b.estimate_iters} iterations (official 3000), with the official 40-tap '
                 f'filtering ("unfiltered": every positive tap)' if b.estimator == 'kernelgan' else
                 f'the learned estimator ({b.estimator_file or "the shipped weights"}; options/kernel_predictor_x2.yml)')
    corruption = ''.join([f', Gaussian noise sigma {b.lr_noise_sigma:g} (8-bit levels)' if b.lr_noise_sigma else '',
                          f', JPEG q{b.lr_jpeg_quality}' if b.lr_jpeg_quality is not None else ''])
    report.text(f'Each image degraded by its own kernel from MZSR\'s task distribution (15x15, drawn in order from '
                f'seed {b.seed}), direct subsampling, 8-bit LR{corruption}. Estimate: {estimator}. '
                f'MZSR({b.steps}) adapted with the default kernel {b.default_kernel}, the estimate, the true kernel '
                f'and a wrong one ({b.wrong_kernel}). Paired gain: mean of estimated − default over images, 95 % t '
                f'interval, share of images improved. Kernel PSNR: 20 log10(1 / RMSE) of centred sum-one kernels. '
                f'Covariance error: relative Frobenius error of the kernel\'s second moments against the true '
                f'kernel\'s.')
    summary, lines = {}, []
    for set_name in [*rows, 'all']:
        images = [r for rs in rows.values() for r in rs] if set_name == 'all' else rows[set_name]
        for arm in b.arms:
            s = summary[f'{set_name}/{arm}'] = summarize_blind(images, arm)
            gain, half, share = s['estimated_minus_default']
            closed = _cell(s['gap_closed_of_means'] and 100 * s['gap_closed_of_means'], '{:.0f} %')
            lines.append([set_name, arm, f"{s['bicubic']:.2f}", *(_cell(s.get(f'mzsr_{c}')) for c in (
                'default', 'estimated', 'true', 'wrong', 'unfiltered')), f"{s['sensitivity_true_minus_default']:+.2f}",
                closed, f'{gain:+.2f} ± {half:.2f} ({100 * share:.0f} %)',
                f"{s['kernel_psnr']['estimated']:.2f} / {s['kernel_psnr']['default']:.2f} "
                f"({s['kernel_closer_than_default']}/{s['images']} closer)", _covariance_cell(s),
                _cell(s.get('zssr_estimated')), f"{s['estimate_s']:.1f}"])
    report.table(['set', 'network', 'bicubic', f'MZSR({b.steps}) default k', 'estimated k', 'true k', 'wrong k',
                  'unfiltered k', 'true − default', 'gap closed', 'estimated − default (share improved)',
                  'kernel PSNR est / default', 'covariance error est / default', 'ZSSR est. k', 'estimation s'],
                 lines)
    report.text('Per image, MZSR with the default / estimated / true / wrong kernel:')
    report.table(['image', 'kernel PSNR est / default', *b.arms], [
        [f'{set_name}/{r["image"]}', f"{r['kernel_psnr']['estimated']:.1f} / {r['kernel_psnr']['default']:.1f}",
         *(' / '.join(f"{r['models'][arm][f'mzsr_{c}']:.2f}" for c in ('default', 'estimated', 'true', 'wrong'))
           for arm in b.arms)] for set_name, rs in rows.items() for r in rs])
    if b.scales or b.turns:
        _sensitivity(report, exp, [r for rs in rows.values() for r in rs], summary)
    kernel_figure(report.folder / 'blind_kernels.png', [
        (f"{set_name.replace('Set', 'S')}/{r['image'][-3:]}", r['true_kernel'], r['estimated_kernel'])
        for set_name, rs in rows.items() for r in rs])
    report.figure('blind_kernels.png', 'True (top) and estimated (bottom) kernel of every image')
    return summary


def _covariance_cell(s: dict) -> str:
    errors = s['covariance_error']
    return (f"{errors['estimated']:.2f} / {errors['default']:.2f} "
            f"({s['covariance_closer_than_default']}/{s['images']} closer)")


def _sensitivity(report: Report, exp: ZeroShotExperiment, images: list[dict], summary: dict) -> None:
    """How accurate a kernel must be to pay: MZSR with the true kernel perturbed, over all images."""
    b = exp.blind
    for arm in b.arms:
        cases = summary[f'all/{arm}']['sensitivity'] = sensitivity_summary(images, arm, b.scales, b.turns)
        s = summary[f'all/{arm}']
        report.text(f'Sensitivity, {arm}, all {len(images)} images: MZSR({b.steps}) with the true kernel, both '
                    f'eigenvalues scaled or the kernel turned (true {s["mzsr_true"]:.2f}, default '
                    f'{s["mzsr_default"]:.2f}, estimated {s["mzsr_estimated"]:.2f} dB). Covariance error: '
                    '‖Σ − Σ_true‖_F / ‖Σ_true‖_F, mean over images.')
        report.table(['true kernel', 'covariance error', f'MZSR({b.steps})', '− true', '− default',
                      'images above the default'],
                     [[f'eigenvalues × {case[5:]}' if case.startswith('scale') else f'turned {case[4:]}°',
                       f"{c['covariance_error']:.2f}", f"{c['mzsr']:.2f}", f"{c['minus_true']:+.2f}",
                       f"{c['minus_default']:+.2f}", f"{100 * c['beats_default']:.0f} %"] for case, c in cases.items()])


def _rule(report: Report, exp: ZeroShotExperiment, root: Path) -> None:
    """The experiment's one checkpoint rule, stated before any table, and how each arm's iteration was fixed."""
    rule = exp.checkpoint_rule
    photos = rule.photos.relative_to(root) if rule.photos.is_relative_to(root) else rule.photos
    how = []
    for name, arm in exp.arms.items():
        if arm.by_rule:
            how.append(f'{name} by the rule ({", ".join(arm.choose.kernels)}, {arm.schedule} step sizes)')
        elif arm.choose:
            how.append(f'{name} by its own choice (not the rule)')
        elif arm.checkpoint:
            how.append(f'{name} fixed at {arm.checkpoint} by its options (not the rule)')
        else:  # with a rule, every trained arm has a checkpoint or a choice
            how.append(f'{name}: given weights')
    report.text(f'Checkpoint rule, one for every meta-transfer arm that fixes no iteration: every checkpoint at a '
                f'multiple of {rule.every}, adapted {rule.steps} step(s) to centre {rule.crop}² crops of the held-out '
                f'photographs in `{photos}` degraded by each of the table\'s kernels the arm adapts to; the best mean '
                'PSNR (the earliest of equal ones). The test sets are read only at the chosen checkpoint. '
                + '; '.join(how) + '.')


def _introduction(report: Report, exp: ZeroShotExperiment, root: Path, imported: dict | None) -> None:
    """The protocol of the fixed-kernel table (where there is one) and where the rows came from."""
    if exp.kernels:
        report.text('PSNR on the Y channel rounded to 8 bits and SSIM on Y, border = scale, mean over each set. LR: '
                    'the paper\'s kernels (variance convention, 21x21), correlation with symmetric borders, the '
                    'official subsampling grid, 8 bits. "start": the network before meta-transfer. ZSSR: the official '
                    f'given-kernel protocol, crop {exp.zssr.crop}, up to {exp.zssr.max_iters} iterations; "steps to '
                    'MZSR(1)": the median iteration at which its raw network first reaches MZSR(1)\'s PSNR on an '
                    'image. ' + ', '.join(f'{arm}: {spec.schedule} step sizes' for arm, spec in exp.arms.items()) + '.')
    if exp.checkpoint_rule:
        _rule(report, exp, root)
    report.text(f'Rows imported from `{imported["file"]}` (evaluated there with {imported["env"].get("torch_threads")} '
                f'thread(s) on {imported["env"].get("device")}); a row computed here uses {exp.threads}.' if imported
                else f'Evaluation threads: {exp.threads}.')


def write_zero_shot_report(exp: ZeroShotExperiment, root: Path, networks: dict, table: dict,
                           imported: dict | None, blind_rows: dict[str, list[dict]]) -> Path:
    """``results/<name>/report.{md,html}`` and ``summary.json`` of everything evaluated so far; the report's path."""
    out = root / 'results' / exp.name
    out.mkdir(parents=True, exist_ok=True)
    summary = {key: summarize(unit) for key, unit in table.items()}
    report = Report(out)
    report.heading(f'Zero-shot SR x{exp.scale}: {exp.name}', 1)
    _introduction(report, exp, root, imported)
    missing = ([f'{s.name}/{k}' for s in exp.sets for k in exp.kernels if f'{s.name}/{k}' not in summary]
               + [f'blind {name}' for name in exp.blind.sets if name not in blind_rows])
    if missing:
        report.text(f'Not yet evaluated: {", ".join(missing)}.')
    if summary:
        _fidelity(report, exp, summary)
        _main_table(report, exp, summary)
        _ablation(report, table)
    if any(unit['zssr'] for unit in table.values()):
        plot_psnr_vs_time(out / 'psnr_vs_time.png', table, summary)
        report.figure('psnr_vs_time.png', 'PSNR against seconds spent on the test image: ZSSR training vs MZSR '
                                          'adaptation')
    blind = _blind(report, exp, blind_rows) if blind_rows else {}
    _choices(report, exp, networks)
    _networks(report, exp, networks)
    atomic_write_text(out / 'summary.json', json.dumps({'summary': summary, 'blind': blind, 'networks': networks},
                                                       indent=1))
    atomic_write_text(out / 'report.md', report.markdown())
    atomic_write_text(out / 'report.html', report.html(f'srdistill report {exp.name}'))
    return out / 'report.md'
