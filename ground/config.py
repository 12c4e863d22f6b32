"""Configs: defaults < YAML file < flags, checked against the config dataclass; a config as its resolved JSON values."""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import fields
from pathlib import Path

from ground.errors import RecordError
from ground.files import read_lines


def config_dict(config: object) -> dict:
    """A dataclass config as JSON-ready values (paths, alone or in lists, become strings): the run's resolved config."""
    def plain(value: object) -> object:
        if isinstance(value, Path):
            return str(value)
        return [plain(v) for v in value] if isinstance(value, (list, tuple)) else value

    return {k: plain(v) for k, v in dataclasses.asdict(config).items()}



def _field_types(name: str, cls: type) -> tuple:
    """The types a config field accepts: (int,), (float, NoneType), (list[str],) ... ."""
    hint = typing.get_type_hints(cls).get(name)
    return typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)


def _yaml_float(name: str, value: object, cls: type) -> object:
    """YAML 1.1 reads `1e-4` (no dot) as a string; a float field takes it as the number it means."""
    if isinstance(value, str) and float in _field_types(name, cls):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def type_problem(name: str, value: object, cls: type) -> str | None:
    """What is wrong with `value` as field `name` of the config class (a YAML value of the wrong type), or None."""
    allowed = _field_types(name, cls)
    for t in allowed:
        if t is type(None) and value is None:
            return None
        if typing.get_origin(t) is list and isinstance(value, list) and all(
                isinstance(v, typing.get_args(t)[0]) and not isinstance(v, bool) for v in value):
            return None
        if t in (int, float, str, bool) and isinstance(value, t) and not (t is not bool and isinstance(value, bool)):
            return None
        if t is float and isinstance(value, int) and not isinstance(value, bool):
            return None  # YAML writes 3 for 3.0
    names = {int: "an integer", float: "a number", str: "a string", bool: "true or false", type(None): "null"}
    lists = {str: "a list of strings", int: "a list of integers"}
    wanted = " or ".join(names.get(t) or lists.get(typing.get_args(t)[0], str(t)) for t in allowed)
    return f"{name} must be {wanted}, got {value!r}"


def _key_lines(text: str) -> dict[str, int]:
    """The 1-based line of each top-level key of a YAML mapping."""
    import yaml

    node = yaml.compose(text)
    if not isinstance(node, yaml.MappingNode):
        return {}
    return {key.value: key.start_mark.line + 1 for key, _ in node.value if isinstance(key, yaml.ScalarNode)}


def load_yaml(path: str | Path, cls: type) -> dict:
    """A YAML mapping of config fields ; unknown keys and wrong types raise RecordError."""
    import yaml

    path = Path(path)
    text = "".join(line for _, line in read_lines(path))
    try:
        values = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise RecordError(f"{where}: malformed YAML ({getattr(exc, 'problem', exc)})") from None
    if not isinstance(values, dict):
        raise RecordError(f"{path}: expected a mapping of config keys, got {type(values).__name__}")
    known = {f.name for f in fields(cls)}
    lines = _key_lines(text)
    values = {key: _yaml_float(key, value, cls) if key in known else value for key, value in values.items()}
    for key, value in values.items():
        if key not in known:
            raise RecordError(f"{path}:{lines.get(key, '?')}: unknown key {key!r}; known keys: {', '.join(sorted(known))}")
        problem = type_problem(key, value, cls)
        if problem:
            raise RecordError(f"{path}:{lines.get(key, '?')}: {problem}")
    return values
