"""The MZSR / ZSSR network (``srdistill.core.mzsr_net``) in BasicSR's arch registry."""
from basicsr.utils.registry import ARCH_REGISTRY

from srdistill.core.mzsr_net import MZSRNet

ARCH_REGISTRY.register(MZSRNet)

__all__ = ['MZSRNet']
