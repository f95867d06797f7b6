"""srdistill: label-free SR data distillation and MZSR, as a BasicSR plugin.

``import srdistill_plugin`` registers the plugin's archs, datasets, models and samplers into BasicSR's
registries (and the plugin's own sampler registry). It imports nothing from mmengine/mmagic: that side lives in
``srdistill_plugin.mm`` and is loaded by MMagic configs through ``custom_imports``.
"""
import warnings

# diffusers 0.24 (pinned: mmagic 1.2 needs it) calls a torch helper deprecated since torch 2.2 when it is imported,
# which prints a two-line FutureWarning before every command's output; nothing is wrong, so it is not shown.
warnings.filterwarnings('ignore', message=r'`torch\.utils\._pytree\._register_pytree_node` is deprecated',
                        category=FutureWarning)

from . import archs, data, metrics, models, samplers  # noqa: E402,F401  (registration side effects)

__version__ = '0.1.0'
