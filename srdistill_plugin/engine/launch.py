"""BasicSR trainings started from Python (the experiment's runs, the distillation's finetune stage). Each still runs
in a process of its own (a killed training leaves its caller alive, and the exit status names the kill), but that
process is forked from a small server that imported torch, BasicSR and the training command once: a training pays
no interpreter start-up (about 4 s on 2 CPU cores). The server never touches CUDA, so the caller may evaluate on a GPU
while its trainings run there, and it never imports the caller's ``__main__`` (unlike multiprocessing's forkserver),
so a script without a ``__main__`` guard may drive it.

    python -m srdistill_plugin.engine.launch FD   # the server, on the socket FD its client passes it
"""
from __future__ import annotations

import atexit
import json
import os
import runpy
import select
import signal
import socket
import subprocess
import sys
import traceback
from pathlib import Path

TRAIN_COMMAND = 'srdistill_plugin.commands.train'
_MAX_MESSAGE = 1 << 16


class TrainingServer:
    """The client side: starts the server on first use and asks it for one training process at a time."""

    def __init__(self):
        self.sock: socket.socket | None = None
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        if self.sock is not None:  # a server that stopped: its socket goes with it
            self.sock.close()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.proc = subprocess.Popen([sys.executable, '-m', __name__, str(theirs.fileno())],
                                     pass_fds=(theirs.fileno(), ))
        theirs.close()
        self.sock = ours

    def run(self, args: list[str], root: Path, log: Path | None, threads: int | None, lock_fd: int | None) -> int:
        if self.proc is None or self.proc.poll() is not None:
            self.start()
        request = json.dumps({'args': list(args), 'cwd': str(root), 'log': log and str(log),
                              'threads': threads}).encode()
        socket.send_fds(self.sock, [request], [] if lock_fd is None else [lock_fd])
        reply = self.sock.recv(_MAX_MESSAGE)
        if not reply:
            raise RuntimeError(f'the training server stopped (exit {self.proc.wait()}); its error is printed above')
        return json.loads(reply)['exit']


_server = TrainingServer()


def run_training(args: list[str], root: Path, log: Path | None = None, threads: int | None = None,
                 lock_fd: int | None = None) -> int:
    """``srdistill-train <args>`` from ``root`` in a forked process; its exit status (negative: killed by that
    signal). Its output goes to ``log`` (appended), else where the caller's went; ``threads``: torch's thread count
    (else the environment's); ``lock_fd`` stays held by that process while it lives."""
    return _server.run(args, root, log, threads, lock_fd)


def exit_text(code: int) -> str:
    """An exit status as a person reads it: ``exit 2``, ``killed by SIGKILL``."""
    return f'killed by {signal.Signals(-code).name}' if code < 0 else f'exit {code}'


def _train_child(request: dict) -> int:
    """In the forked process: the request's output, threads, argv and working directory; then the command."""
    import torch

    signal.signal(signal.SIGINT, signal.default_int_handler)
    if request['log']:
        out = os.open(request['log'], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        for fd in (1, 2):
            os.dup2(out, fd)
        os.close(out)
    os.chdir(request['cwd'])
    if request['threads']:
        torch.set_num_threads(request['threads'])
    sys.argv = ['srdistill-train', *request['args']]
    code = 0
    try:
        runpy.run_module(TRAIN_COMMAND, run_name='__main__', alter_sys=True)
    except SystemExit as exit_:
        if isinstance(exit_.code, int) or exit_.code is None:
            code = exit_.code or 0
        else:
            print(exit_.code, file=sys.stderr)
            code = 1
    except BaseException:
        traceback.print_exc()
        code = 1
    finally:
        atexit._run_exitfuncs()
        sys.stdout.flush()
        sys.stderr.flush()
    return code


def _wait_unless_client_leaves(sock: socket.socket, pid: int) -> int | None:
    """The training's wait status; ``None`` where the client went away first (killed, or stopped by SIGTERM): the
    training is then killed too, so no run trains on unowned (it resumes from its last checkpoint)."""
    pidfd = os.pidfd_open(pid)
    try:
        ready, _, _ = select.select([sock, pidfd], [], [])
    finally:
        os.close(pidfd)
    if pidfd not in ready:  # the client sends nothing while it waits: a readable socket is its end closing
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        return None
    return os.waitpid(pid, 0)[1]


def serve(fd: int) -> None:
    """Import the training command once, then fork one training process per request and answer its exit status;
    return when the client is gone (killing the training it asked for)."""
    __import__(TRAIN_COMMAND)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C stops the client and the training, not the server mid-wait
    sock = socket.socket(fileno=fd)
    while True:
        message, fds, _, _ = socket.recv_fds(sock, _MAX_MESSAGE, 1)
        if not message:
            return
        pid = os.fork()
        if pid == 0:
            sock.close()
            os._exit(_train_child(json.loads(message)))  # the received lock fd stays open in this process
        for received in fds:
            os.close(received)
        status = _wait_unless_client_leaves(sock, pid)
        if status is None:
            return
        try:
            sock.send(json.dumps({'exit': os.waitstatus_to_exitcode(status)}).encode())
        except BrokenPipeError:
            return


if __name__ == '__main__':
    serve(int(sys.argv[1]))
