"""The zero-shot experiment kind (``kind: zero_shot``): options checked before work, the earlier benchmark's results
files reproduced from the shipped options by import, the summary against hand-computed figures, the held-out
checkpoint choice and resumable, weight-keyed evaluation."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from srdistill.core.errors import SRDistillError
from srdistill.core.options_file import read_options
from srdistill_plugin.archs.mzsr_arch import MZSRNet
from srdistill_plugin.experiment.options import load_experiment
from srdistill_plugin.experiment.zero_shot_blind import paired
from srdistill_plugin.experiment.zero_shot_options import ZeroShotExperiment
from srdistill_plugin.experiment.zero_shot_report import summarize
from srdistill_plugin.experiment.zero_shot_runner import run_zero_shot
from srdistill_plugin.zero_shot.checkpoints import file_hash

from .conftest import ROOT

IMPORTS = {'mzsr_x2_official_start': 'benchmarks/results/mzsr_official_start/'
                                     'mzsr_adaptation_official_cpu_task_lr_ho1500.json',
           'mzsr_x2_own_start': 'benchmarks/results/mzsr_own_start/mzsr_adaptation_cpu.json'}


def fake_set(folder: Path, count: int, size: int = 16) -> Path:
    """A benchmark folder of ``count`` small photographs (``HR/``)."""
    (folder / 'HR').mkdir(parents=True)
    rng = np.random.default_rng(count)
    for i in range(count):
        cv2.imwrite(str(folder / 'HR' / f'img_{i + 1:03d}.png'), rng.integers(0, 256, (size, size, 3), dtype=np.uint8))
    return folder


def shipped_options(name: str, tmp_path: Path) -> dict:
    """A shipped zero-shot options file, with the option and results files named absolutely and stand-ins for
    ../shared (the import maps rows to images by their order only)."""
    opt = read_options(ROOT / 'options' / 'report' / f'{name}.yml')
    opt['sets'] = [str(fake_set(tmp_path / 'sets' / 'Set5', 5)), str(fake_set(tmp_path / 'sets' / 'Set14', 14))]
    for arm in opt['arms'].values():
        if 'options' in arm:
            arm['options'] = str(ROOT / arm['options'])
    for arm in opt['arms'].values():
        if 'weights' in arm:
            arm['weights'] = str(ROOT / arm['weights'])
    if 'official' in opt.get('start', {}):
        (tmp_path / 'Pretrained.index').write_text('')
        opt['start'] = {'official': str(tmp_path / 'Pretrained')}
    elif 'start' in opt:
        opt['start']['train']['options'] = str(ROOT / opt['start']['train']['options'])
    opt['import'] = str(ROOT / opt['import'])
    return opt


@pytest.mark.parametrize('name', sorted(IMPORTS))
def test_the_shipped_options_reproduce_the_benchmarks_results_files(name, tmp_path):
    exp = ZeroShotExperiment.from_opt(shipped_options(name, tmp_path), tmp_path)
    report = run_zero_shot(exp, tmp_path)
    ours = json.loads((report.parent / 'summary.json').read_text())['summary']
    theirs = json.loads((ROOT / IMPORTS[name]).read_text())['summary']
    assert set(ours) == {k for k in theirs if k != 'ablation'}
    for key, s in ours.items():
        for m in ('bicubic', 'pretrained', 'mzsr0', 'mzsr1', 'mzsr10', 'zssr_final', 'time_ratio_to_equal_psnr'):
            assert s.get(m) == pytest.approx(theirs[key].get(m), abs=1e-9), (key, m)
    text = report.read_text()
    for arm_kernel, figures in theirs.get('ablation', {}).items():
        arm, kernel = arm_kernel.split('/')
        row = next(line for line in text.splitlines() if line.startswith(f'| {arm} |'))
        assert ' / '.join(f'{figures[f"mzsr{n}"]:.2f}' for n in (0, 1, 10)) in row
    assert (report.parent / 'report.html').is_file() and (report.parent / 'psnr_vs_time.png').is_file()
    kept = ROOT / 'benchmarks' / 'results' / name.replace('_x2', '') / 'report.md'  # the copy the docs link to
    tables = [[line for line in path.read_text().split('## Networks')[0].splitlines() if line.startswith('| ')]
              for path in (report, kept)]
    assert tables[0] == tables[1]


def test_the_blind_options_reproduce_the_blind_benchmarks_results_file(tmp_path):
    exp = ZeroShotExperiment.from_opt(shipped_options('mzsr_x2_blind', tmp_path), tmp_path)
    report = run_zero_shot(exp, tmp_path)
    ours = json.loads((report.parent / 'summary.json').read_text())['blind']
    theirs = json.loads((ROOT / 'benchmarks/results/blind_sr/blind_sr_cpu.json').read_text())['summary']
    assert set(ours) == set(theirs) == {f'{s}/{m}' for s in ('Set5', 'Set14', 'all') for m in ('own', 'official')}
    for key, s in ours.items():
        for m in ('bicubic', 'mzsr_default', 'mzsr_estimated', 'mzsr_unfiltered', 'mzsr_true', 'mzsr_wrong',
                  'gap_closed_of_means', 'estimate_s'):
            assert s[m] == pytest.approx(theirs[key][m], abs=1e-9), (key, m)
        assert s['kernel_psnr'] == pytest.approx(theirs[key]['kernel_psnr'], abs=1e-9)
    assert (report.parent / 'blind_kernels.png').is_file()
    kept = ROOT / 'benchmarks' / 'results' / 'blind_sr' / 'report.md'
    tables = [[line for line in path.read_text().split('## Networks')[0].splitlines() if line.startswith('| ')]
              for path in (report, kept)]
    assert tables[0] == tables[1]


def test_paired_differences_by_hand():
    """[1, 2, 3]: mean 2, standard error 1 / sqrt(3), t(0.975, 2) = 4.302653: half-width 2.484138; all above 0."""
    mean, half, share = paired([1., 2., 3.])
    assert mean == 2. and half == pytest.approx(2.484138, abs=1e-6) and share == 1.
    assert paired([-1., 1.])[2] == .5


def test_the_sensitivity_by_hand():
    """Eigenvalues 4 and 1 along the axes: scaled by 1.3 the covariance is 30 % off; turned 90° it is diag(1, 4), off
    by sqrt(18) / sqrt(17); PSNRs against the true (30) and default (29) kernel read per image."""
    from srdistill.core.kernel_predictor import covariance
    from srdistill_plugin.experiment.zero_shot_blind import sensitivity_summary
    assert np.allclose(covariance((4., 1., np.pi / 2)), np.diag([1., 4.]))
    rows = [{'true_params': (4., 1., 0.), 'models': {'a': {'mzsr_true': 30., 'mzsr_default': 29.,
                                                           'mzsr_scale1.3': scaled, 'mzsr_turn90': 28.}}}
            for scaled in (29.5, 28.5)]
    out = sensitivity_summary(rows, 'a', (1.3, ), (90, ))
    assert out['scale1.3'] == pytest.approx(
        {'mzsr': 29., 'covariance_error': .3, 'minus_true': -1., 'minus_default': 0., 'beats_default': .5})
    assert out['turn90']['covariance_error'] == pytest.approx(np.sqrt(18 / 17))
    assert out['turn90']['minus_default'] == -1. and out['turn90']['beats_default'] == 0.


def test_the_summary_of_a_set_by_hand():
    """Two images: ZSSR's raw network reaches MZSR(1)'s PSNR on the first at iteration 50 (5 s against MZSR(1)'s
    0.5 s: 10x), never on the second."""
    rows = [{'bicubic': [28., .8, 0.], 'mzsr1': [30.5, .9, .5]}, {'bicubic': [26., .7, 0.], 'mzsr1': [33., .95, .25]}]
    zssr = [{'zssr_curve': [[0, 0., 28.], [50, 5., 31.], [100, 10., 32.]], 'zssr_final': [32.5, .92, 12.]},
            {'zssr_curve': [[0, 0., 29.], [50, 4., 30.], [100, 8., 31.]], 'zssr_final': [31.5, .9, 9.]}]
    s = summarize({'rows': rows, 'zssr': zssr, 'ablation': {}})
    assert s['bicubic'] == 27. and s['mzsr1'] == 31.75 and s['ssim']['mzsr1'] == pytest.approx(.925)
    assert s['adapt_time_s'] == {'mzsr1': .375}
    assert s['zssr_final'] == 32. and s['zssr_time_s'] == 10.5
    assert s['zssr_reached_mzsr1'] == 1 and s['zssr_steps_to_mzsr1'] == 50 and s['time_ratio_to_equal_psnr'] == 10.


def record_calls(monkeypatch, module, names: tuple[str, ...], calls: list[str] | None = None) -> list[str]:
    """The names of ``module``'s functions called from now on, in order, appended to ``calls`` (each still runs)."""
    calls = [] if calls is None else calls
    for name in names:
        real = getattr(module, name)
        monkeypatch.setattr(module, name, lambda *a, _real=real, _name=name, **k: calls.append(_name) or _real(*a, **k))
    return calls


