"""The smoke run's rewrite of a zero-shot experiment: every path it reads points at the smoke run's tiny data."""
import importlib.util

from srdistill.core.options_file import read_options

from .conftest import ROOT


def smoke_module():
    spec = importlib.util.spec_from_file_location('smoke_tool', ROOT / 'tools' / 'smoke.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_smoke_run_points_the_checkpoint_rule_at_its_tiny_photographs(tmp_path):
    """A file with ``checkpoint_rule`` (the held-out photographs of a developer's clone) runs on the tiny data:
    its photographs, a checkpoint every ``iters``, 64² crops; the rule's step count is kept."""
    data = {'paired': tmp_path / 'paired', 'photos': tmp_path / 'photos'}
    opt = read_options(ROOT / 'options' / 'report' / 'mzsr_x2_official_start_rule.yml')
    assert opt['checkpoint_rule']['photos'] == 'datasets/demo/HR_images'
    smoked = smoke_module().zero_shot_options(opt, 'rule', data, tmp_path, ROOT, 3)
    assert smoked['checkpoint_rule'] == {'photos': str(tmp_path / 'paired' / 'HR'), 'every': 3, 'steps': 1,
                                         'crop': 64}
    assert opt['checkpoint_rule']['photos'] == 'datasets/demo/HR_images'  # the caller's options left as they were
