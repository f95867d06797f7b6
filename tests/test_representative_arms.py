"""The arms that take selection apart (issue 22): uniform among the kept patches, uniform within classes over the
whole pool with proportional or equal class budgets, and kernel herding in an SR feature space; their options are
checked before any work."""
from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from srdistill.core.errors import SRDistillError
from srdistill.core.manifest import read_manifest
from srdistill.core.patch_selection import SelectionOptions, score_patches
from srdistill.core.representative import kernel_herding, proportional_split, sr_patch_features
from srdistill.core.set_diagnostics import pairwise_distances
from srdistill_plugin.data.selected_patch_dataset import SelectedPatchDataset
from srdistill_plugin.distill.pool import PoolGrid
from srdistill_plugin.distill.options import SynthesisOptions
from srdistill_plugin.distill.registry import strategy_class
from srdistill_plugin.distill.runner import DistillRun
from srdistill_plugin.distill.strategies import spread_over_images
from srdistill_plugin.experiment.options import ExperimentOptions

from .conftest import ROOT, SET5
from .helpers.report_options import report_options
from .test_distillation import tiny_options
from .test_experiment import experiment_options


def mmd(a: np.ndarray, b: np.ndarray, gamma: float = 0.5) -> float:
    def k(x, y):
        return np.exp(-gamma * pairwise_distances(x, y) ** 2).mean()
    return float(k(a, a) + k(b, b) - 2 * k(a, b))


def mixture(seed: int = 0) -> np.ndarray:
    """1,000 points: 80 % around (0, 0), 20 % around (6, 0)."""
    rng = np.random.default_rng(seed)
    return np.concatenate([rng.normal(0, 1, (800, 2)), rng.normal((6, 0), 1, (200, 2))])


def test_kernel_herding_matches_the_pool_better_than_random_draws():
    pool = mixture()
    picks = kernel_herding(pool, 20)
    assert len(set(picks)) == 20
    assert Counter(pool[picks, 0] > 3)[True] in (4, 5)  # the 20 % mode gets its share
    herded = mmd(pool[picks], pool)
    rng = np.random.default_rng(1)
    random = [mmd(pool[rng.choice(len(pool), 20, replace=False)], pool) for _ in range(40)]
    assert herded < np.percentile(random, 10), (herded, np.median(random))


def test_kernel_herding_starts_from_the_preselected_rows_and_repeats_only_when_exhausted():
    pool = mixture()[:30]
    picks = kernel_herding(pool, 35, preselected=[7, 3])
    assert picks[:2] == [7, 3]
    assert sorted(picks[:30]) == list(range(30)) and len(picks) == 35


def test_proportional_split_keeps_the_total_and_skips_empty_classes():
    assert proportional_split(98, [500, 0, 1500]) == [25, 0, 73]
    assert sum(proportional_split(7, [1, 1, 1])) == 7
    assert proportional_split(5, [0, 0]) == [0, 0]


def test_sr_features_share_the_selection_grid_and_read_detail_and_orientation():
    img = np.full((96, 128, 3), 0.5, np.float32)
    img[:, 64:] = 0.5 + 0.3 * np.sin(np.arange(64) / 2)[None, :, None]  # vertical stripes on the right
    opts = SelectionOptions(patch_size=32, stride=32, scale=4)
    features, ys, xs = sr_patch_features(img, 32, 32, 4)
    _, ys2, xs2 = score_patches(img, opts)
    assert features.shape == (len(ys2), 11) and (ys == ys2).all() and (xs == xs2).all()
    flat, striped = features[xs == 0], features[xs == 96]
    assert (striped[:, :5] > flat[:, :5] + 3).all()  # residual, bands and gradient energy (log)
    assert (striped[:, 5] > 0.9).all()  # gradients along x: cos 2θ = 1


@pytest.fixture(scope='module')
def categorized(photo_dir, tmp_path_factory):
    """A distillation run on the bundled photographs with its select and categorize stages done."""
    root = tmp_path_factory.mktemp('arms')
    run = DistillRun(tiny_options(photo_dir, root / 'out', mode='selected_real', per_class=6), root=root)
    run.run(('select', 'categorize'))
    return root, run


def picks_of(run: DistillRun, **synthesize):
    syn = {**run.opt['synthesize'], **synthesize}
    selection = read_manifest(run.manifest('select'))
    num_classes = read_manifest(run.manifest('categorize'))['num_classes']
    options = SynthesisOptions.from_opt({**run.opt, 'synthesize': syn})
    return strategy_class(syn['mode'])(run, options).picks(selection, num_classes, 6)


