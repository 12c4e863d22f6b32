"""ground.flags: a config's fields become a command's flags, declared once."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest
import typer
from typer.testing import CliRunner

from ground.errors import ConfigError
from ground.flags import config_flags, flag, resolve


@dataclass(kw_only=True)
class Toy:
    data: Path = field(metadata=flag("Input folder."))
    top_k: int = field(default=3, metadata=flag("How many."))
    rate: float | None = field(default=None, metadata=flag("A rate.", "--lr"))
    hidden: list[int] = field(default_factory=lambda: [200, 80], metadata=flag("MLP sizes."))
    fused: bool = field(default=True, metadata=flag("Fuse."))
    mode: Literal["a", "b"] = field(default="a", metadata=flag("Mode."))

    def __post_init__(self) -> None:
        if self.top_k < 1:
            raise ConfigError(f"top_k must be >= 1, got {self.top_k}")


def toy_app(seen: list) -> typer.Typer:
    app = typer.Typer()

    @app.command()
    @config_flags(Toy)
    def run(config: Path | None = None, *, flags: dict) -> None:
        seen.append(resolve(Toy, config, flags))

    @app.command()
    def other() -> None:  # two commands, so typer keeps the command name
        pass

    return app


def test_every_field_becomes_a_flag_with_its_help_and_its_default_shown():
    result = CliRunner().invoke(toy_app([]), ["run", "--help"], env={"COLUMNS": "200", "TERMINAL_WIDTH": "200"})
    text = " ".join(result.output.split())
    for expected in ("--data", "Input folder. [default: (required)]", "--top-k", "How many. [default: (3)]", "--lr",
                     "--hidden", "[default: (200,80)]", "--fused", "--no-fused", "[default: (on)]", "One of: a, b."):
        assert expected in text, expected


def test_flags_given_override_yaml_which_overrides_defaults(tmp_path):
    seen: list = []
    yaml = tmp_path / "c.yaml"
    yaml.write_text("top_k: 5\nhidden: [64]\n")
    CliRunner().invoke(toy_app(seen), ["run", "--data", "d", "--config", str(yaml), "--lr", "0.1", "--no-fused"],
                       catch_exceptions=False)
    assert seen[0] == Toy(data=Path("d"), top_k=5, rate=0.1, hidden=[64], fused=False, mode="a")
    CliRunner().invoke(toy_app(seen), ["run", "--data", "d", "--config", str(yaml), "--top-k", "7",
                                       "--hidden", "8,4"], catch_exceptions=False)
    assert seen[1].top_k == 7 and seen[1].hidden == [8, 4]
    CliRunner().invoke(toy_app(seen), ["run", "--data", "d"], catch_exceptions=False)
    assert seen[2] == Toy(data=Path("d"))  # nothing given: the field defaults


def test_a_missing_required_field_and_a_bad_list_are_one_named_error():
    with pytest.raises(ConfigError, match="data is required"):
        resolve(Toy, None, {})
    result = CliRunner().invoke(toy_app([]), ["run", "--data", "d", "--hidden", "8,x"])
    assert isinstance(result.exception, ConfigError) and "--hidden must be comma-separated int" in str(result.exception)
