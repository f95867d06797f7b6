"""srdistill: label-free SR data distillation and MZSR, as a BasicSR plugin.

``import srdistill_plugin`` registers the plugin's archs, datasets, models and samplers into BasicSR's
registries (and the plugin's own sampler registry). It imports nothing from mmengine/mmagic: that side lives in
``srdistill_plugin.mm`` and is loaded by MMagic configs through ``custom_imports``.
"""
from . import archs, data, models, samplers  # noqa: F401  (registration side effects)

__version__ = '0.1.0'