def test_random_selected_draws_only_kept_patches_whatever_their_class(categorized):
    _, run = categorized
    source, picks = picks_of(run, mode='random_selected')
    assert isinstance(source, SelectedPatchDataset)
    chosen = [i for members in picks.values() for i in members]
    assert len(chosen) == 18 and all(source.class_ids[i] == c for c, members in picks.items() for i in members)


@pytest.mark.parametrize('mode', ['random_proportional', 'herding'])
def test_pool_wide_arms_draw_from_every_patch_with_proportional_class_budgets(categorized, mode):
    _, run = categorized
    source, picks = picks_of(run, mode=mode)
    assert isinstance(source, PoolGrid) and len(source) > len(SelectedPatchDataset({'stage_dir': run.stage_dir}))
    sizes = source.class_sizes(3)
    assert [len(picks.get(c, [])) for c in range(3)] == proportional_split(18, sizes)
    assert all(source.class_ids[i] == c for c, members in picks.items() for i in members)
    _, equal = picks_of(run, mode=mode, class_budget='equal')
    assert [len(equal[c]) for c in range(3)] == [6, 6, 6]
    if mode == 'herding':  # not the most informative: representative of the class
        info = source.info[[i for m in picks.values() for i in m]]
        assert np.median(info) < np.percentile(source.info, 90)


def test_herding_informative_share_one_is_the_most_informative_patches_spread_over_images(categorized):
    _, run = categorized
    grid, picks = picks_of(run, mode='herding', informative_share=1)
    for c, members in picks.items():
        ranked = grid.ranked(np.flatnonzero(grid.class_ids == c))
        assert members == spread_over_images(ranked, grid.image[ranked].tolist())[:len(members)]


def test_sdedit_on_herding_seeds_starts_from_the_herded_patches(categorized):
    _, run = categorized
    grid, seeds = picks_of(run, mode='sdedit', seed_selection='herding')
    _, herded = picks_of(run, mode='herding')
    assert isinstance(grid, PoolGrid) and seeds == herded


def test_images_without_a_kept_patch_get_the_nearest_centroids_class(categorized):
    _, run = categorized
    classes = run.pool_image_classes()
    categories = read_manifest(run.manifest('categorize'))
    assert all(c >= 0 for c in classes)
    assert [c for c, seen in zip(classes, categories['image_classes']) if seen >= 0] == \
        [c for c in categories['image_classes'] if c >= 0]


def test_a_herding_run_writes_its_set_and_patches_equal_the_pool_crops(categorized):
    root, run = categorized
    DistillRun({**run.opt, 'synthesize': {**run.opt['synthesize'], 'mode': 'herding'}}, root=root).synthesize()
    manifest = read_manifest(root / 'out' / 'manifest.json')
    assert manifest['mode'] == 'herding' and manifest['num_images'] == 18
    assert manifest['seed_residual_std'] == 0  # real pool patches, unchanged


