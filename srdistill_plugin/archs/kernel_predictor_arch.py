"""The learned blur-kernel estimator (``srdistill.core.kernel_predictor``) in BasicSR's arch registry."""
from basicsr.utils.registry import ARCH_REGISTRY

from srdistill.core.kernel_predictor import KernelPredictor

ARCH_REGISTRY.register(KernelPredictor)

__all__ = ['KernelPredictor']
