"""Typed experiment options for the report's and the verdicts' tests, which read only some of the options: the
given fields, the rest filled with neutral values (never checked against folders)."""
from __future__ import annotations

from srdistill_plugin.experiment.options import Convergence, ExperimentOptions, TrainingRecipe


def report_options(**fields) -> ExperimentOptions:
    """``ExperimentOptions`` of ``fields`` (``sr_train`` and ``convergence`` may be given as mappings)."""
    arms, students = fields.get('arms', ['random_real']), fields.get('students', {'EDSR': {}})
    filled = {'name': 'pytest', 'scale': 4, 'pool': 'pool', 'test_sets': [], 'arms': arms, 'budgets_percent': [5],
              'seeds': [0], 'students': students, 'distill': {}, 'default_arm': arms[0],
              'sweep_student': next(iter(students)), 'student_budgets_percent': [], **fields}
    filled['sr_train'] = TrainingRecipe(**fields.get('sr_train', {}))
    filled['convergence'] = Convergence(**fields.get('convergence', {}))
    return ExperimentOptions(**filled)
