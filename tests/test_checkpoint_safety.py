"""Checkpoints are data: a checkpoint whose pickle would run code is refused on every load path, before it runs."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from srdistill.core.errors import SRDistillError
from srdistill.core.safe_load import UnsafeCheckpointError, load_checkpoint

from .conftest import ROOT, run_tool
from .test_distillation import tiny_options

REFUSAL = 'refused to load: its pickle asks for'


class ReachesPastTheStatistics:
    """``getattr(HistoryBuffer, '__init__')``: the one callable MMEngine's loader allows, asked for something else."""

    def __reduce__(self):
        from mmengine.logging.history_buffer import HistoryBuffer
        return getattr, (HistoryBuffer, '__init__')


class WritesAMarker:
    """Unpickling this object would open (create) the marker file: what a malicious checkpoint does."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, 'w')


@pytest.fixture
def malicious(tmp_path) -> tuple[Path, Path]:
    """A checkpoint shaped like BasicSR's, MMEngine's and a training state at once, and its marker's path."""
    marker = tmp_path / 'code_ran'
    evil = WritesAMarker(marker)
    path = tmp_path / 'downloaded.pth'
    torch.save({'params': {'conv.weight': evil}, 'params_ema': evil, 'state_dict': evil, 'meta': {}, 'iter': 1,
                'optimizers': [], 'schedulers': []}, path)
    return path, marker


def refused(call, path: Path, marker: Path) -> str:
    with pytest.raises(SRDistillError) as info:
        call()
    message = str(info.value)
    assert isinstance(info.value, UnsafeCheckpointError) or REFUSAL in message
    assert str(path) in message and REFUSAL in message and 'open' in message and '\n' not in message
    assert not marker.exists()
    return message


def test_the_core_loader_refuses_code_and_reads_weights(malicious, tmp_path):
    path, marker = malicious
    refused(lambda: load_checkpoint(path), path, marker)
    good = tmp_path / 'good.pth'
    torch.save({'params': {'w': torch.ones(2)}}, good)
    assert load_checkpoint(good)['params']['w'].sum() == 2


def test_basicsr_load_network_and_resume_state_refuse_code(malicious, tmp_path):
    from basicsr.models.base_model import BaseModel

    from srdistill_plugin.engine.checkpoint_io import build_model_from_files
    from srdistill_plugin.engine.resume import load_resume_state

    path, marker = malicious
    model = BaseModel({'num_gpu': 0, 'is_train': False, 'dist': False})
    with pytest.raises(Exception):  # BasicSR's own loading: torch's weights-only default refuses too, in its words
        model.load_network(torch.nn.Conv2d(1, 1, 1), str(path))
    assert not marker.exists()
    options = {'model_type': 'SRModel', 'num_gpu': 0, 'is_train': False, 'dist': False,
               'network_g': {'type': 'MZSRNet', 'num_feat': 8, 'num_layers': 2},
               'path': {'pretrain_network_g': str(path), 'strict_load_g': True}}
    refused(lambda: build_model_from_files(options), path, marker)  # the plugin's pipelines: read first, one line
    opt = {'num_gpu': 0, 'auto_resume': False, 'path': {'resume_state': str(path), 'training_states': str(tmp_path)}}
    assert refused(lambda: load_resume_state(opt), path, marker).startswith('option path.resume_state:')
    state = tmp_path / 'states' / '8.state'
    state.parent.mkdir()
    state.write_bytes(path.read_bytes())
    opt = {'num_gpu': 0, 'auto_resume': True, 'path': {'resume_state': None, 'training_states': str(state.parent)}}
    refused(lambda: load_resume_state(opt), state, marker)  # refused, not skipped as "unreadable"


def test_plugin_loaders_refuse_code(malicious, tmp_path):
    from srdistill.core.manifest import write_manifest
    from srdistill_plugin.distill.runner import DistillRun
    from srdistill_plugin.experiment.evaluate import load_student
    from srdistill.zero_shot.inference import load_model

    path, marker = malicious
    refused(lambda: load_model(str(path), 2), path, marker)
    refused(lambda: load_student({'type': 'MZSRNet', 'num_feat': 8, 'num_layers': 2}, path), path, marker)
    (tmp_path / 'pool').mkdir()
    run = DistillRun(tiny_options(tmp_path / 'pool', tmp_path / 'out'), root=tmp_path)
    write_manifest(run.manifest('finetune'), {'checkpoint': str(path), 'options': str(tmp_path / 'unused.yml')})
    refused(run.load_generator, path, marker)


@pytest.mark.slow
def test_mmengine_loaders_refuse_code(malicious):
    pytest.importorskip('mmagic')
    import srdistill_plugin.mm  # noqa: F401  (applies the compat fixes)
    from mmengine.runner.checkpoint import CheckpointLoader

    from srdistill_plugin.mm.models import load_basicsr_params

    path, marker = malicious
    refused(lambda: CheckpointLoader.load_checkpoint(str(path)), path, marker)
    refused(lambda: load_basicsr_params(str(path)), path, marker)
    sneaky = path.with_name('getattr.pth')
    torch.save({'state_dict': {}, 'message_hub': ReachesPastTheStatistics()}, sneaky)
    with pytest.raises(UnsafeCheckpointError, match="getattr of '__init__'"):
        CheckpointLoader.load_checkpoint(str(sneaky))
    proc = run_tool('tools/mm_test.py', 'configs/test/mzsr_x2_gd2.0.py', str(path), '--work-dir',
                    str(path.parent / 'work'), check=False)
    assert proc.returncode == 2, proc.stderr[-2000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith(f'error: {path}: {REFUSAL} ') and not marker.exists()


@pytest.mark.slow
def test_cli_refuses_a_malicious_pretrained_network(malicious):
    path, marker = malicious
    opt = ROOT / 'options' / 'test' / 'test_swinir_x4_demo.yml'
    proc = run_tool('tools/test.py', '-opt', str(opt), '--force_yml', f'path:pretrain_network_g={path}', check=False)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.strip().splitlines()[-1].startswith(f'error: {path}: {REFUSAL} ')
    assert not marker.exists()


class _System:
    def __reduce__(self):
        import os
        return (os.system, ('echo this must never run',))


def test_a_pickle_calling_a_blocked_module_gets_the_projects_refusal_never_torchs_advice(tmp_path):
    from srdistill.core.safe_load import UnsafeCheckpointError, load_checkpoint

    path = tmp_path / 'system.pth'
    torch.save({'params': _System()}, path)
    with pytest.raises(UnsafeCheckpointError) as err:
        load_checkpoint(path)
    message = str(err.value)
    assert message.startswith(f'{path}: refused to load: its pickle asks for posix.system') or \
        message.startswith(f'{path}: refused to load: its pickle asks for nt.system')
    assert 'weights_only' not in message
