"""The MZSR pretraining pool: photographs from several folders (and the bundled ones), split *by photograph* into a
training LMDB of sub-images and a held-out LMDB of whole photographs on which the checkpoint is chosen."""
from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from srdistill.core.atomic_io import atomic_write_text
from srdistill.core.errors import SRDistillError
from srdistill.core.imageio import list_images
from srdistill.core.prepare import PrepareOptions, prepare_lmdbs
from srdistill.core.sample_images import export_skimage_photos

SKIMAGE_SOURCE = 'skimage'


@dataclass(frozen=True)
class PoolSplit:
    """``heldout_every``: every n-th photograph of each folder (sorted by name, starting at n // 2) is held out;
    the bundled photographs always train. ``crop_size``/``step``: training sub-images; ``min_size``: smaller
    photographs are skipped with one line (they could not give a training crop)."""
    heldout_every: int = 20
    crop_size: int = 192
    step: int = 96
    min_size: int = 96

    def is_heldout(self, index: int) -> bool:
        return index % self.heldout_every == self.heldout_every // 2


def link_photo(src: Path, dst: Path) -> None:
    """``dst`` -> ``src`` as a symlink (a copy where links are not allowed)."""
    if dst.is_symlink() or dst.exists():
        dst.unlink()
    try:
        os.symlink(src.resolve(), dst)
    except OSError:
        shutil.copyfile(src, dst)


def split_photos(folders: list[Path], bundled: Path | None, split: PoolSplit) -> dict[str, list[tuple[str, Path]]]:
    """``{'train': [(name, path)], 'heldout': [...]}``; names are ``<folder name>_<file name>`` so no two sources
    collide."""
    parts: dict[str, list[tuple[str, Path]]] = {'train': [], 'heldout': []}
    for folder in folders:
        for index, path in enumerate(list_images(folder)):
            part = 'heldout' if split.is_heldout(index) else 'train'
            parts[part].append((f'{folder.name}_{path.name}', path))
    if bundled is not None:
        parts['train'] += [(f'{SKIMAGE_SOURCE}_{p.name}', p) for p in list_images(bundled)]
    return parts


def prepare_pretrain_pool(folders: list[str | Path], output: str | Path, split: PoolSplit = PoolSplit(),
                          with_bundled: bool = True, overwrite: bool = False) -> dict[str, Path]:
    """Write ``output/train/HR.lmdb`` (sub-images), ``output/heldout/HR.lmdb`` (whole photographs) and
    ``output/heldout.txt`` (which photographs were held out). Unreadable or too small photographs are skipped with
    one line each and counted. Returns the two LMDB paths."""
    folders = [Path(f) for f in folders]
    for folder in folders:
        if not folder.is_dir():
            raise SRDistillError(f'{folder}: pool folder does not exist')
    output = Path(output)
    bundled = output / 'bundled_photos'
    if with_bundled:
        export_skimage_photos(bundled)
    parts = split_photos(folders, bundled if with_bundled else None, split)
    options = {'train': PrepareOptions(split.crop_size, split.step, scales=(), min_size=split.min_size),
               'heldout': PrepareOptions(scales=(), min_size=split.min_size)}
    lmdbs = {}
    for part, photos in parts.items():
        links = output / f'{part}_photos'
        links.mkdir(parents=True, exist_ok=True)
        for name, path in photos:
            link_photo(path, links / name)
        lmdbs[part] = prepare_lmdbs(links, output / part, options[part], overwrite=overwrite, skip_bad=True)['HR']
    atomic_write_text(output / 'heldout.txt', ''.join(f'{name}\n' for name, _ in parts['heldout']))
    return lmdbs
