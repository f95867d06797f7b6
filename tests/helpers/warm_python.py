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


def _main(args: list[str], cwd: str, out: str, err: str, fault: str | None) -> None:
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


def run_python(args: list[str], cwd: Path, fault: str | None = None) -> subprocess.CompletedProcess:
    """Run ``python <args>`` from ``cwd`` (with ``fault`` injected); stdout and stderr captured as text, like
    ``subprocess.run``."""
    args = [str(a) for a in args]
    with tempfile.TemporaryDirectory() as tmp:
        out, err = os.path.join(tmp, 'stdout'), os.path.join(tmp, 'stderr')
        proc = _forkserver().Process(target=_main, args=(args, str(cwd), out, err, fault))
        proc.start()
        proc.join()
        read = lambda path: Path(path).read_text(errors='replace') if os.path.exists(path) else ''  # noqa: E731
        return subprocess.CompletedProcess([sys.executable, *args], proc.exitcode, read(out), read(err))
