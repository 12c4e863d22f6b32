"""Command-line flags derived from config dataclasses: each setting is declared once, on its field.

A field carries its help text (and, where it needs one, its flag spelling) in its metadata:

    top_k: int = field(default=3, metadata=flag("MSD: history items fused with the target."))

and a typer command takes every field of its config classes as a flag:

    @app.command()
    @config_flags(CTRConfig)
    def train(config: ConfigOpt = None, *, flags: dict) -> None:
        run(resolve(CTRConfig, config, flags))

A flag left out is not in `flags`, so the layering is defaults < YAML file < flags given. Lists are written
comma-separated (`--hidden 200,80`), or as a repeated flag when the field says `repeat=True` (`-k a.jsonl -k b.jsonl`);
a bool is `--name/--no-name` unless the field names its own pair. A field that holds another of the command's config
classes (`settings: GenerationSettings`) is no flag: that class's fields are.
"""

from __future__ import annotations

import functools
import inspect
import types
import typing
from collections.abc import Callable
from dataclasses import MISSING, Field, fields
from pathlib import Path
from typing import Annotated, Any, Literal

from ground.config import load_yaml
from ground.errors import ConfigError

HELP, FLAGS, REPEAT = "help", "flags", "repeat"


def flag(help: str, *names: str, repeat: bool = False) -> dict:
    """A config field's metadata: its help text, optionally its own flag names ('--lr', '--raw/--no-raw'), and for a
    list field `repeat=True` to take one value per flag (`-k a -k b`) instead of a comma-separated list."""
    return {HELP: help, FLAGS: names, REPEAT: repeat}


def field_default(f: Field) -> Any:
    """A field's default value (MISSING when it has none)."""
    if f.default is not MISSING:
        return f.default
    return f.default_factory() if f.default_factory is not MISSING else MISSING


def _plain(hint: Any) -> tuple[Any, bool]:
    """(the type without `| None`, whether None is allowed)."""
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return (rest[0] if len(rest) == 1 else typing.Union[tuple(rest)]), True
    return hint, False


def _element(hint: Any) -> type | None:
    """The element type of list[X] / tuple[X, ...] hints, else None."""
    if typing.get_origin(hint) in (list, tuple):
        args = [a for a in typing.get_args(hint) if a is not Ellipsis]
        return args[0] if args else str
    return None


def _shown(value: Any) -> str:
    if value is MISSING:
        return "required"
    if value is None:
        return "none"
    if value == "":
        return '""'
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    if isinstance(value, bool):
        return "on" if value else "off"
    return str(value)


def _scalar(hint: Any) -> Any:
    return hint if hint in (int, float, str, bool, Path) else str


def cli_type(f: Field, hint: Any) -> Any:
    """What typer parses a field as: lists as their comma-separated text (or, repeated, a list of their element),
    choices as text, the rest as they are."""
    plain, _ = _plain(hint)
    element = _element(plain)
    if element is not None:
        return list[_scalar(element)] if f.metadata.get(REPEAT) else str
    if typing.get_origin(plain) is Literal:
        return str
    return _scalar(plain)


def help_text(f: Field, hint: Any) -> str:
    text = f.metadata.get(HELP, "")
    plain, _ = _plain(hint)
    if typing.get_origin(plain) is Literal:
        text += f" One of: {', '.join(map(str, typing.get_args(plain)))}."
    elif _element(plain) is not None:
        text += " Repeatable." if f.metadata.get(REPEAT) else " Comma-separated."
    return text.strip()


def flag_names(f: Field, hint: Any) -> tuple[str, ...]:
    names = tuple(f.metadata.get(FLAGS, ()))
    if names:
        return names
    dashed = f.name.replace("_", "-")
    return (f"--{dashed}/--no-{dashed}",) if _plain(hint)[0] is bool else (f"--{dashed}",)


def parameter(f: Field, hint: Any) -> inspect.Parameter:
    """The typer parameter of one config field: default None (not given), the field's default shown in --help."""
    import typer

    repeated = _element(_plain(hint)[0]) if f.metadata.get(REPEAT) else None
    option = typer.Option(*flag_names(f, hint), help=help_text(f, hint), show_default=_shown(field_default(f)),
                          metavar=_scalar(repeated).__name__.upper() if repeated else None)
    return inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=None,
                             annotation=Annotated[cli_type(f, hint) | None, option])


