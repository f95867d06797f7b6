"""Helpers shared by the benchmark scripts: thread pinning, running the tools, Y-channel metrics, result files."""
from __future__ import annotations

import json
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
import yaml

from srdistill.core.atomic_io import atomic_write_text
from srdistill.core.json_store import JsonStore as ResultCache  # noqa: F401  (used by the benchmarks)
from srdistill_plugin.zero_shot.checkpoints import average_checkpoint, file_hash, saved_checkpoints  # noqa: F401

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / 'benchmarks' / 'results'
SCALE = 2
# the MZSR paper's x2 figures on Set5 (Table 1), one copy: the zero-shot experiments' shared options
PAPER_SET5 = yaml.safe_load((ROOT / 'options' / 'report' / '_base_' / 'mzsr_x2_paper.yml').read_text())['paper']['Set5']
PAPER_BICUBIC_SET5 = {kernel: figures['bicubic'] for kernel, figures in PAPER_SET5.items()}
PAPER_MZSR1_SET5 = {kernel: figures['mzsr1'] for kernel, figures in PAPER_SET5.items()}


def pin_threads(threads: int) -> dict:
    """Fix torch's (and child processes') thread count; return what to record about the machine."""
    torch.set_num_threads(threads)
    for var in ('OMP_NUM_THREADS', 'MKL_NUM_THREADS'):
        os.environ[var] = str(threads)
    return {'torch_threads': threads, 'torch': torch.__version__, 'cpu_count': os.cpu_count(),
            'device': torch.cuda.get_device_name(0) if torch.cuda.is_available() else f'CPU ({platform.processor() or platform.machine()})'}


def run_tool(*args: str) -> float:
    """Run ``python <args>`` from the repository root (output streamed); return the wall time in seconds."""
    print('$ python', ' '.join(args), flush=True)
    start = time.perf_counter()
    subprocess.run([sys.executable, *args], cwd=ROOT, check=True)
    return time.perf_counter() - start


def repo_relative(text: str) -> str:
    """``text`` with this machine's paths written relative to the repository (``benchmarks/work/...``,
    ``../shared/...``), so a results file reads the same on every clone."""
    start = r'(?<![\w.\-/])'  # an absolute path starts here, not inside a relative one (benchmarks/work/...)
    text = re.sub(start + re.escape(f'{ROOT}{os.sep}'), '', text)
    return re.sub(start + re.escape(f'{ROOT.parent}{os.sep}'), f'..{os.sep}', text)


# One folder per study under benchmarks/results (its index: benchmarks/results/README.md), by result-name prefix.
STUDIES = (('mzsr_adaptation_official_', 'mzsr_official_start'), ('mzsr_paper_table_', 'mzsr_official_start'),
           ('mzsr_meta_stability_', 'mzsr_official_start'), ('mzsr_official_start_', 'mzsr_official_start'),
           ('mzsr_adaptation_', 'mzsr_own_start'), ('blind_sr_', 'blind_sr'), ('zeroshot_command_', 'zeroshot_command'),
           ('mm_parity_', 'mm_parity'), ('smoke_', 'smoke'), ('bicubic_conventions_', 'bicubic_conventions'))


def result_path(file_name: str) -> Path:
    """Where a results file lives: ``benchmarks/results/<study>/<file_name>``."""
    study = next((folder for prefix, folder in STUDIES if file_name.startswith(prefix)), 'other')
    return RESULTS / study / file_name


def write_results(name: str, payload: dict, markdown: str) -> None:
    """``<name>.json`` and ``.md`` in the study's folder, paths relative to the repository."""
    for suffix, text in (('.json', json.dumps(payload, indent=2)), ('.md', markdown)):
        atomic_write_text(result_path(f'{name}{suffix}'), repo_relative(text))
    print(markdown)


def mean(values) -> float:
    return float(np.mean(list(values)))
