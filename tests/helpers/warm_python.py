"""``python <args>`` for the tests, in a new process forked from a warm one.

Every tool starts by importing torch, torchvision and BasicSR (about 4 s on 2 CPU cores). Here a forkserver imports
them and the plugin once per test worker; each call forks a process from it, changes to ``cwd`` and runs the script
(``path``), module (``-m``) or code (``-c``) as ``__main__`` with its own argv, stdout and stderr, exit status and
atexit handlers, as a new interpreter would. What differs is only that those imports happened before the fork, so the
tests that check a bare interpreter's start-up (the wheel tests, the import checks) start their own. A ``fault``
(``SRDISTILL_FAULT``, see ``fault_site/sitecustomize.py``) is installed in the forked process before the tool runs,
and its children inherit it as a new interpreter's would.
"""
from __future__ import annotations

import atexit
import multiprocessing
import os
import runpy
import socket
import subprocess
import sys
import tempfile
from multiprocessing.context import BaseContext
from pathlib import Path

PRELOAD = ['srdistill_plugin']
FAULT_SITE = Path(__file__).resolve().parent / 'fault_site'
_context: BaseContext | None = None


def _forkserver() -> BaseContext:
    global _context
    if _context is None:
        _context = multiprocessing.get_context('forkserver')
        _context.set_forkserver_preload(PRELOAD)
    return _context


def _main(args: list[str], cwd: str, out: str, err: str, fault: str | None, env: dict[str, str]) -> None:
    os.environ.update(env)
    for fd, path in ((1, out), (2, err)):
        handle = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(handle, fd)
        os.close(handle)
    os.chdir(cwd)
    if fault:
        os.environ['SRDISTILL_FAULT'] = fault
        os.environ['PYTHONPATH'] = os.pathsep.join([str(FAULT_SITE), os.environ.get('PYTHONPATH', '')])
        runpy.run_path(str(FAULT_SITE / 'sitecustomize.py'))
    try:
        if args[0] == '-m':
            sys.argv = list(args[1:])
            runpy.run_module(args[1], run_name='__main__', alter_sys=True)
        elif args[0] == '-c':
            sys.argv = ['-c', *args[2:]]
            sys.path.insert(0, '')
            exec(compile(args[1], '<string>', 'exec'), {'__name__': '__main__'})
        else:
            sys.argv = list(args)
            sys.path.insert(0, os.path.dirname(os.path.abspath(args[0])))
            runpy.run_path(args[0], run_name='__main__')
    finally:
        atexit._run_exitfuncs()


def _start(args: list[str], cwd: Path, tmp: str, fault: str | None = None, env: dict[str, str] | None = None):
    out, err = os.path.join(tmp, 'stdout'), os.path.join(tmp, 'stderr')
    proc = _forkserver().Process(target=_main, args=([str(a) for a in args], str(cwd), out, err, fault, env or {}))
    proc.start()
    return proc


def _finished(proc, args: list[str], tmp: str) -> subprocess.CompletedProcess:
    proc.join()
    read = lambda name: Path(tmp, name).read_text(errors='replace') if Path(tmp, name).exists() else ''  # noqa: E731
    return subprocess.CompletedProcess([sys.executable, *map(str, args)], proc.exitcode, read('stdout'), read('stderr'))


def run_python(args: list[str], cwd: Path, fault: str | None = None,
               env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run ``python <args>`` from ``cwd`` (with ``fault`` injected, ``env`` added to the environment); stdout and
    stderr captured as text, like ``subprocess.run``."""
    with tempfile.TemporaryDirectory() as tmp:
        return _finished(_start(args, cwd, tmp, fault, env), args, tmp)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def run_ranks(args: list[str], cwd: Path, nproc: int = 2) -> subprocess.CompletedProcess:
    """``torchrun --nproc_per_node=<nproc> <args>`` on one machine: each rank a warm process with the environment
    torchrun gives its workers (rank, world size, rendezvous address). Output is every rank's, in rank order; the exit
    status is the first failing rank's, 0 if none failed. The tests that check torchrun itself (its process tree
    killed, the distillation's own launch) start the real one."""
    rendezvous = {'MASTER_ADDR': '127.0.0.1', 'MASTER_PORT': str(free_port()), 'WORLD_SIZE': str(nproc),
                  'LOCAL_WORLD_SIZE': str(nproc), 'GROUP_RANK': '0'}
    with tempfile.TemporaryDirectory() as tmp:
        folders = [os.path.join(tmp, str(rank)) for rank in range(nproc)]
        procs = []
        for rank, folder in enumerate(folders):
            os.mkdir(folder)
            procs.append(_start(args, cwd, folder, env={**rendezvous, 'RANK': str(rank), 'LOCAL_RANK': str(rank)}))
        done = [_finished(proc, args, folder) for proc, folder in zip(procs, folders)]
    failed = [d.returncode for d in done if d.returncode]
    return subprocess.CompletedProcess(done[0].args, failed[0] if failed else 0, ''.join(d.stdout for d in done),
                                       ''.join(d.stderr for d in done))
