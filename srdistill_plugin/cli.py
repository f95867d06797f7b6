"""Shared behaviour of the entry scripts: bad input ends as one line on stderr and exit status 2."""
from __future__ import annotations

import os
import sys
from typing import Callable

from srdistill_plugin.core.errors import SRDistillError


def run_cli(main: Callable[[], object]) -> None:
    """Call ``main()``; turn :class:`SRDistillError` into one ``error: <message>`` line and ``exit(2)``."""
    try:
        main()
    except SRDistillError as err:
        print('error: ' + ' '.join(str(err).split()), file=sys.stderr)
        sys.exit(2)


def check_options_file(argv: list[str]) -> None:
    """BasicSR reads a missing ``-opt`` path as YAML text and fails deep inside; name the file instead."""
    if '-opt' in argv[:-1]:
        path = argv[argv.index('-opt') + 1]
        if not os.path.isfile(path):
            raise SRDistillError(f'-opt: {path} does not exist')