def trained_arm(work: Path, name: str, seeds: dict[str, int]) -> None:
    """A finished BasicSR run of ``name`` in the experiment's work folder: checkpoints of differently seeded nets."""
    models = work / 'experiments' / name / 'models'
    models.mkdir(parents=True)
    for stem, seed in seeds.items():
        torch.manual_seed(seed)
        torch.save({'params': MZSRNet(upscale=2).state_dict()}, models / f'{stem}.pth')


def tiny_experiment(tmp_path: Path, photo_dir: Path, more_arms: dict | None = None, kernels: dict | None = None,
                    **arm) -> ZeroShotExperiment:
    torch.manual_seed(0)
    start = tmp_path / 'start.pth'
    torch.save({'params': MZSRNet(upscale=2).state_dict()}, start)
    opt = {'name': 'tiny', 'kind': 'zero_shot', 'scale': 2, 'threads': 1, 'start': {'weights': str(start)},
           'arms': {'direct': {'options': str(ROOT / 'options' / 'mzsr_meta_x2_cpu.yml'), 'total_iter': 2, **arm},
                    **(more_arms or {})},
           'sets': [str(fake_set(tmp_path / 'Tiny', 2, 24))], 'kernels': kernels or {'gd2.0': 'direct'},
           'mzsr_steps': [0, 1], 'zssr': {'sets': ['Tiny'], 'kernels': ['gd2.0'], 'max_iters': 3, 'crop': 16}}
    return ZeroShotExperiment.from_opt(opt, tmp_path)


