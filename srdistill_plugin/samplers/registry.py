"""``SAMPLER_REGISTRY``: BasicSR-style registry of training samplers (BasicSR itself has none)."""
from basicsr.data.data_sampler import EnlargedSampler
from basicsr.utils.registry import Registry

SAMPLER_REGISTRY = Registry('sampler')
SAMPLER_REGISTRY.register(EnlargedSampler)
