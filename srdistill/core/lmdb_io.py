"""BasicSR-format LMDB writing that is atomic (temporary name, renamed when complete) and key reading."""
from __future__ import annotations

import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import cv2
import lmdb
import numpy as np

from .atomic_io import partial_path
from .basicsr_files import basicsr_module
from .errors import SRDistillError, first_line

LmdbMaker = basicsr_module('utils.lmdb_util').LmdbMaker

META_INFO = 'meta_info.txt'


class AtomicLmdbWriter:
    """Collects uint8 images under keys into ``<name>.incomplete.lmdb`` through BasicSR's ``LmdbMaker``.

    Only :meth:`commit` renames the folder to its final ``<name>.lmdb``; an exception or a kill leaves the
    final name absent, and a later run removes the stale temporary folder.
    """

    def __init__(self, lmdb_path: str | Path, map_size: int, compress_level: int = 1, overwrite: bool = False):
        self.path = Path(lmdb_path)
        if self.path.suffix != '.lmdb':
            raise SRDistillError(f'{self.path}: an LMDB path must end with .lmdb')
        if self.path.exists() and not overwrite:
            raise SRDistillError(f'{self.path}: already exists (pass overwrite to replace it)')
        self.tmp = partial_path(self.path)
        if self.tmp.exists():
            shutil.rmtree(self.tmp)
        self.tmp.parent.mkdir(parents=True, exist_ok=True)
        self.compress_level = compress_level
        self._maker = self._lmdb(LmdbMaker, str(self.tmp), map_size=int(map_size), compress_level=compress_level)
        self.keys: list[str] = []

    def put(self, key: str, img: np.ndarray) -> None:
        """Add a uint8 HWC (BGR) image under ``key`` (PNG-encoded, as BasicSR's tools do)."""
        if img.dtype != np.uint8 or img.ndim != 3:
            raise SRDistillError(f'LMDB key {key}: expected a uint8 HWC image, got {img.dtype} {img.shape}')
        ok, buf = cv2.imencode('.png', img, [cv2.IMWRITE_PNG_COMPRESSION, self.compress_level])
        if not ok:
            raise SRDistillError(f'LMDB key {key}: PNG encoding failed')
        self._lmdb(self._maker.put, buf.tobytes(), key, img.shape)
        self.keys.append(key)

    def _lmdb(self, call, *args, **kwargs):
        """An LMDB call whose failure (a full disk, a read-only folder) is one line naming the database."""
        try:
            return call(*args, **kwargs)
        except lmdb.Error as err:
            raise SRDistillError(f'{self.path}: cannot write the LMDB ({first_line(err)}); nothing was written '
                                 'under its name') from err

    def commit(self) -> Path:
        """Close the database and move it to its final name."""
        self._lmdb(self._maker.close)
        if self.path.exists():
            shutil.rmtree(self.path)
        self.tmp.rename(self.path)
        return self.path

    def abort(self) -> None:
        """Close and delete the temporary database."""
        try:
            self._maker.close()
        except lmdb.Error:  # already failing: the temporary folder goes either way
            pass
        shutil.rmtree(self.tmp, ignore_errors=True)


@contextmanager
def atomic_lmdb(lmdb_path: str | Path, map_size: int, **kwargs) -> Iterator[AtomicLmdbWriter]:
    """``with atomic_lmdb(path, map_size) as w: w.put(...)`` -- committed only if the block finishes."""
    writer = AtomicLmdbWriter(lmdb_path, map_size, **kwargs)
    try:
        yield writer
    except BaseException:
        writer.abort()
        raise
    writer.commit()


def estimate_map_size(raw_bytes: int) -> int:
    """A map size that holds ``raw_bytes`` of pixels PNG-encoded (worst case slightly over raw) plus headroom."""
    return int(raw_bytes * 1.5) + 64 * 1024 ** 2


def read_meta_keys(lmdb_path: str | Path) -> list[str]:
    """Keys listed in a BasicSR LMDB's ``meta_info.txt`` (``key.png (h,w,c) level`` lines)."""
    meta = Path(lmdb_path) / META_INFO
    if not meta.is_file():
        raise SRDistillError(f'{lmdb_path}: not a finished BasicSR LMDB (no {META_INFO})')
    keys = [line.split(' ')[0].rsplit('.', 1)[0] for line in meta.read_text().splitlines() if line.strip()]
    if not keys:
        raise SRDistillError(f'{meta}: lists no images')
    return keys