def test_the_held_out_choice_keeps_the_best_checkpoint_and_the_rows_follow_the_weights(tmp_path, photo_dir,
                                                                                     monkeypatch):
    import srdistill_plugin.experiment.zero_shot_runner as runner_module
    import srdistill_plugin.experiment.zero_shot_table as table_module
    exp = tiny_experiment(tmp_path, photo_dir, choose={'photos': str(photo_dir), 'every': 1, 'crop': 32})
    trained_arm(tmp_path / 'experiments' / 'tiny', 'tiny_direct', {'net_g_1': 1, 'net_g_2': 2, 'net_g_latest': 2})
    run_zero_shot(exp, tmp_path)
    networks = json.loads((tmp_path / 'experiments' / 'tiny' / 'networks.json').read_text())
    curve = {int(k): v for k, v in networks['direct']['choice_curve'].items()}
    assert sorted(curve) == [1, 2] and networks['direct']['chosen'] == max(curve, key=curve.get)
    models = tmp_path / 'experiments' / 'tiny' / 'experiments' / 'tiny_direct' / 'models'
    assert networks['direct']['hash'] == file_hash(models / f'net_g_{networks["direct"]["chosen"]}.pth')
    rows = json.loads((tmp_path / 'experiments' / 'tiny' / 'rows' / 'Tiny_gd2.0.json').read_text())
    assert len(rows) == 4 and all(f'direct:{networks["direct"]["hash"]}' in k for k in rows if 'zssr' not in k)

    calls = record_calls(monkeypatch, table_module, ('mzsr_rows', 'zssr_rows'))
    record_calls(monkeypatch, runner_module, ('mzsr_rows', ), calls)  # the held-out choice's
    run_zero_shot(exp, tmp_path)  # resumed: everything stored
    assert calls == []

    torch.manual_seed(7)  # new weights at the chosen iteration: evaluated anew, the old rows never mixed in
    chosen = models / f'net_g_{networks["direct"]["chosen"]}.pth'
    torch.save({'params': MZSRNet(upscale=2).state_dict()}, chosen)
    run_zero_shot(exp, tmp_path)
    networks = json.loads((tmp_path / 'experiments' / 'tiny' / 'networks.json').read_text())
    assert networks['direct']['hash'] == file_hash(models / f'net_g_{networks["direct"]["chosen"]}.pth')
    assert calls.count('zssr_rows') == 0 and calls.count('mzsr_rows') >= 2  # the choice's and two images' rows
    rows = json.loads((tmp_path / 'experiments' / 'tiny' / 'rows' / 'Tiny_gd2.0.json').read_text())
    assert sum(f'direct:{networks["direct"]["hash"]}' in k for k in rows) == 2 and len(rows) == 6