@pytest.mark.parametrize('change, message', [
    ({'arms': ['random_real', 'herding_x']}, "option arms: unknown arm 'herding_x'"),
    ({'arms': ['h'], 'default_arm': 'h', 'custom_arms': {'h': {'arm': 'kmeans'}}}, 'option custom_arms.h: expected a new name with arm:'),
    ({'arms': ['h'], 'default_arm': 'h', 'custom_arms': {'h': {'arm': 'herding', 'informative_share': 2}}},
     'option synthesize.informative_share: expected a number in [0, 1], got 2'),
    ({'arms': ['h'], 'default_arm': 'h', 'custom_arms': {'h': {'arm': 'herding', 'class_budget': 'equal_ish'}}},
     "option synthesize.class_budget: expected one of ('proportional', 'equal'), got 'equal_ish'"),
    ({'arms': ['h'], 'default_arm': 'h', 'custom_arms': {'h': {'arm': 'herding', 'herding_features': 'clip'}}},
     'option synthesize.herding_features: clip needs CLIP weights'),
    ({'sr_train': {'augment': {'mixup': {'prob': 0.5, 'alpha': -1}}}},
     'option sr_train.augment.mixup.alpha: expected a number > 0, got -1'),
    ({'sr_train': {'augment': {'cutmix': 0.5}}}, 'option sr_train.augment.cutmix: unknown (known: rgb_permute, mixup)'),
    ({'arms': ['r'], 'default_arm': 'r', 'custom_arms': {'r': {'arm': 'random_real', 'sr_train': {'total_iter': 5}}}},
     "option custom_arms.r.sr_train.total_iter: unknown (known: augment, ema_decay, gt_size, batch_size, lr)"),
    ({'arms': ['r'], 'default_arm': 'r', 'custom_arms': {'r': {'arm': 'random_real', 'sr_train': {'gt_size': 30}}}},
     'option custom_arms.r.sr_train.gt_size: 30 is not a multiple of scale 4'),
    ({'arms': ['r'], 'default_arm': 'r', 'custom_arms': {'r': {'arm': 'random_real', 'sr_train': {'ema_decay': 1}}}},
     'option custom_arms.r.sr_train.ema_decay: expected a number in [0, 1), got 1'),
    ({'arms': ['r'], 'default_arm': 'r',
      'custom_arms': {'r': {'arm': 'random_real', 'sr_train': {'augment': {'rgb_permute': 2}}}}},
     'option custom_arms.r.sr_train.augment.rgb_permute: expected a probability in [0, 1], got 2'),
    ({'arms': ['random_real', 'f'], 'custom_arms': {'f': {'arm': 'full_pool'}}},
     'option custom_arms.f: an arm on the full_pool changes only its SR training'),
    ({'arms': ['random_real', 'f'], 'custom_arms': {'f': {'arm': 'full_pool', 'draw_seed': 1, 'sr_train': {'lr': 1e-4}}}},
     'option custom_arms.f: an arm on the full_pool changes only its SR training'),
    ({'arms': ['f', 'random_real'], 'default_arm': 'f', 'custom_arms': {'f': {'arm': 'full_pool', 'sr_train': {'lr': 1e-4}}}},
     "option default_arm: 'f' is not one of the arms that make a set: ['random_real']"),
    ({'arms': ['r'], 'default_arm': 'r', 'custom_arms': {'r': {'arm': 'random_real', 'patch_size': 16}}},
     'option custom_arms.r: the set of r has 16-px patches, smaller than its training crops (gt_size 32)'),
    ({'arms': ['h'], 'default_arm': 'h', 'custom_arms': {'h': {'arm': 'herding', 'patch_size': 48}}},
     'option synthesize.patch_size: only random_real draws patches of another size than select.patch_size'),
])
def test_bad_arm_options_stop_before_any_work(photo_dir, change, message):
    with pytest.raises(SRDistillError) as info:
        ExperimentOptions.from_opt(experiment_options(photo_dir, **change), ROOT)
    assert str(info.value).startswith(message) and '\n' not in str(info.value)


def test_the_shipped_arms_experiment_checks(photo_dir):
    from srdistill.core.options_file import read_options

    exp = read_options(ROOT / 'options/report/sunhays80_x4_arms.yml')
    exp.update(pool=str(photo_dir), test_sets=[str(SET5)])  # ../shared is not on every machine
    exp = ExperimentOptions.from_opt(exp, ROOT)
    assert {'random_selected', 'random_equal', 'herding_i25'} <= set(exp.arms)


def result(student, arm, budget, seed, val, set5):
    return {'student': student, 'arm': arm, 'budget': budget, 'seed': seed, 'val_curve': {'1000': val - 1, '2000': val},
            'test_best': {'Set5': {'psnr': set5}}}


def test_the_default_is_chosen_on_validation_over_the_runs_every_arm_has():
    from srdistill_plugin.experiment.report import group_results
    from srdistill_plugin.experiment.verdicts import choice_text, validation_choice

    runs = [result('EDSR', 'random_real', 0.68, 0, 27.0, 29.6), result('EDSR', 'herding', 0.68, 0, 27.2, 29.5),
            result('EDSR', 'random_real', 0.68, 1, 27.0, 29.6),  # seed 1 has no herding run: not compared
            result('SwinIR', 'random_real', 0.68, 0, 27.5, 29.9), result('SwinIR', 'herding', 0.68, 0, 27.4, 30.1)]
    runs.append(result('SwinIR', 'coverage', 0.68, 1, 28.0, 30.0))  # no run in common with the others: left out
    arms = ['random_real', 'herding', 'coverage', 'distilled']
    best, scores, what, left_out = validation_choice(group_results(runs), arms, 0.68)
    assert best == 'herding' and scores == pytest.approx({'random_real': 27.25, 'herding': 27.3})
    assert what == 'EDSR seed 0, SwinIR seed 0'  # the test PSNR (random_real higher on EDSR) plays no part
    assert left_out == ['coverage', 'distilled']
    text = choice_text(report_options(arms=arms, default_arm='random_real'), group_results(runs), 0.68)
    assert 'differs: set default_arm: herding' in text and 'Not compared (no run in common with the others yet): ' \
        'coverage, distilled.' in text
    assert 'Per student (the same arms, each on its own runs in common): EDSR: herding 27.20, random_real 27.00 dB ' \
        '(best herding); SwinIR: random_real 27.50, herding 27.40 dB (best random_real).' in text
    one_student = group_results([r for r in runs if r['student'] == 'EDSR'])
    assert 'Per student' not in choice_text(report_options(arms=arms, default_arm='herding'), one_student, 0.68)
    text = choice_text(report_options(arms=arms, default_arm='distilled'), group_results(runs), 0.68)
    assert 'default_arm is distilled, with no run compared yet: nothing follows for it.' in text


