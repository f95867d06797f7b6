"""Outputs that are either complete or absent: every file and LMDB folder the project writes goes to
``<stem>.incomplete<suffix>`` beside its final name (the suffix kept, so writers that pick a format by extension
still do) and is renamed when complete; a failed write removes it."""
from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


def partial_path(path: str | os.PathLike) -> Path:
    """The name ``path`` is written under until it is complete: ``<stem>.incomplete<suffix>``."""
    path = Path(path)
    return path.with_name(f'{path.stem}.incomplete{path.suffix}')


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield the partial name to write ``path`` to; it becomes ``path`` when the block ends, and is removed when the
    block fails (parent folders are created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = partial_path(path)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to ``path`` through its partial name and a rename."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)