def test_the_checkpoint_rule_chooses_for_every_arm_that_fixes_no_iteration(tmp_path, photo_dir):
    """The experiment's one ``checkpoint_rule``: an arm without ``checkpoint`` or ``choose`` is chosen by it on the
    table's kernels that arm adapts to; a fixed or own choice stays and is named as not the rule; an arm the table
    gives no kernel is scored on the ablation's kernels where it is an ablation arm, else needs the rule's kernels
    (one line)."""
    from srdistill_plugin.experiment.zero_shot_report import _rule

    more = {'bicubic': {'options': str(ROOT / 'options' / 'mzsr_meta_bicubic_x2_cpu.yml'), 'total_iter': 2},
            'fixed': {'options': str(ROOT / 'options' / 'mzsr_meta_x2_cpu.yml'), 'total_iter': 4, 'checkpoint': 3},
            'own': {'branch': {'of': 'direct', 'at': 1}, 'total_iter': 3,
                    'choose': {'photos': str(photo_dir), 'kernels': ['gd2.0'], 'steps': 0}}}
    kernels = {'gd0.2': 'direct', 'gd2.0': 'direct', 'gb1.3': 'bicubic'}
    rule = {'photos': str(photo_dir), 'every': 50, 'steps': 1, 'crop': 32}
    torch.manual_seed(0)
    torch.save({'params': MZSRNet(upscale=2).state_dict()}, tmp_path / 'start.pth')
    opt = {'name': 'tiny', 'kind': 'zero_shot', 'scale': 2, 'start': {'weights': str(tmp_path / 'start.pth')},
           'arms': {'direct': {'options': str(ROOT / 'options' / 'mzsr_meta_x2_cpu.yml'), 'total_iter': 2}, **more},
           'sets': [str(fake_set(tmp_path / 'Tiny', 2, 24))], 'kernels': kernels, 'checkpoint_rule': rule}
    exp = ZeroShotExperiment.from_opt(opt, tmp_path)
    direct, bicubic = exp.arms['direct'], exp.arms['bicubic']
    assert direct.by_rule and direct.choose.kernels == ('gd0.2', 'gd2.0') and direct.choose.every == 50
    assert bicubic.by_rule and bicubic.choose.kernels == ('gb1.3', ) and bicubic.choose.crop == 32
    assert not exp.arms['fixed'].by_rule and exp.arms['fixed'].choose is None and exp.arms['fixed'].checkpoint == 3
    assert not exp.arms['own'].by_rule and exp.arms['own'].choose.steps == 0

    class Text:
        def __init__(self):
            self.lines = []

        def text(self, line):
            self.lines.append(line)

    report = Text()
    _rule(report, exp, tmp_path)
    assert 'direct by the rule (gd0.2, gd2.0, direct_x2 step sizes)' in report.lines[0]
    assert 'fixed fixed at 3 by its options (not the rule)' in report.lines[0]
    assert 'own by its own choice (not the rule)' in report.lines[0]

    opt['kernels'] = {'gd2.0': 'direct'}  # bicubic adapts to no kernel of the table now
    with pytest.raises(SRDistillError, match=r"^option checkpoint_rule.kernels: arm 'bicubic' adapts to no kernel"):
        ZeroShotExperiment.from_opt(opt, tmp_path)
    exp = ZeroShotExperiment.from_opt({**opt, 'checkpoint_rule': {**rule, 'kernels': ['gd2.0']}}, tmp_path)
    assert exp.arms['bicubic'].choose.kernels == ('gd2.0', ) and exp.arms['bicubic'].by_rule
    ablation = {'arms': ['direct', 'bicubic'], 'sets': ['Tiny'], 'kernels': ['gd0.2']}
    exp = ZeroShotExperiment.from_opt({**opt, 'kernels': {'gd0.2': 'direct', 'gd2.0': 'direct'}, 'ablation': ablation},
                                      tmp_path)
    assert exp.arms['bicubic'].choose.kernels == ('gd0.2', ) and exp.arms['bicubic'].by_rule  # the ablation's kernels
    assert exp.arms['direct'].choose.kernels == ('gd0.2', 'gd2.0')  # an arm of the table keeps the table's