def test_the_decomposition_pairs_arms_that_differ_in_one_choice_and_the_targets_read_the_curve():
    from srdistill_plugin.experiment.report import group_results
    from srdistill_plugin.experiment.verdicts import budget_reaching, decomposition_rows, targets_text

    exp = report_options(arms=['random_real', 'random_selected', 'random_proportional', 'random_equal', 'herding'],
                         custom_arms={'random_equal': {'arm': 'random_proportional', 'class_budget': 'equal'}},
                         default_arm='herding')
    runs = [result('EDSR', 'random_real', 0.68, 0, 27, 29.58), result('EDSR', 'random_selected', 0.68, 0, 27, 28.9),
            result('EDSR', 'random_proportional', 0.68, 0, 27, 29.6), result('EDSR', 'random_equal', 0.68, 0, 27, 29.4),
            result('EDSR', 'herding', 0.68, 0, 27, 29.7), result('EDSR', 'herding', 0.3, 0, 27, 29.2),
            result('EDSR', 'random_real', 0.3, 0, 27, 29.3)]
    rows = decomposition_rows(exp, group_results(runs), ['Set5'], 0.68, 'EDSR')
    assert [r[0] for r in rows] == ['random_selected − random_real', 'random_proportional − random_real',
                                    'herding − random_proportional', 'random_equal − random_proportional']
    assert [r[4] for r in rows] == ['-0.68', '+0.02', '+0.10', '-0.20'] and rows[3][1] == 'class_budget: equal'
    assert {r[2] for r in rows} == {'0.68 %'}  # herding and random_real at 0.3 % are not one choice apart
    assert budget_reaching({0.3: 29.2, 0.68: 29.7}, 29.58) == pytest.approx(0.3 * (0.68 / 0.3) ** 0.76)
    assert budget_reaching({0.3: 29.2}, 29.58) is None and budget_reaching({0.3: 29.7}, 29.58) == 0.3
    lines = targets_text(exp, group_results(runs), ['Set5'], 0.68, 'EDSR')
    assert lines[0] == 'EDSR, herding at 0.68 %: Set5: − random_real +0.12 dB (target ≥ +0.15: missed)'
    assert 'worst herding − random_real -0.10 dB at 0.3 % (target ≥ -0.05: missed)' in lines[1]
    assert 'reaches random_real @ 0.68 % (29.58 dB): 0.56 % (target ≤ 0.34 %: missed)' in lines[2]
    alone = [r for r in runs if r['arm'] == 'herding']  # an experiment without random_real or the full pool
    assert targets_text(exp, group_results(alone), ['Set5'], 0.68, 'EDSR') == [
        'Not measurable in this experiment: herding at 0.68 % has no random_real run at that budget and no finished '
        'full pool to be read against']
    assert targets_text(exp, group_results(alone[1:]), ['Set5'], 0.68, 'EDSR') == [
        'Not measurable yet: herding at 0.68 % has not finished']


def test_the_one_choice_and_draws_tables_cover_every_student_with_rows_the_sweep_student_first():
    from srdistill_plugin.experiment.report import group_results
    from srdistill_plugin.experiment.verdicts import by_student, decomposition_rows, draw_rows

    exp = report_options(arms=['random_real', 'random_selected', 'herding', 'random_real_draw1'], manual_seed=0,
                         custom_arms={'random_real_draw1': {'arm': 'random_real', 'draw_seed': 1}},
                         students={'EDSR': {}, 'SRResNet': {}, 'SwinIR': {}})
    runs = [result('EDSR', 'random_real', 0.68, 0, 27, 29.5),  # EDSR: herding is two choices from random_real
            result('EDSR', 'herding', 0.68, 0, 27, 29.6),
            result('SwinIR', 'random_real', 0.68, 0, 27, 29.6), result('SwinIR', 'random_selected', 0.68, 0, 27, 29.2),
            result('SRResNet', 'random_selected', 0.68, 0, 27, 29.0)]  # SRResNet has no pair: left out

    def pairs():
        return by_student(exp, 'SwinIR', lambda s: decomposition_rows(exp, group_results(runs), ['Set5'], 0.68, s))

    assert list(pairs()) == ['SwinIR'] and pairs()['SwinIR'][0][:5] == [
        'random_selected − random_real', 'draw only among the kept most-informative patches (select.keep_fraction)',
        '0.68 %', '+0.00', '-0.40']
    runs += [result('SRResNet', 'random_real', 0.68, 0, 27, 29.3),
             result('SRResNet', 'random_real_draw1', 0.68, 0, 28, 29.5)]
    assert list(pairs()) == ['SwinIR', 'SRResNet'] and pairs()['SRResNet'][0][4] == '-0.30'
    draws = by_student(exp, 'SwinIR', lambda s: draw_rows(exp, group_results(runs), ['Set5'], 0.68, s))
    assert list(draws) == ['SRResNet'] and draws['SRResNet'][0][:3] == ['random_real', '0.68 %', '2']  # SwinIR: one draw


