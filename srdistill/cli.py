"""Shared behaviour of the entry scripts: bad input and storage failures (a full disk, a read-only folder) end as
one line on stderr and exit status 2."""
from __future__ import annotations

import errno
import itertools
import os
import signal
import sys
from typing import Callable

from srdistill.core.errors import SRDistillError
from srdistill.core.options_file import check_force_yml, read_options

STORAGE_ERRORS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM)


def _exit_on_sigterm(signum: int, frame: object) -> None:
    sys.exit(128 + signum)


def run_cli(main: Callable[[], object]) -> None:
    """Call ``main()``; turn :class:`SRDistillError` into one ``error: <message>`` line and ``exit(2)``. SIGTERM
    (``kill``, a scheduler's cancel) exits like Ctrl-C does, through the command's clean-up: helper processes and
    trainings it started stop with it."""
    previous = signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        main()
    except SRDistillError as err:
        print('error: ' + ' '.join(str(err).split()), file=sys.stderr)
        sys.exit(2)
    except OSError as err:
        if err.errno not in STORAGE_ERRORS:
            raise
        print(f'error: {err.filename or "output"}: {os.strerror(err.errno)} (nothing was written under a final '
              'name)', file=sys.stderr)
        sys.exit(2)
    finally:
        signal.signal(signal.SIGTERM, previous)


def check_options_file(argv: list[str]) -> dict | None:
    """The ``-opt`` file of a BasicSR command: it exists and parses, and every ``--force_yml`` entry fits it (BasicSR
    reads a missing path as YAML text and fails deep inside, and a syntax error or a bad entry is a traceback).
    Returns the file's options as written (``None`` without ``-opt``)."""
    if '-opt' not in argv[:-1]:
        return None
    opt = read_options(argv[argv.index('-opt') + 1])
    if '--force_yml' in argv:
        entries = list(itertools.takewhile(lambda a: not a.startswith('-'), argv[argv.index('--force_yml') + 1:]))
        check_force_yml(opt, entries)
    return opt
