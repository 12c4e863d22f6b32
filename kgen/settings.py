"""The settings a teacher run (`kgen generate`) and the student's runs (`distill generate`, `embed`) share, each
declared once: a config takes its field from here (`engine: str = engine_field()`) and the checks with it.

Light on purpose: the command lines import their config classes when they start.
"""

from __future__ import annotations

import importlib.util
from dataclasses import Field, field

from ground import records as R
from ground.errors import ConfigError, MissingExtra
from ground.flags import flag

ENGINES = ("local", "ray")


def level_field() -> Field:
    return field(default="item", metadata=flag("item or user."))


def items_field() -> Field:
    return field(default=None, metadata=flag("Item records, to render user histories (--level user)."))


def engine_field() -> Field:
    return field(default="local", metadata=flag(
        "local: this process; ray: Ray Data workers on the cluster named by RAY_ADDRESS, else a local one "
        "(needs the ray extra of msd-toolkit)."))


def workers_field() -> Field:
    return field(default=None, metadata=flag("Ray workers (--engine ray); default one per GPU for vllm, else one per CPU."))


def check_engine(engine: str, workers: int | None) -> None:
    """`local` or `ray`, and a positive worker count when one is given."""
    if engine not in ENGINES:
        raise ConfigError(f"engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    if workers is not None and workers < 1:
        raise ConfigError(f"workers must be >= 1, got {workers}")
    if engine == "ray" and importlib.util.find_spec("ray") is None:  # said before any input is read or model loaded
        from kgen.ray_engine import MISSING_RAY

        raise MissingExtra(MISSING_RAY)


def check_level_and_limit(level: str, limit: int | None) -> None:
    """The checks a teacher run and a student run share."""
    if level not in R.LEVELS:
        raise ConfigError(f"level must be item or user, got {level!r}")
    if limit is not None and limit < 1:
        raise ConfigError(f"limit must be >= 1, got {limit}")
