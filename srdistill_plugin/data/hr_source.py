"""Random access to a set of HR images in a BasicSR LMDB or an image folder, as float32 BGR [0, 1]."""
from __future__ import annotations

import os
from pathlib import Path

import lmdb
import numpy as np
from basicsr.utils import FileClient, imfrombytes

from srdistill.core.errors import SRDistillError, first_line
from srdistill.core.imageio import list_images, to_float_bgr
from srdistill.core.lmdb_io import read_meta_keys


class HRImageSource:
    """``keys``, ``paths`` and ``read(index)`` over ``dataroot`` with BasicSR's ``io_backend`` options."""

    def __init__(self, dataroot: str | Path, io_backend: dict | None = None, made_by: str | None = None):
        self.root = Path(dataroot)
        self.io_opt = dict(io_backend or {'type': 'disk'})
        check_present(self.root, self.io_opt.get('type'), made_by)
        if self.io_opt['type'] == 'lmdb':
            self.keys = read_meta_keys(self.root)
            check_lmdb_keys(self.root, self.keys)
            self.io_opt['db_paths'], self.io_opt['client_keys'] = [str(self.root)], ['gt']
            self.paths = [f'{self.root}/{k}' for k in self.keys]
        elif self.io_opt['type'] == 'disk':
            files = list_images(self.root)
            self.keys, self.paths = [p.stem for p in files], [str(p) for p in files]
        else:
            raise SRDistillError(f"option io_backend.type: expected 'lmdb' or 'disk', got {self.io_opt['type']!r}")
        self._client = None

    def __len__(self) -> int:
        return len(self.keys)

    def read(self, index: int) -> np.ndarray:
        """The ``index``-th image as float32 BGR [0, 1], HWC (greyscale/16-bit/alpha converted)."""
        if self._client is None:  # opened lazily: LMDB handles must not cross dataloader worker forks
            self._client = shared_client(self.io_opt)
        key = self.keys[index] if self.io_opt['type'] == 'lmdb' else self.paths[index]
        try:
            raw = self._client.get(key, 'gt')
        except Exception as err:  # BasicSR's lmdb backend fails on a missing key with a bare TypeError
            raise SRDistillError(f'{self.root}: cannot read key {key!r} ({err})') from err
        if raw is None:
            raise SRDistillError(f'{self.root}: key {key!r} is listed in meta_info.txt but missing from the LMDB')
        img = imfrombytes(raw, flag='unchanged', float32=False)
        if img is None:
            raise SRDistillError(f'{self.paths[index]}: cannot decode image')
        return to_float_bgr(img, self.paths[index])


def check_present(root: Path, backend: str | None, made_by: str | None) -> None:
    """A missing image folder or unfinished LMDB -> one line that names the command making it (the dataset's
    ``made_by`` option, else the generic one)."""
    lmdb_missing = backend == 'lmdb' and not (root / 'meta_info.txt').is_file()
    if not lmdb_missing and (backend == 'lmdb' or root.is_dir()):
        return
    what = 'not a finished BasicSR LMDB (no meta_info.txt)' if lmdb_missing else 'image folder does not exist'
    hint = made_by and f'made by: {made_by}' or lmdb_missing and 'srdistill-prepare makes LMDBs from a folder of images'
    raise SRDistillError(f'{root}: {what}' + (f' ({hint})' if hint else ''))


_CLIENTS: dict[tuple[int, str], FileClient] = {}


def shared_client(io_opt: dict) -> FileClient:
    """One BasicSR ``FileClient`` per process and database: py-lmdb opens a path only once per process, so two
    datasets on one LMDB (a training and a validation set, say) share its client."""
    key = (os.getpid(), repr(sorted(io_opt.items())))
    if key not in _CLIENTS:
        backend = dict(io_opt)
        _CLIENTS[key] = FileClient(backend.pop('type'), **backend)
    return _CLIENTS[key]


def check_lmdb_keys(root: Path, keys: list[str]) -> None:
    """Every key of ``meta_info.txt`` must be in the database: checked at start, not hours into a training."""
    try:
        env = lmdb.open(str(root), readonly=True, lock=False, readahead=False, meminit=False)
    except lmdb.Error as err:
        if 'already open' in str(err):  # py-lmdb opens a path once per process: another reader checked it
            return
        raise SRDistillError(f'{root}: cannot open the LMDB ({first_line(err)})') from err
    with env.begin(write=False) as txn:
        missing = [k for k in keys if txn.get(k.encode('ascii')) is None]
    env.close()
    if missing:
        raise SRDistillError(f'{root}: {len(missing)} of the {len(keys)} keys in meta_info.txt are missing from the '
                             f'database, e.g. {missing[0]!r}')


def random_crop(img: np.ndarray, size: int, name: str) -> np.ndarray:
    """A random ``size x size`` crop (numpy's global RNG, seeded by BasicSR per worker)."""
    h, w = img.shape[:2]
    if min(h, w) < size:
        raise SRDistillError(f'{name}: {w}x{h} is smaller than the crop size {size}')
    top, left = np.random.randint(0, h - size + 1), np.random.randint(0, w - size + 1)
    return img[top:top + size, left:left + size]
