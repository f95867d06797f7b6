"""The experiment/report tool (srdistill-experiment): coverage-aware selection, bad options before any work, a tiny
experiment end to end (distill -> students -> validation-selected tests -> report.md/html), resuming after a kill
and refusing to mix results made with other settings."""
import base64
import copy
import dataclasses
import json
import re
import shutil
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import torch
import yaml

from srdistill.core.errors import SRDistillError
from srdistill.core.file_lock import FileLock
from srdistill.core.set_diagnostics import coverage, diversity, k_center_greedy
from srdistill_plugin.distill.runner import DistillRun
from srdistill_plugin.experiment.options import Convergence, ExperimentOptions, PoolCrops, TrainingRecipe, Validation
from srdistill_plugin.experiment.runner import (FULL_POOL, Experiment, Run, convergence_gain, plan_runs,
                                                  seconds_per_iter, select_runs)
from srdistill_plugin.experiment.report import convergence_text, describe_crossing

from .conftest import SET5, run_main
from .helpers.report_options import report_options
from .helpers.warm_python import run_python
from .test_distillation import tiny_options

EDSR_TINY = {'type': 'EDSR', 'num_in_ch': 3, 'num_out_ch': 3, 'num_feat': 8, 'num_block': 1, 'upscale': 4}
STUDENTS = {'EDSR': {'network_g': EDSR_TINY},  # three BasicSR architectures on the same sets: an option swap each
            'SRResNet': {'network_g': {'type': 'MSRResNet', 'num_feat': 8, 'num_block': 1, 'upscale': 4}},
            'SwinIR': {'network_g': {'type': 'SwinIR', 'upscale': 4, 'img_size': 8, 'window_size': 8, 'depths': [1],
                                     'embed_dim': 12, 'num_heads': [2], 'mlp_ratio': 2,
                                     'upsampler': 'pixelshuffledirect'}}}