def test_redraws_are_pooled_like_seeds_for_the_choice_the_targets_and_the_draws_table():
    from srdistill_plugin.experiment.report import group_results
    from srdistill_plugin.experiment.verdicts import (choice_text, decomposition_rows, draw_families, draw_gap_text,
                                                      draw_rows, targets_text)

    exp = report_options(arms=['random_real', 'herding', 'random_real_draw1', 'herding_draw1', 'herding_i25'],
                         custom_arms={'random_real_draw1': {'arm': 'random_real', 'draw_seed': 1},
                                      'herding_draw1': {'arm': 'herding', 'draw_seed': 1},
                                      'herding_i25': {'arm': 'herding', 'informative_share': 0.25}},
                         default_arm='herding', manual_seed=0)
    assert draw_families(exp) == {'random_real': 'random_real', 'random_real_draw1': 'random_real', 'herding': 'herding',
                                  'herding_draw1': 'herding', 'herding_i25': 'herding_i25'}
    runs = [result('EDSR', 'random_real', 0.68, 0, 30.5, 29.6), result('EDSR', 'random_real_draw1', 0.68, 0, 30.3, 29.2),
            result('EDSR', 'herding', 0.68, 0, 30.6, 29.4), result('EDSR', 'herding_draw1', 0.68, 0, 30.5, 29.4),
            result('EDSR', 'herding_i25', 0.68, 0, 30.45, 28.6)]
    # one draw each, herding_i25 (30.45) would beat random_real_draw1; pooled, random_real averages 30.4
    text = choice_text(exp, group_results(runs), 0.68)
    assert 'herding 30.55, herding_i25 30.45, random_real 30.40 dB' in text
    assert 'every finished draw (random_real 2, herding 2)' in text and '(the same)' in text
    lines = targets_text(exp, group_results(runs), ['Set5'], 0.68, 'EDSR')
    assert lines[0] == 'EDSR, herding at 0.68 %: Set5: − random_real +0.00 dB (target ≥ +0.15: missed)'
    rows = draw_rows(exp, group_results(runs), ['Set5'], 0.68, 'EDSR')
    assert rows == [['random_real', '0.68 %', '2', '30.40 ± 0.14 (30.30–30.50)', '29.40 ± 0.28 (29.20–29.60)'],
                    ['herding', '0.68 %', '2', '30.55 ± 0.07 (30.50–30.60)', '29.40 ± 0.00 (29.40–29.40)']]
    gap = draw_gap_text(exp, group_results(runs), ['Set5'], 0.68, 'EDSR')
    assert 'herding − random_real over 2 / 2 draws: validation +0.15 ± 0.11 dB (within two standard errors); ' \
        'Set5 +0.00 ± 0.20 dB (within' in gap and 'herding_i25' not in gap  # one draw: no standard error
    assert draw_gap_text(exp, group_results(runs[:3]), ['Set5'], 0.68, 'EDSR') is None  # one herding draw
    assert [r[0] for r in decomposition_rows(exp, group_results(runs), ['Set5'], 0.68, 'EDSR')] == [
        'herding_i25 − herding']  # redraws are read in the Draws table, not as a choice


def test_the_draws_are_read_at_every_budget_where_a_family_was_drawn_twice():
    from srdistill_plugin.experiment.report import group_results
    from srdistill_plugin.experiment.verdicts import draw_gap_text, draw_rows

    exp = report_options(arms=['random_real', 'herding', 'random_real_draw1', 'herding_draw1'], manual_seed=0,
                         custom_arms={'random_real_draw1': {'arm': 'random_real', 'draw_seed': 1},
                                      'herding_draw1': {'arm': 'herding', 'draw_seed': 1}})
    runs = [result('EDSR', 'random_real', 2, 0, 31.0, 30.0), result('EDSR', 'herding', 2, 0, 30.9, 30.1),
            result('EDSR', 'random_real', 0.1, 0, 29.0, 28.4), result('EDSR', 'random_real_draw1', 0.1, 0, 28.0, 27.0),
            result('EDSR', 'herding', 0.1, 0, 27.5, 26.7), result('EDSR', 'herding_draw1', 0.1, 0, 27.3, 26.7)]
    groups = group_results(runs)
    # drawn twice at 0.1 % only: the rows and gaps are read there, not at the targets' budget (2 %) alone
    assert [r[:3] for r in draw_rows(exp, groups, ['Set5'], 2, 'EDSR')] == [['random_real', '0.1 %', '2'],
                                                                           ['herding', '0.1 %', '2']]
    assert draw_gap_text(exp, groups, ['Set5'], 2, 'EDSR').startswith(
        'EDSR, 0.1 %, mean of each draw\'s seeds, ± the standard error of the difference: herding − random_real over '
        '2 / 2 draws: validation -1.10 ± 0.51 dB (beyond two standard errors)')


