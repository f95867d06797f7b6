"""Reading an options file (YAML) for any command: a missing file, a syntax error or a file that is not a mapping is
one line naming the file (and the line), never a parser traceback."""
from __future__ import annotations

import ast
import os

import yaml

from .errors import SRDistillError


def read_options(path: str | os.PathLike) -> dict:
    """The mapping in the YAML file at ``path``, with its ``_base_`` files merged under it (see
    :func:`merge_options`)."""
    return _read_with_bases(os.fspath(path), ())


def _read_yaml(path: str) -> dict:
    if not os.path.isfile(path):
        raise SRDistillError(f'-opt: {path} does not exist')
    try:
        with open(path) as f:
            opt = yaml.safe_load(f)
    except UnicodeDecodeError as err:
        raise SRDistillError(f'{path}: not a YAML text file (byte {err.start} is not UTF-8)') from err
    except yaml.YAMLError as err:
        mark = getattr(err, 'problem_mark', None)
        where = f':{mark.line + 1}:{mark.column + 1}' if mark is not None else ''
        problem = getattr(err, 'problem', None) or str(err).splitlines()[0]
        raise SRDistillError(f'{path}{where}: YAML syntax error ({problem})') from err
    if not isinstance(opt, dict):
        raise SRDistillError(f'{path}: not a YAML mapping of options')
    return opt


def _read_with_bases(path: str, chain: tuple[str, ...]) -> dict:
    """``path``'s options over those of its ``_base_`` files (a path or a list, relative to ``path``'s folder),
    each read the same way; ``chain``: the files that include this one (a cycle is one line)."""
    real = os.path.realpath(path)
    if real in chain:
        raise SRDistillError(f'{path}: _base_ includes itself (through {" -> ".join(chain)})')
    opt = _read_yaml(path)
    bases = opt.pop('_base_', [])
    if isinstance(bases, str):
        bases = [bases]
    if not isinstance(bases, list) or not all(isinstance(b, str) for b in bases):
        raise SRDistillError(f'{path}: option _base_: expected a file or a list of files, got {bases!r}')
    merged: dict = {}
    for base in bases:
        base_path = os.path.join(os.path.dirname(path), base)
        if not os.path.isfile(base_path):
            raise SRDistillError(f'{path}: option _base_: {base_path} does not exist')
        merged = merge_options(merged, _read_with_bases(base_path, (*chain, real)))
    return merge_options(merged, opt)


def merge_options(base: dict, override: dict) -> dict:
    """``override`` merged into a copy of ``base``, as MMEngine merges configs: mappings key by key (recursively),
    anything else replaced; a mapping with ``_delete_: true`` replaces the base's mapping instead of merging."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and value.get('_delete_') is True:
            merged[key] = {k: v for k, v in value.items() if k != '_delete_'}
        elif isinstance(value, dict):
            merged[key] = merge_options(merged[key] if isinstance(merged.get(key), dict) else {}, value)
        else:
            merged[key] = value
    return merged


def check_force_yml(opt: dict, entries: list[str]) -> None:
    """BasicSR's ``--force_yml a:b:c=value`` entries: each needs ``=`` and a path whose sections exist in ``opt``
    (BasicSR fails on either with a traceback, after reading the options)."""
    for entry in entries:
        if '=' not in entry:
            raise SRDistillError(f'--force_yml {entry}: expected key:subkey=value')
        keys = entry.split('=', 1)[0].split(':')
        node = opt
        for depth, key in enumerate(keys[:-1]):
            if not isinstance(node, dict) or key not in node or not isinstance(node[key], dict):
                known = sorted(node) if isinstance(node, dict) else []
                raise SRDistillError(f'--force_yml {entry}: no section {":".join(keys[:depth + 1])!r} in the options'
                                     + (f' (there: {", ".join(map(str, known))})' if known else ''))
            node = node[key]


def force_yml_value(text: str):
    """The value of a ``--force_yml`` entry, read as BasicSR reads it: ``~``/``none`` is None, ``true``/``false`` a
    bool, ``!!float x`` and plain digits (with at most one dot) numbers, ``[...]`` a Python literal list, anything
    else text (so ``1e-4`` and ``-5`` stay text, as in BasicSR; the schema then names them)."""
    text = text.strip()
    lowered = text.lower()
    if text == '~' or lowered == 'none':
        return None
    if lowered in ('true', 'false'):
        return lowered == 'true'
    if text.startswith('!!float'):
        return float(text[len('!!float'):])
    if text.isdigit():
        return int(text)
    if text.count('.') < 2 and text.replace('.', '', 1).isdigit():
        return float(text)
    if text.startswith('['):
        try:
            return ast.literal_eval(text)
        except (ValueError, SyntaxError) as err:
            raise SRDistillError(f'--force_yml: {text} is not a list literal') from err
    return text


def apply_force_yml(opt: dict, entries: list[str]) -> None:
    """Set each ``a:b:c=value`` entry in ``opt`` (checked first by :func:`check_force_yml`)."""
    check_force_yml(opt, entries)
    for entry in entries:
        keys, value = entry.split('=', 1)
        *sections, last = [key.strip() for key in keys.split(':')]
        node = opt
        for key in sections:
            node = node[key]
        node[last] = force_yml_value(value)
