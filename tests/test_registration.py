"""``import srdistill_plugin`` registers the plugin's types into BasicSR and pulls in nothing from MMagic."""
import subprocess
import sys

from basicsr.utils.registry import ARCH_REGISTRY, DATASET_REGISTRY, METRIC_REGISTRY, MODEL_REGISTRY

import srdistill_plugin  # noqa: F401
from srdistill_plugin.samplers import SAMPLER_REGISTRY


def test_basicsr_registries_hold_plugin_types():
    assert {'BicubicUpsampler', 'MZSRNet', 'ClassConditionalUNet', 'LatentClassConditionalDenoiser'} <= set(ARCH_REGISTRY.keys())
    assert {'MZSRModel', 'DiffusionDistillModel'} <= set(MODEL_REGISTRY.keys())
    assert {'HROnlyDataset', 'MZSRTaskDataset', 'KernelDegradedDataset', 'ZeroShotLRDataset'} <= set(DATASET_REGISTRY.keys())
    assert 'calculate_psnr_y8' in METRIC_REGISTRY
    assert 'SwinIR' in ARCH_REGISTRY  # BasicSR's own types are untouched


def test_sampler_registry_has_default_and_class_balanced():
    assert {'EnlargedSampler', 'ClassBalancedSampler'} <= set(SAMPLER_REGISTRY.keys())


def test_import_does_not_load_mmengine_or_mmagic():
    code = 'import sys, srdistill_plugin; print(sorted(m for m in sys.modules if m.split(".")[0] in {"mmengine", "mmagic", "mmcv"}))'
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == '[]'
