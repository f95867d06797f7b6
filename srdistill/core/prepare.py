"""Folder of HR images -> optional sub-image crops -> BasicSR LMDBs: ``HR.lmdb`` and ``LR_bicubic_X{s}.lmdb``."""
from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from .degradations import bicubic_downscale, check_scale, mod_crop
from .errors import SRDistillError
from .imageio import image_size, list_images, read_image, to_uint8
from .lmdb_io import AtomicLmdbWriter, estimate_map_size


@dataclass
class PrepareOptions:
    """How images are cut and which LR scales are made.

    crop_size: side of the square sub-images (0: whole images); step: stride between crops;
    thresh_size: a leftover border narrower than this is dropped (BasicSR's extract_subimages rule);
    scales: LR factors to make; min_size: smaller images are rejected with an error.
    """
    crop_size: int = 0
    step: int = 0
    thresh_size: int = 0
    scales: tuple[int, ...] = (4, )
    min_size: int = 32

    def validate(self) -> None:
        for s in self.scales:
            check_scale(s, '--scales')
        for name, value in (('crop_size', self.crop_size), ('step', self.step), ('thresh_size', self.thresh_size),
                            ('min_size', self.min_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise SRDistillError(f'option {name}: expected an integer >= 0, got {value!r}')
        if self.crop_size:
            if self.crop_size % math.lcm(*self.scales):
                raise SRDistillError(f'option crop_size: {self.crop_size} is not a multiple of every scale {self.scales}')
            if self.step <= 0:
                raise SRDistillError(f'option step: must be positive with crop_size, got {self.step}')


def crop_origins(length: int, crop: int, step: int, thresh: int) -> list[int]:
    """Start offsets along one axis: every ``step``, plus a last crop flush with the end if enough is left."""
    starts = list(range(0, length - crop + 1, step))
    if length - (starts[-1] + crop) > thresh:
        starts.append(length - crop)
    return starts


def sub_images(img: np.ndarray, opts: PrepareOptions) -> list[np.ndarray]:
    """The crops of one image (the whole mod-cropped image when ``crop_size`` is 0)."""
    if not opts.crop_size:
        return [mod_crop(img, math.lcm(*opts.scales))]
    h, w = img.shape[:2]
    if min(h, w) < opts.crop_size:
        return [mod_crop(img, math.lcm(*opts.scales))]
    return [img[y:y + opts.crop_size, x:x + opts.crop_size]
            for y in crop_origins(h, opts.crop_size, opts.step, opts.thresh_size)
            for x in crop_origins(w, opts.crop_size, opts.step, opts.thresh_size)]


def readable_images(files: list[Path], min_size: int) -> list[Path]:
    """The files whose header decodes to an image of at least ``min_size`` px a side; each other one is reported in
    one line (``skipped: <file>: <why>``) and the count at the end, so a bad photo in a large pool costs nothing."""
    kept = []
    for path in files:
        try:
            w, h = image_size(path)
            if min(w, h) < min_size:
                raise SRDistillError(f'{path}: image is {w}x{h}, smaller than the required {min_size} px')
            kept.append(path)
        except SRDistillError as err:
            tqdm.write(f'skipped: {err}', file=sys.stderr)
    if len(kept) < len(files):
        tqdm.write(f'skipped {len(files) - len(kept)} of {len(files)} images', file=sys.stderr)
    if not kept:
        raise SRDistillError(f'{files[0].parent}: none of its {len(files)} images can be used')
    return kept


def prepare_lmdbs(input_dir: str | Path, output_dir: str | Path, opts: PrepareOptions,
                  overwrite: bool = False, skip_bad: bool = False) -> dict[str, Path]:
    """Write ``HR.lmdb`` and one ``LR_bicubic_X{s}.lmdb`` per scale into ``output_dir``; return their paths.

    All databases are written under temporary names and renamed only after every image went through. With
    ``skip_bad`` an unreadable or too small image is skipped with one line instead of stopping the run.
    """
    opts.validate()
    files = list_images(input_dir)
    if skip_bad:
        files = readable_images(files, opts.min_size)
    output_dir = Path(output_dir)
    if output_dir.exists() and not output_dir.is_dir():
        raise SRDistillError(f'{output_dir}: exists and is not a folder (--output names the folder of the LMDBs)')
    names = {'HR': output_dir / 'HR.lmdb', **{f'X{s}': output_dir / f'LR_bicubic_X{s}.lmdb' for s in opts.scales}}
    if not overwrite:
        done = [str(p) for p in names.values() if p.exists()]
        if done:
            raise SRDistillError(f'{done[0]}: already exists (use --overwrite to rebuild)')
    overlap = (opts.crop_size / opts.step) ** 2 if opts.crop_size else 1  # overlapping crops repeat pixels
    raw = int(overlap * sum(w * h * 3 for w, h in map(image_size, files)))
    writers = {key: AtomicLmdbWriter(path, estimate_map_size(raw), overwrite=overwrite) for key, path in names.items()}
    try:
        for path in tqdm(files, desc='prepare LMDB', unit='img'):
            try:
                img = read_image(path, min_size=opts.min_size)
            except SRDistillError as err:
                if not skip_bad:
                    raise
                tqdm.write(f'skipped: {err}', file=sys.stderr)
                continue
            for idx, crop in enumerate(sub_images(img, opts), start=1):
                key = f'{path.stem}_s{idx:03d}' if opts.crop_size else path.stem
                writers['HR'].put(key, to_uint8(crop))
                for s in opts.scales:
                    writers[f'X{s}'].put(key, to_uint8(bicubic_downscale(crop, s)))
    except BaseException:
        for writer in writers.values():
            writer.abort()
        raise
    return {key: writer.commit() for key, writer in writers.items()}
