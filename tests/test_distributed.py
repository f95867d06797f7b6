"""BasicSR's launcher on a CPU-only machine: two gloo processes (loopback) train SwinIR on a tiny class-labelled LMDB
with ClassBalancedSampler, end with identical weights on both ranks, and resume; launcher misuse is one line. The ranks
are warm processes with torchrun's environment (``run_ranks``); the kill test and the distillation's own launch start
the real torchrun."""
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from srdistill.core.errors import SRDistillError
from srdistill.core.lmdb_io import read_meta_keys
from srdistill.core.prepare import PrepareOptions, prepare_lmdbs

from .conftest import ROOT, run_tool
from .helpers.warm_python import free_port, run_ranks
from .test_basicsr_pipelines import tiny_swinir_options

pytestmark = pytest.mark.slow


def torchrun(*args: str, check: bool = True):
    """``torchrun --nproc_per_node=2 tools/train.py <args> --launcher pytorch``, its ranks warm processes."""
    proc = run_ranks(['tools/train.py', *args, '--launcher', 'pytorch'], ROOT)
    if check and proc.returncode != 0:
        raise AssertionError(f'{args} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}')
    return proc


@pytest.fixture()
def class_lmdb(photo_dir, tmp_path):
    lmdb = prepare_lmdbs(photo_dir, tmp_path, PrepareOptions(scales=(4, )))['HR']
    (lmdb / 'class_info.txt').write_text(''.join(f'{k} {i % 3}\n' for i, k in enumerate(read_meta_keys(lmdb))))
    return lmdb


@pytest.fixture()
def options_file(class_lmdb, tmp_path):
    opt = tiny_swinir_options(class_lmdb, tmp_path / 'exp', 4)
    opt['logger'].update(print_freq=2, save_checkpoint_freq=4)
    path = tmp_path / 'train.yml'
    path.write_text(yaml.safe_dump(opt))
    return path


def test_two_cpu_processes_train_identically_and_resume(options_file, tmp_path):
    first = torchrun('-opt', str(options_file))
    log = first.stdout + first.stderr
    assert "2 ranks, gloo: largest difference of any rank's net_g weights from rank 0's: 0\n" in log
    second = torchrun('-opt', str(options_file), '--auto_resume', '--force_yml', 'train:total_iter=6')
    log = second.stdout + second.stderr
    assert 'Resuming training from epoch: 0, iter: 4.' in log and 'iter:       6' in log
    assert "from rank 0's: 0\n" in log
    assert (tmp_path / 'exp' / 'pytest_swinir_x4' / 'models' / 'net_g_latest.pth').is_file()


@pytest.mark.parametrize('case,message', [
    ('no_torchrun', '--launcher pytorch needs the environment torchrun sets'),
    ('unknown', "unknown backend 'nccl2'"),
    ('nccl_on_cpu', 'nccl needs GPUs and none is visible here'),
])
def test_launcher_misuse_is_one_line_and_exit_2(options_file, case, message):
    args = ['tools/train.py', '-opt', str(options_file), '--launcher', 'pytorch']
    if case == 'unknown':
        args += ['--force_yml', 'dist_params:backend=nccl2']
    elif case == 'nccl_on_cpu':
        args += ['--force_yml', 'dist_params:backend=nccl']
    if case == 'no_torchrun':
        proc = run_tool(*args, check=False)
    else:  # with the torchrun environment of a single process, so that only the backend is wrong
        proc = run_ranks(args, ROOT, nproc=1)
    assert proc.returncode == 2, proc.stderr[-2000:]
    error_lines = [line for line in proc.stderr.splitlines() if line.startswith('error:')]
    assert len(error_lines) == 1 and message in error_lines[0]


def test_mzsr_meta_training_in_two_processes_equals_one_process_with_both_tasks(tmp_path):
    """Second-order MAML, 3 meta-steps in float64: rank r meta-learns on task r and the meta-gradient is averaged over
    the ranks; the result equals one process whose meta-batch holds both tasks (tolerance 1e-12), and differs from a
    process that saw only task 0."""
    import torch

    helper = 'tests/helpers/mzsr_meta_steps.py'
    for name, args in (('dist', None), ('both', ['--tasks', '2']), ('one', ['--tasks', '1'])):
        (tmp_path / name).mkdir()
        if args is None:
            assert run_ranks([helper, str(tmp_path / name)], ROOT).returncode == 0
        else:
            run_tool(helper, str(tmp_path / name), *args)
    rank0, rank1 = (torch.load(tmp_path / 'dist' / f'rank{r}.pth') for r in (0, 1))
    both, one = torch.load(tmp_path / 'both' / 'rank0.pth'), torch.load(tmp_path / 'one' / 'rank0.pth')

    def spread(a, b):
        return max((a[k] - b[k]).abs().max().item() for k in a)

    assert spread(rank0, rank1) == 0 and spread(rank0, both) < 1e-12
    assert spread(rank0, one) > 1e-6


