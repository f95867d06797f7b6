"""Auto-imports every ``*_arch.py`` here so that its classes register into BasicSR's registry."""
from srdistill_plugin.utils import import_modules_with_suffix

_modules = import_modules_with_suffix(__file__, __name__, '_arch')
