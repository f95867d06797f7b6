"""Shared behaviour of the entry scripts: bad input and storage failures (a full disk, a read-only folder) end as
one line on stderr and exit status 2."""
from __future__ import annotations

import errno
import os
import signal
import sys
from typing import Callable

from srdistill.core.errors import SRDistillError

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


def check_options_file(argv: list[str]) -> None:
    """BasicSR reads a missing ``-opt`` path as YAML text and fails deep inside; name the file instead."""
    if '-opt' in argv[:-1]:
        path = argv[argv.index('-opt') + 1]
        if not os.path.isfile(path):
            raise SRDistillError(f'-opt: {path} does not exist')
