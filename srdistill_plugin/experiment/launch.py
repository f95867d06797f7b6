"""The training processes of an experiment's runs. Every BasicSR training chunk still runs in a process of its own
(a killed chunk leaves the runner alive, and the exit status names the kill), but the process is forked from a
server that imported torch, BasicSR and the plugin once (multiprocessing's forkserver): a chunk pays no interpreter
start-up (about 4 s on 2 CPU cores), and the server never touches CUDA, so the parent may evaluate on a GPU and
its children may still train there."""
from __future__ import annotations

import multiprocessing
import os
import runpy
import sys
from multiprocessing.context import BaseContext
from multiprocessing.reduction import DupFd
from pathlib import Path

TRAIN_COMMAND = 'srdistill_plugin.commands.train'
_context: BaseContext | None = None


def _forkserver() -> BaseContext:
    global _context
    if _context is None:
        _context = multiprocessing.get_context('forkserver')
        _context.set_forkserver_preload([TRAIN_COMMAND])
    return _context


def _detach(dup) -> int:
    return dup.detach()


class _InheritedFd:
    """A file descriptor handed to the child as an open duplicate (pickled while the child is being started, so the
    forkserver passes it over its socket)."""

    def __init__(self, fd: int):
        self.fd = fd

    def __reduce__(self):
        return _detach, (DupFd(self.fd), )


def _train_child(args: list[str], root: str, log: str, threads: int, lock_fd) -> None:
    """In the forked child: output to ``log``, ``lock_fd`` (an int once unpickled) kept open for the child's life."""
    import torch

    out = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    for fd in (1, 2):
        os.dup2(out, fd)
    os.close(out)
    os.chdir(root)
    torch.set_num_threads(threads)
    sys.argv = ['srdistill-train', *args]
    runpy.run_module(TRAIN_COMMAND, run_name='__main__', alter_sys=True)  # the command, as a program would run it


def run_training(args: list[str], root: Path, log: Path, threads: int, lock_fd: int | None = None) -> int:
    """``srdistill-train <args>`` from ``root`` in a forked process writing to ``log`` (appended); its exit status
    (negative: killed by that signal). ``lock_fd`` stays held by the child while it lives."""
    proc = _forkserver().Process(target=_train_child, args=(
        list(args), str(root), str(log), threads, None if lock_fd is None else _InheritedFd(lock_fd)))
    proc.start()
    proc.join()
    return proc.exitcode
