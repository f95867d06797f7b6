"""Metrics registered in BasicSR's ``METRIC_REGISTRY`` (usable as ``val.metrics.<name>.type`` in options)."""
from .official_psnr import calculate_psnr_y8  # noqa: F401  (registration side effect)