@pytest.mark.parametrize('config,options', [
    ('configs/mzsr_meta_x2.py', ['model.pretrained_basicsr=None', 'train_dataloader.dataset.io_backend.type=disk',
                                 'model.generator.num_feat=8', 'model.generator.num_layers=3',
                                 'train_dataloader.dataset.gt_size=32']),
    ('configs/swinir_distilled_x4.py', ['train_dataloader.batch_size=1']),
])
def test_mmagic_configs_train_in_two_processes_with_identical_weights(photo_dir, class_lmdb, tmp_path, config, options):
    """MMEngine's own DDP wrapper (MZSR: the meta-loss through forward(mode='loss'), second order)."""
    data = f'train_dataloader.dataset.dataroot_gt={photo_dir}' if 'mzsr' in config else \
        f'train_dataloader.dataset.data_root={class_lmdb}'
    proc = run_ranks(['tools/mm_train.py', config, '--launcher', 'pytorch', '--work-dir', str(tmp_path / 'work'),
                      '--cfg-options', 'train_cfg.max_iters=2', 'train_cfg.val_interval=1000',
                      'default_hooks.logger.interval=1', data, *options], ROOT)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-3000:]
    assert 'Iter(train) [2/2]' in log
    assert "2 ranks, gloo: largest difference of any rank's weights from rank 0's: 0\n" in log


def test_mmagic_launcher_outside_torchrun_is_one_line():
    proc = run_tool('tools/mm_train.py', 'configs/mzsr_meta_x2.py', '--launcher', 'pytorch', check=False)
    assert proc.returncode == 2 and 'run: torchrun --nproc_per_node=N tools/mm_train.py' in proc.stderr


def test_distillation_finetune_stage_runs_in_two_processes(photo_dir, tmp_path):
    from srdistill.core.lmdb_io import read_meta_keys as keys
    from srdistill_plugin.distill.runner import DistillRun

    from .test_distillation import tiny_options

    opt = tiny_options(photo_dir, tmp_path / 'out')
    opt['finetune']['num_processes'] = 2
    run = DistillRun(opt, root=tmp_path)
    run.run()
    logs = ''.join(p.read_text() for p in (run.exp_dir / 'pytest_distill_finetune').glob('train_*.log'))
    assert "2 ranks, gloo: largest difference of any rank's net_g weights from rank 0's: 0" in logs
    assert len(keys(tmp_path / 'out' / 'HR.lmdb')) == 6
    opt['finetune']['num_processes'] = 0  # refused at start, before any stage
    with pytest.raises(SRDistillError, match='finetune.num_processes: expected a positive integer'):
        DistillRun(opt, root=tmp_path / 'other')


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants (torchrun starts its workers in their own process groups)."""
    tree = [pid]
    for task in Path(f'/proc/{pid}/task').glob('*'):
        children = (task / 'children').read_text().split() if (task / 'children').is_file() else []
        for child in map(int, children):
            tree += process_tree(child)
    return tree


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie waiting for its parent does not)."""
    try:
        return Path(f'/proc/{pid}/stat').read_text().rsplit(')', 1)[1].split()[0] != 'Z'
    except FileNotFoundError:
        return False


def kill_tree(pid: int) -> None:
    for member in process_tree(pid):
        try:
            os.kill(member, signal.SIGKILL)
        except ProcessLookupError:
            pass


def test_two_process_run_killed_mid_training_resumes_from_its_last_state(class_lmdb, tmp_path):
    """kill -9 of torchrun and both ranks mid-training, then --auto_resume: training continues from the newest
    training state that was completely written (a state cut off by the kill is skipped with a warning)."""
    import torch

    opt = tiny_swinir_options(class_lmdb, tmp_path / 'exp', 100000)
    opt['logger'].update(print_freq=2, save_checkpoint_freq=3)
    (tmp_path / 'long.yml').write_text(yaml.safe_dump(opt))
    states = tmp_path / 'exp' / 'pytest_swinir_x4' / 'training_states'
    proc = subprocess.Popen([sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node=2',
                             '--master_addr=127.0.0.1', f'--master_port={free_port()}', 'tools/train.py', '-opt',
                             str(tmp_path / 'long.yml'), '--launcher', 'pytorch'], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and len(list(states.glob('*.state'))) < 2:
            time.sleep(0.1)
    finally:
        tree = process_tree(proc.pid)
        kill_tree(proc.pid)  # torchrun and both ranks, mid-training
        proc.wait()
    time.sleep(0.5)
    assert len(tree) >= 3 and not [pid for pid in tree if alive(pid)]  # nothing left running

    def readable(path):
        try:
            torch.load(path, map_location='cpu', weights_only=False)
            return True
        except Exception:
            return False

    newest = max(int(p.stem) for p in states.glob('*.state') if readable(p))
    resumed = torchrun('-opt', str(tmp_path / 'long.yml'), '--auto_resume', '--force_yml',
                       f'train:total_iter={newest + 4}')
    log = resumed.stdout + resumed.stderr
    assert re.search(rf'Resuming training from epoch: \d+, iter: {newest}\.', log), log[-2000:]
    assert "from rank 0's: 0\n" in log


def test_two_ranks_draw_disjoint_class_balanced_streams(class_lmdb, tmp_path):
    """In a real two-process gloo group: per epoch the ranks take disjoint positions of one class-balanced stream
    (interleaved they give it back whole), classes are balanced over both ranks, and the stream changes per epoch."""
    import json
    from collections import Counter

    from srdistill.core.class_balance import class_balanced_indices, class_members

    out = tmp_path / 'streams.json'
    proc = run_ranks(['tests/helpers/sampler_streams.py', str(class_lmdb), str(out)], ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads(out.read_text())
    class_ids = data['class_ids']
    for epoch, (rank0, rank1) in enumerate(data['streams']):
        assert len(rank0) == len(rank1) == len(class_ids) * 20 // 2
        merged = [i for pair in zip(rank0, rank1) for i in pair]
        assert merged == class_balanced_indices(class_members(class_ids), len(merged), 5 + epoch)
        counts = Counter(class_ids[i] for i in merged)
        assert max(counts.values()) - min(counts.values()) < 0.15 * len(merged)
    assert data['streams'][0][0] != data['streams'][1][0]