def parse_value(text: Any, hint: Any, name: str) -> Any:
    """A flag's value as the field's type: comma-separated text to a list (or tuple) of its element type."""
    plain, _ = _plain(hint)
    element = _element(plain)
    if element is None:
        return text
    parts = [part.strip() for part in text.split(",")] if isinstance(text, str) else list(text)
    try:
        values = [element(part) for part in parts if part != ""]
    except ValueError:
        listed = "comma-separated " if isinstance(text, str) else ""
        raise ConfigError(f"--{name.replace('_', '-')} must be {listed}{element.__name__} values, got {text!r}") from None
    return tuple(values) if typing.get_origin(plain) is tuple else values


def config_fields(cls: type) -> list[tuple[Field, Any]]:
    """(field, resolved type hint) of each init field of a config dataclass."""
    hints = typing.get_type_hints(cls)
    return [(f, hints[f.name]) for f in fields(cls) if f.init]


def flag_fields(classes: tuple[type, ...], exclude: tuple[str, ...] = (),
                include: tuple[str, ...] | None = None) -> dict[str, tuple[Field, Any]]:
    """name -> (field, type hint) of every field of `classes` that becomes a flag: the first class to name a field
    owns it; a field holding one of `classes` is left out (its class's fields are flags); then `exclude` is left
    out and, when given, only `include` is kept."""
    derived: dict[str, tuple[Field, Any]] = {}
    for cls in classes:
        for f, hint in config_fields(cls):
            nested = _plain(hint)[0] in classes
            if not nested and f.name not in exclude and (include is None or f.name in include):
                derived.setdefault(f.name, (f, hint))
    return derived


def config_flags(*classes: type, exclude: tuple[str, ...] = (), include: tuple[str, ...] | None = None) -> Callable:
    """Decorate a command: every field of `classes` (less `exclude` and the command's own parameters, only `include`
    when given) becomes a flag; the command gets the flags given as `flags` (field name -> value of the field's
    type). tests/test_cli_flags.py holds the toolkit's commands to no own parameter repeating a field."""
    def wrap(fn: Callable) -> Callable:
        own = [p for p in inspect.signature(fn, eval_str=True).parameters.values() if p.name != "flags"]
        derived = flag_fields(classes, exclude + tuple(p.name for p in own), include)

        @functools.wraps(fn)
        def command(**kwargs: Any) -> Any:
            given = {name: kwargs.pop(name) for name in derived}
            # not given: None, or no value of a repeatable flag (an empty comma list is given: `--augment ''`)
            flags = {name: parse_value(v, derived[name][1], name) for name, v in given.items()
                     if v is not None and not (v == [] and derived[name][0].metadata.get(REPEAT))}
            return fn(**kwargs, flags=flags)

        command.__signature__ = inspect.Signature(own + [parameter(f, hint) for f, hint in derived.values()])
        command.config_classes = classes  # what tests/test_cli_flags.py reads
        command.config_fields = tuple(derived)
        return command
    return wrap


def flag_help(cls: type, name: str) -> str:
    """A field's help text, for the option of a command with no config class that takes the same setting."""
    return cls.__dataclass_fields__[name].metadata[HELP]


def flag_value(cls: type, name: str, flags: dict) -> Any:
    """One field's value for a command that needs no whole config: the flag given, else the field's default."""
    return flags[name] if name in flags else field_default(cls.__dataclass_fields__[name])


def only(cls: type, values: dict) -> dict:
    """The entries of `values` that are fields of `cls`."""
    names = {f.name for f, _ in config_fields(cls)}
    return {k: v for k, v in values.items() if k in names}


def resolve(cls: type, yaml_path: str | Path | None, flags: dict, **fixed: Any) -> Any:
    """A config: its defaults, then the YAML file's keys, then the flags given, then `fixed` values."""
    values = load_yaml(yaml_path, cls) if yaml_path else {}
    values.update(only(cls, flags))
    values.update(fixed)
    missing = [f.name for f, _ in config_fields(cls) if field_default(f) is MISSING and f.name not in values]
    if missing:
        where = f" or its key in {yaml_path}" if yaml_path else ""
        raise ConfigError(f"{missing[0]} is required (--{missing[0].replace('_', '-')}{where})")
    return cls(**values)