def test_a_custom_arm_on_another_draw_is_read_against_its_base_on_that_draw():
    from srdistill_plugin.experiment.report import group_results
    from srdistill_plugin.experiment.verdicts import decomposition_rows

    exp = report_options(arms=['herding', 'herding_i25', 'herding_i25_draw1', 'herding_draw1', 'herding_i50_draw2'],
                         manual_seed=0,
                         custom_arms={'herding_i25': {'arm': 'herding', 'informative_share': 0.25},
                                      'herding_i25_draw1': {'arm': 'herding', 'informative_share': 0.25, 'draw_seed': 1},
                                      'herding_draw1': {'arm': 'herding', 'draw_seed': 1},
                                      'herding_i50_draw2': {'arm': 'herding', 'informative_share': 0.5, 'draw_seed': 2}})
    runs = [result('EDSR', 'herding', 0.68, 0, 30.9, 30.0), result('EDSR', 'herding_i25', 0.68, 0, 30.5, 29.8),
            result('EDSR', 'herding_draw1', 0.68, 0, 30.8, 30.1),
            result('EDSR', 'herding_i25_draw1', 0.68, 0, 30.7, 29.8),
            result('EDSR', 'herding_i50_draw2', 0.68, 0, 30.6, 29.9)]
    rows = decomposition_rows(exp, group_results(runs), ['Set5'], 0.68, 'EDSR')
    # draw 2 has no share-0 run: no row, rather than a difference of two choices read as one
    assert [r[:5] for r in rows] == [
        ['herding_i25 − herding', 'informative_share: 0.25', '0.68 %', '-0.40', '-0.20'],
        ['herding_i25_draw1 − herding_draw1', 'informative_share: 0.25', '0.68 %', '-0.10', '-0.30']]


def test_the_one_choice_table_reads_every_budget_and_random_real_is_never_read_against_itself():
    from srdistill_plugin.experiment.report import group_results
    from srdistill_plugin.experiment.verdicts import decomposition_rows, targets_text

    exp = report_options(arms=['random_real', 'random_selected', 'herding'], default_arm='random_real')
    runs = [result('EDSR', 'random_real', 2, 0, 30.9, 30.0), result('EDSR', 'random_selected', 2, 0, 30.5, 29.7),
            result('EDSR', 'random_real', 0.1, 0, 29.8, 28.4), result('EDSR', 'random_selected', 0.1, 0, 28.2, 25.8),
            result('EDSR', 'herding', 0.1, 0, 28.7, 26.7)]
    rows = decomposition_rows(exp, group_results(runs), ['Set5'], 2, 'EDSR')
    assert [(r[0], r[2], r[4]) for r in rows] == [('random_selected − random_real', '2 %', '-0.30'),
                                                  ('random_selected − random_real', '0.1 %', '-2.60')]
    lines = targets_text(exp, group_results(runs), ['Set5'], 2, 'EDSR')
    assert lines == ['The default arm is random_real: the targets against random_real are not applicable']


def test_the_one_choice_table_pairs_the_seeds_both_arms_ran_with_the_standard_error_of_the_paired_gap():
    from srdistill_plugin.experiment.report import group_results
    from srdistill_plugin.experiment.verdicts import decomposition_rows

    exp = report_options(arms=['random_real', 'random_selected', 'random_proportional'])
    runs = [result('EDSR', 'random_real', 2, 0, 30.9, 30.0), result('EDSR', 'random_selected', 2, 0, 30.5, 29.7),
            result('EDSR', 'random_real', 2, 1, 30.7, 30.4), result('EDSR', 'random_selected', 2, 1, 30.5, 30.3),
            result('EDSR', 'random_real', 2, 2, 31.5, 31.0),  # seed 2: random_real alone, paired with nothing
            result('EDSR', 'random_proportional', 2, 3, 30.0, 29.0)]  # no seed in common with random_real: no row
    rows = decomposition_rows(exp, group_results(runs), ['Set5'], 2, 'EDSR')
    # paired gaps: validation -0.4, -0.2 (mean -0.30, SE 0.10); Set5 -0.3, -0.1 (mean -0.20, SE 0.10)
    assert rows == [['random_selected − random_real',
                     'draw only among the kept most-informative patches (select.keep_fraction)', '2 %',
                     '-0.30 ± 0.10', '-0.20 ± 0.10', '0, 1']]


