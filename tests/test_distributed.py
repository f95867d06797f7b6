"""BasicSR's launcher on a CPU-only machine: two gloo processes (loopback) train SwinIR on a tiny class-labelled LMDB
with ClassBalancedSampler, end with identical weights on both ranks, and resume; launcher misuse is one line."""
import socket

import pytest
import yaml

from srdistill_plugin.core.lmdb_io import read_meta_keys
from srdistill_plugin.core.prepare import PrepareOptions, prepare_lmdbs

from .conftest import run_tool
from .test_basicsr_pipelines import tiny_swinir_options

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def torchrun(*args: str, check: bool = True):
    return run_tool('-m', 'torch.distributed.run', '--nproc_per_node=2', '--master_addr=127.0.0.1',
                    f'--master_port={free_port()}', 'tools/train.py', *args, '--launcher', 'pytorch', check=check)


@pytest.fixture()
def options_file(photo_dir, tmp_path):
    lmdb = prepare_lmdbs(photo_dir, tmp_path, PrepareOptions(scales=(4, )))['HR']
    (lmdb / 'class_info.txt').write_text(''.join(f'{k} {i % 3}\n' for i, k in enumerate(read_meta_keys(lmdb))))
    opt = tiny_swinir_options(lmdb, tmp_path / 'exp', 4)
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
        env_args = ['-c', 'import os, runpy, sys; os.environ.update(RANK="0", WORLD_SIZE="1", MASTER_ADDR="127.0.0.1", '
                    f'MASTER_PORT="{free_port()}"); sys.argv = {args!r}; runpy.run_path("tools/train.py", '
                    'run_name="__main__")']
        proc = run_tool(*env_args, check=False)
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
            run_tool('-m', 'torch.distributed.run', '--nproc_per_node=2', '--master_addr=127.0.0.1',
                     f'--master_port={free_port()}', helper, str(tmp_path / name))
        else:
            run_tool(helper, str(tmp_path / name), *args)
    rank0, rank1 = (torch.load(tmp_path / 'dist' / f'rank{r}.pth') for r in (0, 1))
    both, one = torch.load(tmp_path / 'both' / 'rank0.pth'), torch.load(tmp_path / 'one' / 'rank0.pth')

    def spread(a, b):
        return max((a[k] - b[k]).abs().max().item() for k in a)

    assert spread(rank0, rank1) == 0 and spread(rank0, both) < 1e-12
    assert spread(rank0, one) > 1e-6