def test_an_average_arm_is_the_mean_of_its_window_and_its_choice_shows_the_curve_sets(tmp_path, photo_dir):
    average = {'average': {'of': 'direct', 'window': 2},
               'choose': {'photos': str(photo_dir), 'every': 1, 'curve_sets': ['Tiny'], 'curve_steps': [0]}}
    exp = tiny_experiment(tmp_path, photo_dir, more_arms={'avg': average}, kernels={'gd2.0': 'avg'}, checkpoint=2)
    trained_arm(tmp_path / 'experiments' / 'tiny', 'tiny_direct', {'net_g_1': 1, 'net_g_2': 2, 'net_g_latest': 2})
    report = run_zero_shot(exp, tmp_path)
    models = tmp_path / 'experiments' / 'tiny' / 'experiments' / 'tiny_direct' / 'models'
    first, second = (torch.load(models / f'net_g_{i}.pth')['params'] for i in (1, 2))
    averaged = torch.load(tmp_path / 'experiments' / 'tiny' / 'averages' / 'avg' / 'models' / 'net_g_2.pth')
    assert averaged['members'] == [1, 2]
    for key, value in averaged['params'].items():
        assert torch.allclose(value, (first[key] + second[key]) / 2)
    networks = json.loads((tmp_path / 'experiments' / 'tiny' / 'networks.json').read_text())
    assert networks['avg']['chosen'] == 2 and set(networks['avg']['curves']['2']) == {'held-out', 'Tiny'}
    assert set(networks['avg']['curves']['2']['Tiny']) == {'mzsr0', 'mzsr1'}
    assert '## Checkpoint choice: avg' in report.read_text() and (report.parent / 'choice_avg.png').is_file()


def test_a_branch_starts_from_its_arms_state_once(tmp_path):
    from srdistill_plugin.zero_shot.checkpoints import seed_branch
    base = tmp_path / 'base'
    for sub, name in (('training_states', '100.state'), ('models', 'net_g_100.pth'), ('models', 'net_g_200.pth')):
        (base / sub).mkdir(parents=True, exist_ok=True)
        (base / sub / name).write_text(name)
    seed_branch(base, tmp_path / 'branch', 100)
    assert sorted(str(p.relative_to(tmp_path / 'branch')) for p in (tmp_path / 'branch').rglob('*.*')) == [
        'models/net_g_100.pth', 'training_states/100.state']
    (base / 'models' / 'net_g_100.pth').write_text('changed')
    seed_branch(base, tmp_path / 'branch', 100)  # already started: left as it is
    assert (tmp_path / 'branch' / 'models' / 'net_g_100.pth').read_text() == 'net_g_100.pth'
    with pytest.raises(SRDistillError, match=r'200\.state: the run has no training state at iteration 200'):
        seed_branch(base, tmp_path / 'other', 200)


