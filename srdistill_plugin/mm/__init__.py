"""The MMagic / MMEngine side of srdistill, loaded by configs through

    custom_imports = dict(imports=['srdistill_plugin.mm'], allow_failed_imports=False)

It registers the same core algorithms into ``mmagic.registry`` (DATASETS, TRANSFORMS, DATA_SAMPLERS, MODELS);
nothing here is a second implementation. The compat fixes for the pinned MMagic stack are applied first.
"""
from srdistill_plugin.compat import apply_mmagic_fixes

apply_mmagic_fixes()

from . import datasets, models, samplers, transforms  # noqa: E402,F401  (registration side effects)
