"""Every option of the toolkit's command lines comes from its config field (ground.flags): one declaration per setting.

Walks every typer app. A command decorated with `config_flags` must show a flag, with help, for every field of its
config classes, show the field's own default, leave the value to the config when the flag is not given, and take
no hand-written parameter that repeats a field. A command not decorated must be on ALLOWED with its reason; a new
command that copies config fields into typer options by hand fails here.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import MISSING
from pathlib import Path

import click
import pytest
import typer

from ground.flags import HELP, _shown, config_fields, field_default, flag_fields, flag_names

ROOT = Path(__file__).resolve().parents[1]
APPS = ("kgen.cli", "distill.cli", "eval.cli", "annotate.cli", "ctr.cli")

# (module, command) -> why it has no config class of its own.
ALLOWED = {
    ("distill.cli", "export"): "no config class: export_model(model, output) takes a model and a folder "
                               "(--model's help is StudentConfig.model's)",
    ("annotate.cli", "export"): "no config class: a database, a file and --force",
    ("annotate.cli", "agreement"): "no config class: a database and an optional report file",
    ("ctr.cli", "eval"): "no config class: a run folder, an optional prepared folder and a split",
    ("ctr.cli", "compare"): "no config class: two finished runs (or seed-N folders), a seed list, the bootstrap "
                            "draws and an output file",
}
# (module, command) -> why it takes only some fields of its config classes.
PARTIAL = {
    ("kgen.cli", "reparse"): "re-parses stored answers: of a teacher run's settings only drop_leaked applies",
    ("ctr.cli", "warm"): "fills Redis once: the server's own settings (host, port, LRU, body limit, Redis retry) "
                         "do not apply",
}


def commands() -> list[tuple[str, str, object, click.Command]]:
    """(module, command name, the decorated callback, the click command) of every command of every app."""
    import importlib

    out = []
    for module in APPS:
        app = importlib.import_module(module).app
        group = typer.main.get_command(app)
        for info in app.registered_commands:
            name = info.name or info.callback.__name__.replace("_", "-")
            out.append((module, name, info.callback, group.commands[name]))
    return out


COMMANDS = commands()
DECORATED = [(m, n, cb, cmd) for m, n, cb, cmd in COMMANDS if hasattr(cb, "config_classes")]
IDS = [f"{m.split('.')[0]} {n}" for m, n, _, _ in DECORATED]


def test_every_command_derives_its_flags_or_is_allowed_with_a_reason():
    undecorated = {(m, n) for m, n, cb, _ in COMMANDS if not hasattr(cb, "config_classes")}
    assert undecorated - set(ALLOWED) == set(), "commands copying options by hand: use ground.flags.config_flags"
    stale = set(ALLOWED) - undecorated
    assert not stale, f"allowed but now derived (or gone): drop them from ALLOWED: {sorted(stale)}"
    assert all(reason.strip() for reason in {**ALLOWED, **PARTIAL}.values())
    assert len(DECORATED) >= 10  # the walk found them: kgen 3, distill 5, eval 1, annotate 1, ctr 5


@pytest.mark.parametrize("module, name, callback, command", DECORATED, ids=IDS)
def test_every_field_has_a_flag_with_help_and_the_field_default(module, name, callback, command):
    params = {p.name: p for p in command.params}
    every = flag_fields(callback.config_classes)
    if (module, name) not in PARTIAL:
        assert set(callback.config_fields) == set(every), f"fields without a flag: {set(every) - set(callback.config_fields)}"
    for field_name in callback.config_fields:
        f, hint = every[field_name]
        param = params[field_name]
        assert f.metadata.get(HELP, "").strip() and param.help.startswith(f.metadata[HELP]), field_name
        assert param.show_default == _shown(field_default(f)), field_name
        assert param.default in (None, ()), f"{field_name}: a CLI default would override the YAML file and the field"
        spelled = [n for spec in flag_names(f, hint) for n in spec.split("/")]
        assert set(param.opts) | set(param.secondary_opts) == set(spelled), field_name
        assert param.required is False or field_default(f) is MISSING


@pytest.mark.parametrize("module, name, callback, command", DECORATED, ids=IDS)
def test_no_hand_written_option_repeats_a_config_field(module, name, callback, command):
    fields = {f.name for cls in callback.config_classes for f, _ in config_fields(cls)}
    if (module, name) in PARTIAL:  # its own input/output are other files than the config's
        fields = set(callback.config_fields)
    own = {p.name for p in command.params} - set(callback.config_fields) - {"help"}
    assert not own & fields, f"{module} {name}: hand-written options repeat config fields {sorted(own & fields)}"


def test_the_check_sees_a_missing_help_and_a_copied_option():
    """The checks above can fail: a field without help, and an option written by hand beside the derived ones."""
    from dataclasses import dataclass, field

    from ground.flags import config_flags, flag

    @dataclass(kw_only=True)
    class Settings:
        top_k: int = field(default=3, metadata=flag("How many."))
        rate: float = 0.1  # no help

    app = typer.Typer()

    @app.command()
    @config_flags(Settings)
    def run(top_k: int = 3, *, flags: dict) -> None:  # copies top_k by hand
        pass

    @app.command()
    def other() -> None:
        pass

    command = typer.main.get_command(app).commands["run"]
    with pytest.raises(AssertionError, match="rate"):
        test_every_field_has_a_flag_with_help_and_the_field_default("m", "run", run, command)
    with pytest.raises(AssertionError, match="repeat config fields \\['top_k'\\]"):
        test_no_hand_written_option_repeats_a_config_field("m", "run", run, command)


def test_the_command_lines_start_without_torch():
    """Configs are imported when a CLI starts (their fields are its flags): none of them may pull torch in."""
    code = "import sys\n" + "".join(f"import {m}\n" for m in APPS[:4]) + "print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"
