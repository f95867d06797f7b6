"""The distillation stages (select -> categorize -> finetune -> synthesize) and their option checks; the synthesis
modes are registered classes (``strategies``)."""
from . import strategies  # noqa: F401  (registers the synthesis modes)