def test_draw_seed_draws_another_set_of_the_same_kind(categorized):
    root, run = categorized
    sets = []
    for seed in (None, 0, 1):
        syn = {**run.opt['synthesize'], 'mode': 'random_proportional'}
        syn = syn if seed is None else {**syn, 'draw_seed': seed}
        DistillRun({**run.opt, 'synthesize': syn}, root=root).synthesize()  # options are read when a run is made
        manifest = read_manifest(root / 'out' / 'manifest.json')
        sets.append((sorted(manifest['classes'].values()), (root / 'out' / 'HR.lmdb' / 'data.mdb').read_bytes()))
    assert sets[0] == sets[1]  # the default is manual_seed (0)
    assert sets[2][0] == sets[0][0] and sets[2][1] != sets[0][1]  # the same class budgets, other patches


def test_a_recipe_arm_trains_on_the_set_without_it_and_is_read_against_it(photo_dir, tmp_path):
    from srdistill_plugin.experiment.report import group_results
    from srdistill_plugin.experiment.runner import Experiment, Run
    from srdistill_plugin.experiment.verdicts import choice_text, decomposition_rows, recipe_text

    rgb = {'augment': {'rgb_permute': 1.0}}
    custom = {'random_real_draw1': {'arm': 'random_real', 'draw_seed': 1},
              'random_real_rgb': {'arm': 'random_real', 'sr_train': rgb},
              'random_real_draw1_rgb': {'arm': 'random_real', 'draw_seed': 1, 'sr_train': rgb},
              'herding_rgb': {'arm': 'herding', 'draw_seed': 3, 'sr_train': rgb}}  # no arm has its set: its own
    arms = ['random_real', 'random_real_draw1', 'random_real_rgb', 'random_real_draw1_rgb', 'herding_rgb']
    exp = ExperimentOptions.from_opt(
        experiment_options(photo_dir, arms=arms, default_arm='random_real', custom_arms=custom), ROOT)
    assert [exp.set_arm(a) for a in arms] == ['random_real', 'random_real_draw1', 'random_real', 'random_real_draw1',
                                               'herding_rgb']
    experiment = Experiment(exp, tmp_path)
    plain, recipe = Run('EDSR', 'random_real', 5, 0), Run('EDSR', 'random_real_rgb', 5, 0)
    assert experiment.lmdb(recipe) == experiment.lmdb(plain)  # one set, made once
    assert exp.recipe(recipe.arm).augment == {'rgb_permute': 1.0} and exp.recipe(plain.arm).augment == {}
    experiment.train_dir = photo_dir
    mine, theirs = experiment.settings(recipe), experiment.settings(plain)
    assert mine['data'] == theirs['data'] and mine['sr_train'] == {**theirs['sr_train'], **rgb}
    assert experiment.exp.set_arms() == ['random_real', 'random_real_draw1', 'herding_rgb']

    runs = [result('EDSR', 'random_real', 5, 0, 30.5, 29.6), result('EDSR', 'random_real_draw1', 5, 0, 30.3, 29.2),
            result('EDSR', 'random_real_rgb', 5, 0, 30.7, 29.7),
            result('EDSR', 'random_real_draw1_rgb', 5, 0, 30.4, 29.5), result('EDSR', 'herding_rgb', 5, 0, 31.0, 30.0)]
    groups = group_results(runs)
    rows = decomposition_rows(exp, groups, ['Set5'], 5, 'EDSR')
    assert [(r[0], r[4]) for r in rows] == [('random_real_rgb − random_real', '+0.10'),
                                            ('random_real_draw1_rgb − random_real_draw1', '+0.30')]
    text = recipe_text(exp, groups, ['Set5'], 5, 'EDSR')
    assert "random_real_rgb ({'augment': {'rgb_permute': 1.0}}) − the same sets without it, paired over 2 draws: " \
        'validation +0.15 ± 0.05 dB; Set5 +0.20 ± 0.10 dB' in text and 'herding_rgb' not in text
    # the recipes (31.0, 30.55) take no part in the choice of the set
    assert 'Best on validation: **random_real**' in choice_text(exp, groups, 5)