def test_a_missing_network_without_a_pool_stops_before_any_work(tmp_path, photo_dir):
    exp = tiny_experiment(tmp_path, photo_dir, checkpoint=1)
    with pytest.raises(SRDistillError, match=r'^option pool: None: no such folder .*missing: direct'):
        run_zero_shot(exp, tmp_path)
    assert not (tmp_path / 'experiments' / 'tiny' / 'rows').exists()


@pytest.mark.parametrize('change, message', [
    (lambda o: o.update(kind='zeroshot'),
     r"^option kind: expected one of \['distillation', 'zero_shot'\], got 'zeroshot'"),
    (lambda o: o['kernels'].update({'gd2.0': 'dirct'}), r"^option kernels.gd2.0: 'dirct' is not one of"),
    (lambda o: o['kernels'].update({'gd9': 'direct'}), r"^option kernels.gd9: 'gd9' is not one of"),
    (lambda o: o['arms']['direct'].update(checkpoint=1400, choose={'photos': '.'}),
     r'^option arms.direct: checkpoint and choose exclude each other'),
    (lambda o: o['arms']['direct'].update(total_iter=1700),
     r'^option arms.direct.total_iter: 1700, but the imported .*ran 1600$'),
    (lambda o: o['zssr'].update(max_iter=5), r"^option zssr.max_iter: unknown \(did you mean 'max_iters'\?\)"),
    (lambda o: o.update(mzsr_steps=[0, -1]), r'^option mzsr_steps: expected a list of whole numbers'),
    (lambda o: o['arms'].update(avg={'average': {'of': 'bicubc', 'window': 100}}),
     r"^option arms.avg.average.of: 'bicubc' is not an arm trained here before it"),
    (lambda o: o['arms'].update(b={'branch': {'of': 'direct', 'at': 1000}, 'total_iter': 900}),
     r'^option arms.b.total_iter: 900 is not past branch.at 1000'),
])
def test_bad_zero_shot_options_are_named_before_any_work(change, message, tmp_path):
    import yaml
    opt = shipped_options('mzsr_x2_official_start', tmp_path)
    change(opt)
    path = tmp_path / 'bad.yml'
    path.write_text(yaml.safe_dump(opt))
    with pytest.raises(SRDistillError, match=message):
        run_zero_shot(load_experiment(str(path), tmp_path), tmp_path)
    assert not (tmp_path / 'experiments').exists()


def test_the_blind_table_estimates_once_and_adds_a_network_at_the_cost_of_its_rows(tmp_path, monkeypatch):
    import srdistill_plugin.experiment.zero_shot_blind as blind_module
    weights = {}
    for name, seed in (('a', 1), ('b', 2)):
        torch.manual_seed(seed)
        weights[name] = tmp_path / f'{name}.pth'
        torch.save({'params': MZSRNet(upscale=2).state_dict()}, weights[name])
    opt = {'name': 'blind', 'kind': 'zero_shot', 'scale': 2, 'threads': 1,
           'sets': [str(fake_set(tmp_path / 'B', 1, 160))],
           'arms': {'a': {'weights': str(weights['a'])}, 'b': {'weights': str(weights['b'])}},
           'blind': {'sets': ['B'], 'arms': ['a'], 'estimate_iters': 2, 'steps': 1, 'zssr_sets': ['B']},
           'zssr': {'max_iters': 2, 'crop': 16}}
    calls = record_calls(monkeypatch, blind_module, ('blind_estimate', 'mzsr_kernel_rows'))
    report = run_zero_shot(ZeroShotExperiment.from_opt(opt, tmp_path), tmp_path)
    assert calls == ['blind_estimate', 'mzsr_kernel_rows']
    row = json.loads((report.parent / 'summary.json').read_text())['blind']['all/a']
    assert {f'mzsr_{case}' for case in ('default', 'estimated', 'unfiltered', 'true', 'wrong')} <= set(row)
    assert 'zssr_estimated' in row
    opt['blind']['arms'] = ['a', 'b']
    run_zero_shot(ZeroShotExperiment.from_opt(opt, tmp_path), tmp_path)
    assert calls == ['blind_estimate', 'mzsr_kernel_rows', 'mzsr_kernel_rows']  # the estimate is kept
    assert '| all | b |' in report.read_text()
    schedules, real = [], blind_module.mzsr_kernel_rows
    monkeypatch.setattr(blind_module, 'mzsr_kernel_rows', lambda *a: schedules.append(a[6]) or real(*a))
    opt['arms']['b']['schedule'] = 'task_lr'
    run_zero_shot(ZeroShotExperiment.from_opt(opt, tmp_path), tmp_path)
    assert schedules == ['task_lr']  # b adapted with its own step sizes, its rows keyed apart; a's kept


