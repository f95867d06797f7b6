"""Shared fixtures: small real photographs (scikit-image's bundled ones) and the repository paths."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import cv2
import pytest

if os.environ.get('PYTEST_XDIST_WORKER'):  # `pytest -n 2` on 2 cores: one thread per worker and per tool it runs
    os.environ.setdefault('OMP_NUM_THREADS', '1')
    os.environ.setdefault('MKL_NUM_THREADS', '1')
    import torch
    torch.set_num_threads(int(os.environ['OMP_NUM_THREADS']))

from srdistill.core.sample_images import load_skimage_photos

from .helpers.warm_python import run_python

ROOT = Path(__file__).resolve().parent.parent
# a one-layer open_clip architecture (the model_cfg of an open_clip config file)
TINY_CLIP = {'embed_dim': 16, 'vision_cfg': {'image_size': 32, 'layers': 1, 'width': 32, 'head_width': 16,
                                             'patch_size': 8},
             'text_cfg': {'context_length': 8, 'vocab_size': 64, 'width': 16, 'heads': 2, 'layers': 1}}
SHARED = ROOT.parent / 'shared' / 'data'
SET5 = ROOT / 'datasets' / 'Set5'


@pytest.fixture(scope='session')
def photo_dir(tmp_path_factory) -> Path:
    """Six real colour photographs, centre-cropped to 128x128 PNGs."""
    folder = tmp_path_factory.mktemp('photos')
    photos = load_skimage_photos()
    for name in ('astronaut', 'coffee', 'chelsea', 'rocket', 'hubble_deep_field', 'immunohistochemistry'):
        img = photos[name]
        h, w = img.shape[:2]
        cv2.imwrite(str(folder / f'{name}.png'), img[(h - 128) // 2:(h + 128) // 2, (w - 128) // 2:(w + 128) // 2])
    return folder


@pytest.fixture()
def tiny_clip(tmp_path) -> tuple[Path, Path]:
    """``TINY_CLIP`` with random weights (config and checkpoint files), registered as srd-tiny-clip."""
    import open_clip
    import torch

    config = tmp_path / 'srd-tiny-clip.json'
    config.write_text(json.dumps(TINY_CLIP))
    open_clip.add_model_config(str(config))
    torch.manual_seed(0)
    checkpoint = tmp_path / 'tiny_clip.pt'
    torch.save({'state_dict': open_clip.create_model('srd-tiny-clip').state_dict()}, checkpoint)
    return config, checkpoint


def run_tool(*args: str, cwd: Path = ROOT, check: bool = True) -> subprocess.CompletedProcess:
    """Run ``python <args>`` as a user would, capturing its output: a process of its own, forked from one that has
    imported torch, BasicSR and the plugin already (tests/helpers/warm_python.py)."""
    proc = run_python(list(args), cwd)
    if check and proc.returncode != 0:
        raise AssertionError(f'{args} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}')
    return proc


def run_main(main: Callable[[], None], args: list[str], cwd: Path, monkeypatch, capsys) -> tuple[int, str, str]:
    """Run an entry script's ``main`` in this process as ``<script> <args>`` from ``cwd``: ``(exit status, stdout,
    stderr)``. The one-line errors and their exit status are the same as through a new interpreter, without its
    seconds of imports; each command keeps one test through a real process."""
    import torch

    monkeypatch.chdir(cwd)
    monkeypatch.setattr(sys, 'argv', ['srdistill', *args])
    threads = torch.get_num_threads()  # a tool may set its own
    try:
        main()
        code = 0
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else 1
    finally:
        torch.set_num_threads(threads)
    out, err = capsys.readouterr()
    return code, out, err