def test_a_family_under_a_recipe_is_read_against_random_real_under_the_same_recipe():
    from srdistill_plugin.experiment.report import group_results
    from srdistill_plugin.experiment.verdicts import draw_gap_text, random_reference

    rgb = {'augment': {'rgb_permute': 1.0}}
    custom = {'random_real_draw1': {'arm': 'random_real', 'draw_seed': 1},
              'random_real_rgb': {'arm': 'random_real', 'sr_train': rgb},
              'random_real_draw1_rgb': {'arm': 'random_real', 'draw_seed': 1, 'sr_train': rgb},
              'herding_rgb': {'arm': 'herding', 'sr_train': rgb},
              'herding_draw1_rgb': {'arm': 'herding', 'draw_seed': 1, 'sr_train': rgb}}
    exp = report_options(arms=['random_real', 'random_real_draw1', *custom.keys() - {'random_real_draw1'}],
                         manual_seed=0, custom_arms=custom)
    assert [random_reference(exp, a) for a in ('random_real_draw1', 'random_real_rgb', 'herding_draw1_rgb')] == [
        'random_real', 'random_real', 'random_real_rgb']
    runs = [result('EDSR', 'random_real', 5, 0, 30.5, 29.6), result('EDSR', 'random_real_draw1', 5, 0, 30.3, 29.2),
            result('EDSR', 'random_real_rgb', 5, 0, 30.7, 29.8),
            result('EDSR', 'random_real_draw1_rgb', 5, 0, 30.5, 29.6), result('EDSR', 'herding_rgb', 5, 0, 30.6, 29.7), result('EDSR', 'herding_draw1_rgb', 5, 0, 30.4, 29.5)]
    gap = draw_gap_text(exp, group_results(runs), ['Set5'], 5, 'EDSR')
    assert 'random_real_rgb − random_real over 2 / 2 draws: validation +0.20 ± 0.14 dB' in gap
    assert 'herding_rgb − random_real_rgb over 2 / 2 draws: validation -0.10 ± 0.14 dB' in gap
    assert 'herding_rgb − random_real over' not in gap


def test_a_recipe_on_the_full_pool_trains_the_pool_last_and_reads_the_sets_under_it_against_it(photo_dir, tmp_path):
    from srdistill_plugin.experiment.report import group_results
    from srdistill_plugin.experiment.runner import Experiment, Run, plan_runs
    from srdistill_plugin.experiment.verdicts import choice_text, recipe_text

    rgb = {'augment': {'rgb_permute': 1.0}}
    custom = {'random_real_rgb': {'arm': 'random_real', 'sr_train': rgb},
              'full_pool_rgb': {'arm': 'full_pool', 'sr_train': rgb}}
    exp = ExperimentOptions.from_opt(experiment_options(
        photo_dir, arms=['random_real', 'random_real_rgb', 'full_pool_rgb'], default_arm='random_real', seeds=[0, 1],
        custom_arms=custom), ROOT)
    assert [r.name for r in plan_runs(exp)] == [
        'EDSR_full_pool_s0', 'EDSR_random_real_5pct_s0', 'EDSR_random_real_rgb_5pct_s0', 'EDSR_random_real_5pct_s1',
        'EDSR_random_real_rgb_5pct_s1', 'EDSR_full_pool_s1', 'EDSR_full_pool_rgb_s0', 'EDSR_full_pool_rgb_s1']
    experiment = Experiment(exp, tmp_path)
    experiment.train_dir = photo_dir
    plain, pool_rgb = Run('EDSR', 'full_pool', None, 0), Run('EDSR', 'full_pool_rgb', None, 0)
    assert experiment.lmdb(pool_rgb) == experiment.lmdb(plain) and experiment.exp.set_arms() == ['random_real']
    mine, theirs = experiment.settings(pool_rgb), experiment.settings(plain)
    assert mine['data'] == theirs['data'] and mine['sr_train'] == {**theirs['sr_train'], **rgb}

    runs = [result('EDSR', 'full_pool', None, 0, 31.0, 30.0), result('EDSR', 'full_pool_rgb', None, 0, 31.4, 30.3),
            result('EDSR', 'random_real', 5, 0, 30.5, 29.6), result('EDSR', 'random_real_rgb', 5, 0, 30.7, 29.7)]
    groups = group_results(runs)
    text = recipe_text(exp, groups, ['Set5'], 5, 'EDSR')
    assert "full_pool_rgb ({'augment': {'rgb_permute': 1.0}}) − the same set without it, paired over 1 draw: " \
        'validation +0.40 dB; Set5 +0.30 dB' in text
    assert ('random_real_rgb (1 draw) − full_pool_rgb (the full pool under the same recipe, 1 seed(s)): Set5 -0.60 dB '
            '(without the recipe, random_real (1 draw) − full_pool: Set5 -0.40 dB)') in text
    assert 'Best on validation: **random_real**' in choice_text(exp, groups, 5)