def test_k_center_greedy_covers_clusters_before_repeating_one():
    rng = np.random.default_rng(0)
    centres = np.array([[0, 0], [10, 0], [0, 10], [10, 10]], float)
    features = np.concatenate([c + rng.normal(0, .1, (20, 2)) for c in centres])
    picks = k_center_greedy(features, 4)
    assert picks[0] == 0 and sorted(p // 20 for p in picks) == [0, 1, 2, 3]
    assert k_center_greedy(features[:3], 5) == k_center_greedy(features[:3], 3) + k_center_greedy(features[:3], 2)
    assert coverage(features, features[picks]) < coverage(features, features[:4])  # four of one cluster cover less
    assert diversity(features[picks]) > diversity(features[:4]) and diversity(features[:1]) == 0


def test_the_report_names_where_two_arms_cross():
    points = [(0.1, -0.5), (0.68, -0.1), (2, 0.2), (10, 0.3)]
    text = describe_crossing('coverage', 'random_real', points, 'budget', lambda b: f'{b:g} %')
    assert text.startswith('coverage vs random_real: crosses to above between 0.68 % and 2 % (0.1 %: -0.50')
    assert 'below at every budget measured' in describe_crossing('a', 'b', points[:2], 'budget', str)


def test_the_convergence_rule_reads_each_students_full_pool_and_names_the_missing_ones():
    exp = report_options(students={'EDSR': {}, 'SwinIR': {}}, seeds=[0, 1],
                         sr_train={'total_iter': 10, 'max_iter': 10, 'eval_every': 10},
                         convergence={'min_gain_db': 0.05, 'window_fraction': 0.2})
    rising = {'seed': 0, 'val_curve': {'5': 20.0, '8': 20.5, '10': 21.0}}
    text = convergence_text(exp, {('EDSR', 'full_pool', None): [rising]})
    assert ('EDSR: full pool (1 of 2 seeds): seed 0 +0.500 dB over the last 20% of its 10 iterations; NOT converged'
            in text)
    assert 'SwinIR: no full-pool run finished yet, not measured' in text
    # seeds stopped by the rule at different iterations: each is read at its own end, not the mean up to the shorter
    exp = dataclasses.replace(exp, sr_train=dataclasses.replace(exp.sr_train, max_iter=50))
    short = {'seed': 1, 'val_curve': {'10': 21.0, '20': 21.1}}
    long = {'seed': 0, 'val_curve': {'10': 21.0, '20': 21.2, '30': 21.3, '40': 21.35, '50': 21.39}}
    text = convergence_text(exp, {('EDSR', 'full_pool', None): [short, long]})
    assert ('EDSR: full pool (2 of 2 seeds): seed 0 +0.040 dB over the last 20% of its 50 iterations (continued past '
            'total_iter at the last learning rate), seed 1 +0.040 dB over the last 20% of its 20 iterations '
            '(continued past total_iter at the last learning rate); converged') in text
    assert convergence_gain({'10': 21.0, '20': 21.15}, 0.2) >= 0.05  # their mean up to 20 would read still rising


def experiment_options(photo_dir, **changes) -> dict:
    distill = tiny_options(photo_dir, 'unused')
    for key in ('name', 'scale', 'num_gpu', 'manual_seed', 'pool', 'output'):
        distill.pop(key)
    distill['synthesize'] = {'strength': 0.3, 'steps': 3}
    opt = {'name': 'pytest_report', 'scale': 4, 'threads': 1, 'pool': str(photo_dir),
           'validation': {'holdout_images': 1, 'crop_size': 64}, 'test_sets': [str(SET5)],
           'full_pool': {'crop_size': 64, 'step': 64},
           'arms': ['random_real', 'coverage', 'distilled'], 'default_arm': 'coverage', 'budgets_percent': [5],
           'seeds': [0], 'distill': distill, 'students': {'EDSR': {'network_g': EDSR_TINY}},
           'sweep_student': 'EDSR', 'student_budgets_percent': [5],
           'sr_train': {'total_iter': 20, 'batch_size': 2, 'gt_size': 32, 'eval_every': 10, 'patience_evals': 0,
                        'ema_decay': 0, 'lr': 2e-3}}
    opt.update(changes)
    return opt


def test_the_options_are_read_once_into_typed_values_with_every_default_filled_in(photo_dir, tmp_path):
    opt = experiment_options(photo_dir, sr_train={'total_iter': 20, 'gt_size': 32}, arms=['random_real', 'coverage'])
    for key in ('default_arm', 'sweep_student', 'student_budgets_percent', 'threads', 'full_pool'):
        opt.pop(key)
    exp = ExperimentOptions.from_opt(opt, tmp_path)
    assert exp.sr_train == TrainingRecipe(total_iter=20, gt_size=32, max_iter=20)  # max_iter: total_iter
    assert (exp.sr_train.batch_size, exp.sr_train.lr, exp.sr_train.milestones_fraction) == (16, 5e-4, (0.6, 0.85))
    assert (exp.default_arm, exp.sweep_student, exp.student_budgets_percent, exp.threads) == ('random_real', 'EDSR',
                                                                                             [5], 2)
    assert exp.full_pool == PoolCrops(192, 192) and exp.validation == Validation(1, 64)
    assert exp.convergence == Convergence(min_gain_db=0.05, window_fraction=0.2)
    with pytest.raises(dataclasses.FrozenInstanceError):
        exp.scale = 2
    assert exp.recipe('coverage') == exp.sr_train and opt['sr_train'] == {'total_iter': 20, 'gt_size': 32}


def test_stage_times_say_what_each_stage_ran_on_and_older_records_say_they_did_not(tmp_path):
    from srdistill_plugin.experiment.data import stage_times

    exp = report_options(arms=['random_real'], budgets_percent=[5])
    stages = tmp_path / 'experiments' / 'distill_base' / 'stages'
    stages.mkdir(parents=True)
    (stages / 'select.json').write_text(json.dumps({'seconds': 2.5, 'device': 'cpu: 2 threads'}))
    (stages / 'categorize.json').write_text(json.dumps({'seconds': 1.5}))  # an older version's manifest
    recorded = {'prepare: pool split + full-pool LMDB': 4.0, 'other': {'seconds': 1.0, 'device': 'cpu: 1 thread'}}
    assert stage_times(exp, tmp_path, recorded) == {
        'prepare: pool split + full-pool LMDB': (4.0, None), 'other': (1.0, 'cpu: 1 thread'),
        'distill: select': (2.5, 'cpu: 2 threads'), 'distill: categorize': (1.5, None)}


def report(tmp_path, opt: dict, fault: str | None = None, *args: str) -> subprocess.CompletedProcess:
    """The report command in a process of its own (with ``fault`` injected)."""
    (tmp_path / 'report.yml').write_text(yaml.safe_dump(opt))
    return run_python(['-m', 'srdistill_plugin.commands.experiment', '-opt', 'report.yml', *args], tmp_path, fault)


def report_in_process(tmp_path, opt: dict, monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    from srdistill_plugin.commands.experiment import main

    (tmp_path / 'report.yml').write_text(yaml.safe_dump(opt))
    return run_main(main, ['-opt', 'report.yml', *args], tmp_path, monkeypatch, capsys)


def test_a_run_still_rising_at_total_iter_trains_on_until_converged_or_max_iter(photo_dir, tmp_path):
    sr = {'total_iter': 20, 'eval_every': 10, 'patience_evals': 0, 'gt_size': 32}
    def experiment(**sr_train) -> Experiment:
        return Experiment(ExperimentOptions.from_opt(experiment_options(photo_dir, sr_train=sr_train), tmp_path),
                          tmp_path)

    capped, longer = experiment(**sr), experiment(**sr, max_iter=40)
    rising, flat = {'10': 20.0, '20': 21.0}, {'10': 20.0, '20': 21.0, '30': 21.01}
    assert capped.next_target(0, {}) == longer.next_target(0, {}) == 20  # no patience: one chunk to total_iter
    assert capped.next_target(20, rising) is None and longer.next_target(20, rising) == 30
    assert longer.next_target(30, flat) is None  # +0.006 dB over the last 20 %: converged
    patient = experiment(**{**sr, 'max_iter': 300, 'patience_evals': 2})
    slow = {str(it): 21 + 0.002 * it for it in range(10, 201, 10)}  # +0.02 dB per evaluation
    assert patient.next_target(10, {'10': 20.0}) == 20 and patient.next_target(20, rising) == 30
    assert patient.stalled(slow) and patient.next_target(200, slow) == 210  # +0.08 dB over the last 20 %: on
    assert patient.next_target(10, slow) == 20  # replaying a finished run's chunks: the curve up to 10 counts
    assert longer.next_target(40, {**rising, '30': 22.0, '40': 23.0}) is None  # max_iter
    run = Run('EDSR', FULL_POOL, None, 0)
    assert capped.settings(run) == longer.settings(run)  # raising max_iter continues runs; it does not redo them
    capped.result_path(run).parent.mkdir(parents=True)
    capped.result_path(run).write_text(json.dumps({'last_iter': 20, 'val_curve': rising}))
    assert not capped.unfinished(run) and longer.unfinished(run)


def test_stored_run_settings_name_paths_inside_the_repository_relative_to_it(photo_dir, tmp_path):
    exp = ExperimentOptions.from_opt(experiment_options(photo_dir), tmp_path)
    here, moved = Experiment(exp, tmp_path / 'here'), Experiment(exp, tmp_path / 'moved')
    for experiment in (here, moved):
        experiment.train_dir = experiment.work / 'pool_train'
    run = Run('EDSR', 'coverage', 5, 0)
    settings = here.settings(run)
    assert settings['data']['pool'] == 'experiments/pytest_report/pool_train' and moved.settings(run) == settings
    stored = here.result_path(run).with_suffix('.settings.json')
    stored.parent.mkdir(parents=True)
    stored.write_text(json.dumps({**settings, 'data': {**settings['data'], 'pool': str(here.train_dir)}}))
    here.check_stored_settings([run])  # the absolute form older versions stored: the same settings
    stored.write_text(json.dumps({**settings, 'data': {**settings['data'], 'pool': str(tmp_path / 'elsewhere')}}))
    with pytest.raises(SRDistillError, match='was started with other settings'):
        here.check_stored_settings([run])


def test_fine_tuning_the_generator_longer_redoes_only_the_runs_on_sets_it_samples(photo_dir, tmp_path):
    exp = ExperimentOptions.from_opt(experiment_options(photo_dir), tmp_path)
    longer = dataclasses.replace(exp, distill=copy.deepcopy(exp.distill))
    longer.distill['finetune']['train']['total_iter'] += 100
    before, after = Experiment(exp, tmp_path), Experiment(longer, tmp_path)
    for experiment in (before, after):
        experiment.train_dir = experiment.work / 'pool_train'
    runs = [Run('EDSR', arm, 5, 0) for arm in ('random_real', 'coverage', 'distilled')]
    for run in runs:
        stored = before.result_path(run).with_suffix('.settings.json')
        stored.parent.mkdir(parents=True, exist_ok=True)
        settings = before.settings(run)
        settings['data'].setdefault('finetune', exp.distill['finetune'])  # as versions before this one stored it
        stored.write_text(json.dumps(settings))
    assert 'finetune' not in before.settings(runs[0])['data'] and 'finetune' in before.settings(runs[2])['data']
    before.check_stored_settings(runs)  # the generator's options stored with every set: still the same settings
    after.check_stored_settings(runs[:2])  # random_real and coverage never sample the generator
    with pytest.raises(SRDistillError, match='run EDSR_distilled_5pct_s0 was started with other settings'):
        after.check_stored_settings(runs)


class ResumedTraining:
    """A stand-in for the run's BasicSR training, resumed from the state its worker saved at 20 before it died."""

    def __init__(self):
        self.current_iter, self.closed, self.finished = 20, False, False

    def train_to(self, target: int) -> None:
        if target > self.current_iter:
            time.sleep(0.05)
            self.current_iter = target

    def finish(self) -> None:
        self.finished = True

    def close(self) -> None:
        self.closed = True


def test_a_chunk_trained_by_a_worker_that_died_before_timing_it_is_not_timed_by_its_replay(photo_dir, tmp_path,
                                                                                         monkeypatch):
    sr = {'total_iter': 30, 'eval_every': 10, 'patience_evals': 5, 'gt_size': 32}
    exp = Experiment(ExperimentOptions.from_opt(experiment_options(photo_dir, sr_train=sr), tmp_path), tmp_path)
    run = Run('EDSR', FULL_POOL, None, 0)
    training = ResumedTraining()
    monkeypatch.setattr('srdistill_plugin.experiment.runner.student_options', lambda *args: {})
    monkeypatch.setattr(exp, 'start_training', lambda run, opt_file: training)
    exp.store(run, 'curve').put('10', 20.0)  # chunk 10 recorded; chunk 20 trained and saved, its time not recorded
    exp.store(run, 'curve').put('20', 21.0)
    exp.store(run, 'curve').put('30', 22.0)
    exp.store(run, 'time').put('10', {'seconds': 4.0, 'device': 'cpu: 1 thread', 'iterations': 10})
    exp.train(run)
    clock = exp.store(run, 'time').data
    assert clock['20']['seconds'] is None and clock['30']['seconds'] >= 0.05
    assert [clock[k]['iterations'] for k in ('10', '20', '30')] == [10, 10, 10]
    assert seconds_per_iter(clock.values()) == pytest.approx((4.0 + clock['30']['seconds']) / 20)
    assert training.finished and training.closed


@pytest.mark.parametrize('change, message', [
    ({'arms': ['random_real', 'magic']}, "option arms: unknown arm 'magic'"),
    ({'students': {'X': {'network_g': {'type': 'NoSuchNet', 'upscale': 4}}}},
     "option students.X.network_g.type: 'NoSuchNet' is not in BasicSR's ARCH_REGISTRY"),
    ({'students': {'EDSR': {'network_g': {**EDSR_TINY, 'upscale': 2}}}},
     "option students.EDSR.network_g.upscale: 2 differs from the distilled sets' scale 4"),
    ({'budgets_percent': [0.5, 150]}, 'option budgets_percent: 150 is not a percentage of the pool'),
    ({'pool': 'no/such/folder'}, 'option pool: '),
    ({'test_sets': ['no/Set5']}, 'option test_sets: '),
    ({'sr_train': {'total_iters': 10}}, "option sr_train.total_iters: unknown (did you mean 'total_iter'?)"),
    ({'validaton': {'holdout_images': 2}}, "option validaton: unknown (did you mean 'validation'?)"),
    ({'threads': 'one'}, "option threads: expected an integer >= 1, got 'one'"),
    ({'students': {'EDSR': {'network_g': {**EDSR_TINY, 'num_fet': 8}}}},
     "option students.EDSR.network_g.num_fet: unknown (did you mean 'num_feat'?)"),
    ({'sr_train': {'total_iter': 20, 'max_iter': 10}}, 'option sr_train.max_iter: expected an integer >= total_iter'),
])
def test_bad_options_stop_before_any_work(photo_dir, tmp_path, change, message, monkeypatch, capsys):
    code, _, err = report_in_process(tmp_path, experiment_options(photo_dir, **change), monkeypatch, capsys)
    assert code == 2 and err.strip().splitlines()[-1].startswith(f'error: {message}'), err
    assert not (tmp_path / 'experiments').exists()


def test_a_bad_option_through_the_command_is_one_line_exit_2(photo_dir, tmp_path):
    proc = report(tmp_path, experiment_options(photo_dir, arms=['random_real', 'magic']))
    assert proc.returncode == 2 and proc.stderr.strip().splitlines()[-1].startswith("error: option arms: unknown arm")
    assert not (tmp_path / 'experiments').exists()


@pytest.mark.parametrize('args, message', [
    (['--workers', '0'], 'error: --workers: expected a positive integer, got 0'),
    (['--num_gpu', '2'], 'error: --num_gpu: expected 0 (CPU) or 1, got 2'),
    (['--runs', 'EDSR_*', 'SwinIR_*'], "error: --runs: 'SwinIR_*' matches none of the runs (e.g. EDSR_full_pool_s0, "
                                       "EDSR_distilled_5pct_s0)"),
    pytest.param(['--num_gpu', '1'], 'error: --num_gpu 1: this machine has no CUDA device that torch can use',
                 marks=pytest.mark.skipif(torch.cuda.is_available(), reason='this machine has a CUDA device')),
])
def test_bad_worker_options_stop_before_any_work(photo_dir, tmp_path, args, message, monkeypatch, capsys):
    code, _, err = report_in_process(tmp_path, experiment_options(photo_dir), monkeypatch, capsys, *args)
    assert code == 2 and err.strip().splitlines()[-1] == message, err
    assert not (tmp_path / 'experiments').exists()


def test_run_patterns_pick_runs_pattern_by_pattern(photo_dir, tmp_path):
    exp = ExperimentOptions.from_opt(experiment_options(photo_dir, seeds=[0, 1], students=STUDENTS), tmp_path)
    names = [r.name for r in select_runs(plan_runs(exp), ['SwinIR_*pct_s1', '*_coverage_*', 'SwinIR_*pct_*'])]
    assert names[0] == 'SwinIR_random_real_5pct_s1' and names[:3] == [
        'SwinIR_random_real_5pct_s1', 'SwinIR_coverage_5pct_s1', 'SwinIR_distilled_5pct_s1']
    assert names[3:] == ['EDSR_coverage_5pct_s0', 'EDSR_coverage_5pct_s1', 'SRResNet_coverage_5pct_s0',
                         'SRResNet_coverage_5pct_s1', 'SwinIR_coverage_5pct_s0', 'SwinIR_random_real_5pct_s0',
                         'SwinIR_distilled_5pct_s0']


@pytest.mark.slow
def test_tiny_experiment_resumes_after_a_kill_and_writes_the_report(photo_dir, tmp_path):
    opt = experiment_options(photo_dir, students=STUDENTS, arms=['coverage', 'distilled'])
    killed = report(tmp_path, opt, fault='kill:torch.save:1:coverage_5pct_s0/checkpoint.incomplete/net_g_20')
    assert killed.returncode == -9  # the command died while a student's training wrote its checkpoint
    runs = tmp_path / 'experiments' / 'pytest_report' / 'runs'
    assert (runs / 'EDSR_full_pool_s0.json').is_file() and not (runs / 'EDSR_coverage_5pct_s0.json').exists()
    finished_before = (runs / 'EDSR_full_pool_s0.json').read_text()

    proc = report(tmp_path, opt)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (runs / 'EDSR_full_pool_s0.json').read_text() == finished_before  # not redone
    log = (runs / 'EDSR_coverage_5pct_s0.log').read_text()
    assert 'Resuming training from epoch: ' in log and 'iter: 10.' in log
    results = {(st, r): json.loads((runs / f'{st}_{r}_s0.json').read_text())
               for st in STUDENTS for r in ('full_pool', 'coverage_5pct', 'distilled_5pct')}
    for r in results.values():
        assert set(r['val_curve']) == {'10', '20'}
        assert r['best_iter'] == (10 if r['val_curve']['10'] >= r['val_curve']['20'] else 20)  # argmax, earliest
        assert 10 < r['test_best']['Set5']['psnr'] < 40 and r['seconds_per_iter'] > 0  # 20 iterations: far from bicubic
    md = (tmp_path / 'results' / 'pytest_report' / 'report.md').read_text()
    by_budget = md.split('## Test PSNR by budget (EDSR)')[1].split('\n## ')[0]
    for arm in ('coverage', 'distilled'):
        stored = results[('EDSR', f'{arm}_5pct')]
        row = next(line for line in by_budget.splitlines() if line.startswith(f'| {arm} | 5 % |'))
        assert f"**{stored['test_best']['Set5']['psnr']:.2f}**" in row and f"| {stored['best_iter']} | 1 |" in row
    assert '9 of 9 training runs finished' in md and all(f'| {st} | distilled | 5 % |' in md for st in STUDENTS)
    assert md and 'NOT CLIP features' in md and 'Convergence rule' in md and 'coverage vs full pool: ' in md
    recorded = json.loads((tmp_path / 'experiments' / 'pytest_report' / 'stage_times.json').read_text())
    prepare_seconds = recorded['prepare: pool split + full-pool LMDB']['seconds']
    assert prepare_seconds > 0 and f'| prepare: pool split + full-pool LMDB | {prepare_seconds:.2f} | cpu: 1 thread |' \
        in md
    # every data stage says what it ran on: the fine-tuning its ranks and threads, as its training record has them
    assert re.search(r'\| distill: select \| [\d.]+ \| cpu: 1 thread \|', md), md
    assert re.search(r'\| distill: finetune \| [\d.]+ \| cpu, 1 rank\(s\), 1 thread\(s\) each \|', md), md
    assert '| EDSR | full_pool | full pool | ' in md and ' | cpu: 1 thread |' in md
    for figure in ('psnr_vs_budget.png', 'psnr_vs_iteration.png', 'gradient_energy.png', 'crops.png',
                   'preview_coverage.png', 'preview_distilled.png'):
        assert f']({figure})' in md
        png = (tmp_path / 'results' / 'pytest_report' / figure).read_bytes()
        assert png[:4] == b'\x89PNG'
    html = (tmp_path / 'results' / 'pytest_report' / 'report.html').read_text()
    assert html.count('data:image/png;base64,') == md.count('![') and 'src="psnr' not in html
    embedded = html.split('data:image/png;base64,')[1].split('"')[0]
    assert base64.b64decode(embedded)[:4] == b'\x89PNG'

    assert 'region: bicubic, full_pool, coverage, distilled, HR (EDSR, 5 %' in md
    shutil.rmtree(tmp_path / 'experiments' / 'pytest_report' / 'experiments' / 'EDSR_coverage_5pct_s0' / 'models')
    proc = report(tmp_path, opt, None, '--report-only')  # a run kept as its result alone still reports, uncropped
    md = (tmp_path / 'results' / 'pytest_report' / 'report.md').read_text()
    assert proc.returncode == 0 and '9 of 9 training runs finished' in md and '| EDSR | coverage | 5 % |' in md
    assert 'region: bicubic, full_pool, distilled, HR (EDSR, 5 %' in md

    opt['sr_train']['lr'] = 1e-3  # the same experiment name with other settings: refused, nothing mixed
    proc = report(tmp_path, opt)
    assert proc.returncode == 2 and 'was started with other settings' in proc.stderr.strip().splitlines()[-1]


HOLD_LOCK = """
import sys, time, subprocess
from srdistill.core.file_lock import FileLock
lock = FileLock(sys.argv[1]); lock.acquire()
if sys.argv[2] == 'child':  # hand the lock to a child that outlives this process
    subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'], pass_fds=(lock.fd, ))
print('held', flush=True)
time.sleep(60)
"""


@pytest.mark.parametrize('holder', ['alone', 'child'])
def test_a_run_lock_is_exclusive_and_dropped_only_when_every_holder_is_gone(tmp_path, holder):
    path = tmp_path / 'locks' / 'run.lock'
    proc = subprocess.Popen([sys.executable, '-c', HOLD_LOCK, str(path), holder], stdout=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        assert proc.stdout.readline().strip() == 'held'
        assert not FileLock(path).acquire(blocking=False)
        proc.kill()
        proc.wait()
        lock = FileLock(path)
        assert lock.acquire(blocking=False) == (holder == 'alone')  # a training child still holds its run
    finally:
        subprocess.run(['pkill', '-9', '-s', str(proc.pid)])  # the holder's session: the child too
    lock.release()


@pytest.mark.slow
def test_workers_share_an_experiment_without_training_a_run_twice(photo_dir, tmp_path):
    opt = experiment_options(photo_dir, arms=['random_real', 'coverage'])
    runs = tmp_path / 'experiments' / 'pytest_report' / 'runs'
    proc = report(tmp_path, opt, None, '--runs', 'EDSR_random_*', '--no-report')  # one run, no report
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sorted(p.name for p in runs.glob('*.json') if p.name.count('.') == 1) == ['EDSR_random_real_5pct_s0.json']
    assert json.loads((runs / 'EDSR_random_real_5pct_s0.json').read_text())['device'].startswith('cpu: ')
    assert not (tmp_path / 'results').exists()
    held = FileLock(tmp_path / 'experiments' / 'pytest_report' / 'locks' / 'EDSR_coverage_5pct_s0.lock')
    assert held.acquire()  # as if another worker were training it: this one leaves it alone
    proc = report(tmp_path, opt)
    held.release()
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (runs / 'EDSR_random_real_5pct_s0.json').is_file() and not (runs / 'EDSR_coverage_5pct_s0.log').exists()
    assert '2 of 3 training runs finished' in (tmp_path / 'results' / 'pytest_report' / 'report.md').read_text()
    finished_before = (runs / 'EDSR_full_pool_s0.json').read_text()

    opt['seeds'] = [0, 1]
    proc = report(tmp_path, opt, None, '--workers', '2')
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (runs / 'EDSR_full_pool_s0.json').read_text() == finished_before
    for name in ('full_pool_s0', 'full_pool_s1', 'random_real_5pct_s0', 'random_real_5pct_s1', 'coverage_5pct_s0',
                 'coverage_5pct_s1'):
        assert json.loads((runs / f'EDSR_{name}.json').read_text())['last_iter'] == 20
        assert (runs / f'EDSR_{name}.log').read_text().count('Start training from epoch: 0, iter: 0') == 1, name
    assert '6 of 6 training runs finished' in (tmp_path / 'results' / 'pytest_report' / 'report.md').read_text()


@pytest.mark.parametrize('stop, status', [(signal.SIGTERM, 128 + signal.SIGTERM), (signal.SIGKILL, -signal.SIGKILL)])
def test_stopping_the_report_stops_its_workers_and_their_trainings(photo_dir, tmp_path, stop, status):
    sr = {'total_iter': 100000, 'batch_size': 2, 'gt_size': 32, 'eval_every': 100000, 'patience_evals': 0,
          'ema_decay': 0, 'lr': 2e-3}  # far longer than the test: a training still running was stopped, not done
    opt = experiment_options(photo_dir, arms=['random_real'], default_arm='random_real', sr_train=sr)
    (tmp_path / 'report.yml').write_text(yaml.safe_dump(opt))
    runs = tmp_path / 'experiments' / 'pytest_report' / 'runs'
    with open(tmp_path / 'stderr.txt', 'w') as err:
        proc = subprocess.Popen([sys.executable, '-m', 'srdistill_plugin.commands.experiment', '-opt', 'report.yml',
                                 '--workers', '2'], cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=err,
                                start_new_session=True)
    in_session = ['pgrep', '-s', str(proc.pid)]  # the command and its worker, each training one run
    try:
        deadline = time.monotonic() + 300
        while sum('Start training from epoch' in log.read_text() for log in runs.glob('*.log')) < 2:
            assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / 'stderr.txt').read_text()[-3000:]
            time.sleep(0.5)
        proc.send_signal(stop)  # as `kill` or a scheduler's cancel: the command alone, not its process group
        assert proc.wait(60) == status
        deadline = time.monotonic() + 30
        while subprocess.run(in_session, capture_output=True).returncode == 0 and time.monotonic() < deadline:
            time.sleep(0.5)
        assert subprocess.run(in_session, capture_output=True, text=True).stdout == ''
        assert not list(runs.glob('*_s0.json'))  # neither run was recorded as finished
    finally:
        subprocess.run(['pkill', '-9', '-s', str(proc.pid)])


def test_a_set_without_the_generator_does_not_wait_for_another_workers_fine_tuning(photo_dir, tmp_path, monkeypatch):
    opt = experiment_options(photo_dir, arms=['random_real', 'distilled'], default_arm='random_real')
    exp = ExperimentOptions.from_opt(opt, tmp_path)
    experiment = Experiment(exp, tmp_path)
    experiment.prepare_data()
    runs = {run.arm: run for run in plan_runs(exp) if run.budget is not None}
    fine_tuning, finish, lock_free_while_fine_tuning, trained = threading.Event(), threading.Event(), [], []
    fine_tune = DistillRun.finetune

    def slow_fine_tune(run):  # a long fine-tuning of the generator, which must hold its lock
        if not run.needs_generator():
            return fine_tune(run)  # a real-patch set's stage only records that it needs no generator
        probe = FileLock(experiment.work / 'locks' / 'generator.lock')
        lock_free_while_fine_tuning.append(probe.acquire(blocking=False))
        probe.release()
        fine_tuning.set()
        finish.wait(300)
        return fine_tune(run)

    monkeypatch.setattr(DistillRun, 'finetune', slow_fine_tune)
    workers = {arm: threading.Thread(target=lambda arm=arm: trained.append((arm, experiment.run_one(runs[arm]))))
               for arm in ('distilled', 'random_real')}
    workers['distilled'].start()
    try:
        assert fine_tuning.wait(120)
        workers['random_real'].start()  # a second worker, on a set that needs no generator
        workers['random_real'].join(300)
        assert not workers['random_real'].is_alive() and trained == [('random_real', True)]
    finally:
        finish.set()
        for worker in workers.values():
            if worker.is_alive():
                worker.join()
    assert trained == [('random_real', True), ('distilled', True)] and lock_free_while_fine_tuning == [False]
