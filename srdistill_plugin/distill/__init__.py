"""The distillation stages (select -> categorize -> finetune -> synthesize) and their option checks."""
