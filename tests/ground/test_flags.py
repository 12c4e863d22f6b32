"""ground.flags: a config's fields become a command's flags, declared once."""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal

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


@dataclass(kw_only=True, frozen=True)
class Inner:
    temperature: float = field(default=0.0, metadata=flag("Sampling temperature."))
    seed: int = field(default=1, metadata=flag("Inner seed."))


@dataclass(kw_only=True)
class Outer:
    inputs: list[Path] = field(metadata=flag("Input files.", "--input", "-i", repeat=True))
    seed: int = field(default=0, metadata=flag("Outer seed."))
    keep: bool = field(default=True, metadata=flag("Keep.", "--keep/--drop"))
    inner: Inner = field(default_factory=Inner)


def nested_app(seen: list) -> typer.Typer:
    app = typer.Typer()

    @app.command()
    @config_flags(Outer, Inner)
    def run(*, flags: dict) -> None:
        seen.append(resolve(Outer, None, flags, inner=resolve(Inner, None, flags)))

    @app.command()
    @config_flags(Outer, include=("keep",))
    def keep(*, flags: dict) -> None:
        seen.append(flags)

    return app


def test_a_repeatable_list_a_nested_config_and_a_chosen_field():
    seen: list = []
    app = nested_app(seen)
    result = CliRunner().invoke(app, ["run", "-i", "a.jsonl", "--input", "b,c.jsonl", "--temperature", "0.5"],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    # one value per flag (a comma stays in the path); the nested class's fields are flags, not the field holding it
    assert seen[0] == Outer(inputs=[Path("a.jsonl"), Path("b,c.jsonl")], inner=Inner(temperature=0.5))
    assert run_params(app, "run") == ["inputs", "seed", "keep", "temperature"]  # `seed`: the first class owns it
    CliRunner().invoke(app, ["run", "-i", "a", "--seed", "5"], catch_exceptions=False)
    assert seen[1].seed == 5 and seen[1].inner.seed == 5  # a name shared by both classes reaches both
    CliRunner().invoke(app, ["keep", "--drop"], catch_exceptions=False)
    assert seen[2] == {"keep": False} and run_params(app, "keep") == ["keep"]
    result = CliRunner().invoke(app, ["run"])
    assert isinstance(result.exception, ConfigError) and "inputs is required" in str(result.exception)


def run_params(app: typer.Typer, name: str) -> list[str]:
    return [p.name for p in typer.main.get_command(app).commands[name].params]


def test_a_command_parameter_of_a_field_name_takes_its_place():
    @config_flags(Toy)
    def run(data: Path, *, flags: dict) -> None:
        pass

    assert "data" not in run.config_fields and run.config_classes == (Toy,)
    assert [p for p in inspect.signature(run).parameters].count("data") == 1


def test_one_field_value_without_a_whole_config():
    from ground.flags import flag_help, flag_value

    assert flag_help(Toy, "top_k") == "How many."
    assert flag_value(Toy, "top_k", {}) == 3 and flag_value(Toy, "top_k", {"top_k": 9}) == 9
    assert flag_value(Toy, "hidden", {}) == [200, 80]


InputOpt = Annotated[Path, typer.Option("--input", "-i", help="Rows to read.")]


def test_a_command_keeps_its_own_options_under_postponed_annotations():
    app = typer.Typer()

    @app.command()
    @config_flags(Toy)
    def run(input: InputOpt, *, flags: dict) -> None:  # the annotation is the text 'InputOpt' here
        typer.echo(f"{input} {flags}")

    @app.command()
    def other() -> None:
        pass

    result = CliRunner().invoke(app, ["run", "-i", "rows.jsonl", "--top-k", "4"], catch_exceptions=False)
    assert result.output.strip() == "rows.jsonl {'top_k': 4}"