def test_imported_blind_rows_count_only_for_the_weights_and_step_sizes_that_made_them(tmp_path):
    """An import's network rows stand for the weights hash its file recorded, adapted at the official direct_x2 step
    sizes: an arm with other weights, or adapting at other step sizes, finds no row and is evaluated anew."""
    from srdistill_plugin.experiment.zero_shot_blind import BlindTable
    imported = {'B': {'img_001': {'estimate': {'est': 1.0}, 'models': {'a': {'mzsr_true': 30.0}}}}}
    test_set = fake_set(tmp_path / 'B', 1, 160)
    for hash_, schedule, found in (('old', 'direct_x2', True), ('new', 'direct_x2', False), ('old', 'task_lr', False)):
        opt = {'name': 'blind', 'kind': 'zero_shot', 'scale': 2, 'threads': 1,
               'sets': [str(test_set)], 'arms': {'a': {'weights': str(tmp_path / 'a.pth'), 'schedule': schedule}},
               'blind': {'sets': ['B'], 'arms': ['a'], 'estimate_iters': 2, 'steps': 1}}
        work = tmp_path / f'{hash_}_{schedule}'
        table = BlindTable(ZeroShotExperiment.from_opt(opt, tmp_path), work, net=None, hashes={'a': hash_})
        table.seed_imported(imported, {'a': 'old'})
        assert table.store('B').get(table.estimate_key('B', 'img_001')) == {'est': 1.0}  # estimates hold for any net
        assert (table.store('B').get(table.mzsr_key('img_001', 'a')) == {'mzsr_true': 30.0}) is found, (hash_, schedule)


def constant_estimator(path: Path, variance: float) -> None:
    """A learned-estimator file whose network answers the isotropic kernel of ``variance`` for every image."""
    from srdistill.core.kernel_predictor import KernelPredictor, PredictorSettings, save_predictor

    torch.manual_seed(0)
    net = KernelPredictor(num_feat=4, dilations=(1, ))
    torch.nn.init.zeros_(net.head.weight)
    with torch.no_grad():
        net.head.bias.copy_(torch.tensor([np.log(variance), 0., 0., 0.]))
    save_predictor(path, net, PredictorSettings(), {})


def learned_blind_options(tmp_path: Path, variance: float) -> dict:
    """A two-image blind table with one random network and a constant learned estimator (``est.pth``)."""
    constant_estimator(tmp_path / 'est.pth', variance)
    torch.save({'params': MZSRNet(upscale=2).state_dict()}, tmp_path / 'a.pth')
    return {'name': 'blind', 'kind': 'zero_shot', 'scale': 2, 'threads': 1,
            'sets': [str(fake_set(tmp_path / 'B', 2, 64))], 'arms': {'a': {'weights': str(tmp_path / 'a.pth')}},
            'blind': {'sets': ['B'], 'arms': ['a'], 'steps': 1, 'estimator': 'learned',
                      'estimator_file': str(tmp_path / 'est.pth')}}


