"""Declarative option schemas: the keys a section of an options file may hold and the kind of value each takes,
checked in one pass. The first bad option stops the run with one line naming it, what was expected and, for a
misspelled key, the nearest known one."""
from __future__ import annotations

import difflib
import fnmatch
from dataclasses import dataclass, field
from typing import Mapping, Union

from .errors import SRDistillError

_KIND_NAMES = {bool: 'true or false', int: 'an integer', float: 'a number', str: 'a string', list: 'a list',
               dict: 'a mapping'}


@dataclass(frozen=True)
class Value:
    """One option's value: its kinds (empty: anything), bounds (``low`` and ``high`` inclusive, ``above`` and
    ``below`` exclusive) or choices; ``None`` (YAML ``~``) passes unless ``required``."""
    kinds: tuple[type, ...] = ()
    low: float | None = None
    above: float | None = None
    high: float | None = None
    below: float | None = None
    choices: tuple | None = None
    required: bool = False

    def expected(self) -> str:
        if self.choices is not None:
            return f'one of {list(self.choices)}'
        text = ' or '.join(_KIND_NAMES.get(k, k.__name__) for k in self.kinds)
        if self.low is not None and self.below is not None:
            return f'{text} in [{self.low:g}, {self.below:g})'
        if self.low is not None:
            text += f' >= {self.low:g}'
        if self.above is not None:
            text += f' > {self.above:g}'
        if self.high is not None:
            text += f' <= {self.high:g}'
        if self.below is not None:
            text += f' < {self.below:g}'
        return text

    def accepts_kind(self, value) -> bool:
        if not self.kinds:
            return True
        if isinstance(value, bool):
            return bool in self.kinds
        return isinstance(value, self.kinds) or (float in self.kinds and isinstance(value, int))

    def check(self, value, option: str) -> None:
        if value is None:
            if self.required:
                raise SRDistillError(f'option {option}: required, expected {self.expected()}')
            return
        if self.choices is not None:
            if value not in self.choices:
                raise SRDistillError(f'option {option}: expected {self.expected()}, got {value!r}')
            return
        in_range = self.accepts_kind(value) and not (
            isinstance(value, (int, float)) and not isinstance(value, bool)
            and ((self.low is not None and value < self.low) or (self.above is not None and value <= self.above)
                 or (self.high is not None and value > self.high)
                 or (self.below is not None and value >= self.below)))
        if not in_range:
            hint = (' (YAML and --force_yml read 1e-4 as text: write !!float 1e-4 or 0.0001)'
                    if isinstance(value, str) and float in self.kinds and _looks_numeric(value) else '')
            raise SRDistillError(f'option {option}: expected {self.expected()}, got {value!r}{hint}')


def _looks_numeric(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


Rule = Union[Value, 'Section']


@dataclass(frozen=True)
class Section:
    """A mapping of options. ``keys`` names each known key's rule; ``patterns`` (fnmatch, e.g. ``optim_*``) rule
    families of keys; ``each`` rules every value of a mapping keyed by free names (datasets, metrics). Unknown keys are
    errors unless ``open`` (a user's own type may read keys this schema does not know)."""
    keys: Mapping[str, Rule] = field(default_factory=dict)
    patterns: tuple[tuple[str, Rule], ...] = ()
    each: Rule | None = None
    open: bool = False

    def rule_for(self, key: str) -> Rule | None:
        if key in self.keys:
            return self.keys[key]
        for pattern, rule in self.patterns:
            if fnmatch.fnmatchcase(str(key), pattern):
                return rule
        return self.each

    def known(self, key: str = '') -> list[str]:
        """The known keys; a pattern's ``*`` filled with ``key``'s last ``_`` part (``pretrain_network_g``)."""
        return [*self.keys, *(p.replace('*', str(key).rsplit('_', 1)[-1]) for p, _ in self.patterns)]


def unknown_key(key, known: list[str], option: str) -> SRDistillError:
    """One line naming an unknown option and the nearest known one (or the known ones)."""
    near = difflib.get_close_matches(str(key), known, n=1)
    hint = f'did you mean {near[0]!r}?' if near else f'known: {", ".join(known)}'
    return SRDistillError(f'option {option}: unknown ({hint})')


def check_options(rule: Rule, node, where: str = '') -> None:
    """Check ``node`` (the options at ``where``, dotted) against ``rule``; raise one ``SRDistillError`` at the first
    bad option."""
    if isinstance(rule, Value):
        rule.check(node, where)
        return
    if node is None:
        return
    if not isinstance(node, dict):
        raise SRDistillError(f'option {where or "(top level)"}: expected a mapping of options, got {node!r}')
    for key, value in node.items():
        option = f'{where}.{key}' if where else str(key)
        child = rule.rule_for(key)
        if child is None:
            if rule.open:
                continue
            raise unknown_key(key, rule.known(key), option)
        check_options(child, value, option)
    for key, child in rule.keys.items():
        if isinstance(child, Value) and child.required and key not in node:
            raise SRDistillError(f'option {where + "." if where else ""}{key}: required, expected {child.expected()}')


ANY = Value()
TEXT = Value((str, ))
FLAG = Value((bool, ))
INTEGER = Value((int, ))
NUMBER = Value((float, ))
COUNT = Value((int, ), low=1)
NON_NEGATIVE_INT = Value((int, ), low=0)
POSITIVE = Value((float, ), above=0)
NON_NEGATIVE = Value((float, ), low=0)
FRACTION = Value((float, ), low=0, high=1)
LIST = Value((list, ))
OPEN = Section(open=True)
