"""The one way the package starts a BasicSR training from Python (the distillation's fine-tuning): in this process
through the plugin's train pipeline, or under torchrun for several processes (one per GPU, or gloo ranks on CPUs)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from .train import train_pipeline

TRAIN_COMMAND = 'srdistill_plugin.commands.train'


def torchrun_command(args: list[str], processes: int) -> list[str]:
    """``srdistill-train <args>`` on ``processes`` ranks of this machine."""
    return [sys.executable, '-m', 'torch.distributed.run', '--standalone', f'--nproc_per_node={processes}',
            '-m', TRAIN_COMMAND, *args, '--launcher', 'pytorch']


def run_training(args: list[str], root: Path, processes: int = 1) -> None:
    """``srdistill-train <args>`` with ``root`` as the project root: in this process when ``processes`` is 1 (an
    error is raised here), else under torchrun from ``root`` (a failed rank raises ``CalledProcessError``)."""
    if processes == 1:
        train_pipeline(str(root), list(args))
    else:
        subprocess.run(torchrun_command(args, processes), cwd=root, check=True)
