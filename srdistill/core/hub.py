"""Pretrained models named the way their libraries name them: a local folder/file, or a Hugging Face hub id that
the libraries fetch into their own cache. Offline (``HF_HUB_OFFLINE=1`` or no network) a hub name loads from the
cache only, and a miss is one line that names the model and how to give a local copy."""
from __future__ import annotations

import json
import re
from pathlib import Path

from .errors import SRDistillError, first_line

HUB_ID = re.compile(r'^[A-Za-z0-9][\w.-]*/[\w.-]+(/[\w.-]+)*$')


def offline_hint() -> str:
    """Where the Hugging Face cache is and why it could not be filled."""
    from huggingface_hub import constants

    state = 'HF_HUB_OFFLINE=1' if constants.HF_HUB_OFFLINE else 'no network, or no such model'
    return f'not in the local cache {constants.HF_HUB_CACHE} and not downloadable ({state})'


def diffusers_source(value: str, option: str) -> tuple[str, str | None]:
    """(``option``: the option's full name, for errors.) ``(path_or_repo, subfolder)`` of a diffusers model named by a local folder (with ``config.json``) or a hub
    id ``org/name`` or ``org/name/subfolder`` (e.g. ``runwayml/stable-diffusion-v1-5/unet``)."""
    path = Path(value)
    if (path / 'config.json').is_file():
        return str(path), None
    if path.exists() or not HUB_ID.match(str(value)):
        raise SRDistillError(f'option {option}: {value} is neither a local diffusers folder (no '
                             'config.json) nor a hub id (org/name[/subfolder])')
    parts = str(value).split('/')
    return '/'.join(parts[:2]), '/'.join(parts[2:]) or None


def diffusers_config(value: str, option: str) -> dict:
    """The ``config.json`` of a diffusers model named by a folder or a hub id (through the hub's cache)."""
    source, subfolder = diffusers_source(value, option)
    if subfolder is None and Path(source).is_dir():
        return json.loads((Path(source) / 'config.json').read_text())
    from huggingface_hub import hf_hub_download

    try:
        return json.loads(Path(hf_hub_download(source, 'config.json', subfolder=subfolder)).read_text())
    except Exception as err:  # offline cache miss, unknown repo, network failure
        raise SRDistillError(f'option {option}: {value} is {offline_hint()}; download it once online '
                             f'or give a local diffusers folder ({first_line(err)})') from err


def load_diffusers(cls, value: str, option: str):
    """``cls.from_pretrained`` of a folder or hub id, with a one-line error naming ``option``."""
    from huggingface_hub import constants

    source, subfolder = diffusers_source(value, option)
    try:  # diffusers 0.24 ignores HF_HUB_CACHE (it reads HF_HOME only): pass the hub's own cache folder
        return cls.from_pretrained(source, subfolder=subfolder, cache_dir=constants.HF_HUB_CACHE)
    except Exception as err:  # diffusers raises several types for a wrong, partial or missing model
        reason = 'cannot load' if Path(source).is_dir() else f'is {offline_hint()}; download it once online or give a local folder:'
        raise SRDistillError(f'option {option}: {reason} {value} ({first_line(err)})') from err
