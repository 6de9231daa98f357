"""The typed group of a training config: a dataclass whose fields are the group's keys and whose field
defaults are those keys' only defaults (``legion_core.config`` says where the YAML fits in).

``from_dict`` reads the group from a plain dict (a composed config, a run's config.yaml, a checkpoint):
every unknown key and every value of the wrong type is named in one :class:`ConfigError`; a key the
dict lacks takes its default (or, for a key in ``ABSENT``, the value older runs had without it).
``problems`` (each group's own) checks values and returns sentences naming ``group.key``.

No torch and no Hydra here: ``legion_core.agent.AgentConfig`` builds on it too.
"""
from __future__ import annotations

import copy
import types
import typing
from collections.abc import Mapping
from dataclasses import MISSING, fields
from typing import Any, ClassVar


class ConfigError(ValueError):
    """A training configuration that cannot work; ``problems`` lists every reason."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        super().__init__('invalid training configuration:\n' + '\n'.join(f'  - {p}' for p in problems))


class ConfigSection:
    """Base of the typed config groups (each a dataclass)."""

    GROUP: ClassVar[str] = ''
    # Keys added after runs were written without them, whose absence meant something else than today's
    # default: the value such a run had, so that it resumes as it ran.
    ABSENT: ClassVar[dict[str, Any]] = {}
    # How an error names a key's expected type where the annotation alone says too little.
    MUST: ClassVar[dict[str, str]] = {}

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> typing.Self:
        if not isinstance(values, Mapping):
            raise ConfigError([f'the {cls.GROUP} section must be a mapping of settings, got {values!r}'])
        known = [f.name for f in fields(cls)]
        problems = []
        unknown = sorted(set(values) - set(known), key=str)
        if unknown:
            problems.append(f'unknown {cls.GROUP} setting(s) {unknown}; known: {sorted(known)}')
        hints = typing.get_type_hints(cls)
        for name in known:
            if name in values and not _matches(values[name], hints[name]):
                must = cls.MUST.get(name) or _describe(hints[name])
                problems.append(f'{cls.GROUP}.{name} must be {must}, got {values[name]!r}')
        if problems:
            raise ConfigError(problems)
        given = {**cls.ABSENT, **{name: values[name] for name in known if name in values}}
        return cls(**copy.deepcopy(given))  # the section shares no list or dict with the caller's dict

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        """Every key of the group with its default: what the composed config starts from."""
        out = {}
        for f in fields(cls):
            out[f.name] = f.default_factory() if f.default is MISSING else f.default
        return out

    def to_dict(self) -> dict[str, Any]:
        return {f.name: copy.deepcopy(getattr(self, f.name)) for f in fields(self)}


_NAMES = {bool: 'true or false', int: 'an integer', float: 'a number', str: 'a string', type(None): 'null'}
_PLURALS = {bool: 'booleans', int: 'integers', float: 'numbers', str: 'strings'}


def _matches(value: Any, hint: Any) -> bool:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, arg) for arg in args)
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:  # an integer is a fine number (agent.gamma=1)
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if list in (hint, origin):  # a tuple too: configs built in code may hold one
        return isinstance(value, (list, tuple)) and all(_matches(v, args[0]) for v in value if args)
    if dict in (hint, origin):
        return isinstance(value, Mapping)
    return isinstance(value, hint)


def _describe(hint: Any) -> str:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return ' or '.join(_describe(arg) for arg in args)
    if list in (hint, origin):
        return f'a list of {_PLURALS.get(args[0], "values")}' if args else 'a list'
    if dict in (hint, origin):
        return 'a mapping'
    return _NAMES.get(hint, getattr(hint, '__name__', str(hint)))