def test_a_new_estimator_re_adapts_every_network_to_its_estimate(tmp_path):
    """A network's row holds its MZSR with the estimated kernel, so another estimator file must not reuse it (it did:
    the official arm kept its old estimate's figure under a new estimator)."""
    opt = learned_blind_options(tmp_path, variance=3.)
    report = run_zero_shot(ZeroShotExperiment.from_opt(opt, tmp_path), tmp_path)
    first = json.loads((report.parent / 'summary.json').read_text())['blind']['all/a']
    constant_estimator(tmp_path / 'est.pth', 0.5)  # a far narrower kernel than 3
    run_zero_shot(ZeroShotExperiment.from_opt(opt, tmp_path), tmp_path)
    second = json.loads((report.parent / 'summary.json').read_text())['blind']['all/a']
    assert second['mzsr_true'] == first['mzsr_true']  # the same LRs, network and adaptation
    assert second['mzsr_estimated'] != first['mzsr_estimated']
    store = json.loads((tmp_path / 'experiments' / 'blind' / 'blind' / 'B.json').read_text())
    assert len([k for k in store if '|mzsr|' in k]) == 4  # two images x two estimators


def test_the_blind_table_with_the_learned_estimator_and_corrupted_lrs(tmp_path):
    """``estimator: learned``: the estimator file's kernel is the estimate (no unfiltered case), its covariance error
    is reported beside the default's; JPEG and noise on the LRs key their rows apart and leave the kernels' draws
    unchanged."""
    from srdistill.core.kernels import gaussian_kernel

    opt = learned_blind_options(tmp_path, variance=3.)
    report = run_zero_shot(ZeroShotExperiment.from_opt(opt, tmp_path), tmp_path)
    row = json.loads((report.parent / 'summary.json').read_text())['blind']['all/a']
    assert 'mzsr_unfiltered' not in row and row['estimate_s'] < 5
    assert 'Estimate: the learned estimator' in report.read_text()
    store = json.loads((tmp_path / 'experiments' / 'blind' / 'blind' / 'B.json').read_text())
    estimates = [v for k, v in store.items() if '|estimate|learned:' in k]
    assert len(estimates) == 2 and all(np.allclose(e['estimated_kernel'], gaussian_kernel(15, 3., 3., 0.), atol=1e-6)
                                       for e in estimates)
    opt['blind'].update(lr_jpeg_quality=75, lr_noise_sigma=2)
    opt['name'] = 'blind'
    run_zero_shot(ZeroShotExperiment.from_opt(opt, tmp_path), tmp_path)
    store = json.loads((tmp_path / 'experiments' / 'blind' / 'blind' / 'B.json').read_text())
    corrupted = [k for k in store if k.endswith('|noise=2|jpeg=75')]
    assert len(corrupted) == 4  # the two estimates and the two networks' rows, beside the clean ones
    clean = [k for k in store if '|estimate|' in k and 'jpeg' not in k]
    assert store[clean[0]]['bicubic'] != store[[k for k in corrupted if '|estimate|' in k][0]]['bicubic']


def test_a_set_and_kernel_another_worker_holds_is_left_to_it(tmp_path, photo_dir):
    from srdistill.core.file_lock import FileLock
    exp = tiny_experiment(tmp_path, photo_dir, checkpoint=1)
    trained_arm(tmp_path / 'experiments' / 'tiny', 'tiny_direct', {'net_g_1': 1, 'net_g_latest': 2})
    held = FileLock(tmp_path / 'experiments' / 'tiny' / 'locks' / 'Tiny_gd2.0.lock')
    assert held.acquire(blocking=False)  # as another worker would
    report = run_zero_shot(exp, tmp_path)
    assert not (tmp_path / 'experiments' / 'tiny' / 'rows' / 'Tiny_gd2.0.json').exists()
    assert 'Not yet evaluated: Tiny/gd2.0.' in report.read_text()
    held.release()
    report = run_zero_shot(exp, tmp_path)
    assert '| Tiny | gd2.0 |' in report.read_text() and 'Not yet evaluated' not in report.read_text()
