"""`annotate`: serve the annotation app, export the gold set, measure agreement."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from annotate.assign import AssignConfig
from annotate.store import Store, StoreError
from ground.errors import ConfigError
from ground.files import write_json, write_jsonl
from ground.cli import fail, one_line_errors
from ground.flags import config_flags, resolve

app = typer.Typer(help="Gold key phrases: the annotation app, its export and agreement.", no_args_is_help=True)

DbOpt = Annotated[Path, typer.Option("--db", help="The annotation database (SQLite).")]


def _open_db(db: Path, readonly: bool) -> Store:
    """The annotation database, or one line saying why the path is not one."""
    try:
        return Store(db, readonly=readonly)
    except StoreError as exc:
        fail(str(exc))


@app.command()
@config_flags(AssignConfig)
def serve(
    db: DbOpt,
    input: Annotated[Path | None, typer.Option("--input", "-i", help="Knowledge JSONL to annotate (new records are added).")] = None,
    host: Annotated[str, typer.Option(help="Address to bind; the default serves this machine only.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 7860,
    auth: Annotated[list[str] | None, typer.Option("--auth", help="An account as user:password (repeatable).")] = None,
    auth_file: Annotated[Path | None, typer.Option(help="Accounts file, one user:password a line.")] = None,
    reviewer: Annotated[list[str] | None, typer.Option("--reviewer", help="A reviewer account name (repeatable); reviewers do not annotate.")] = None,
    *,
    flags: dict,
) -> None:
    """Serve the annotation app (log-in required) on --host:--port."""
    from annotate.prepare import check_roles, parse_account, prepare_store, read_accounts_file, read_knowledge

    with one_line_errors():
        config = resolve(AssignConfig, None, flags)
        accounts = [parse_account(a) for a in auth or []] + (read_accounts_file(auth_file) if auth_file else [])
        annotators = check_roles(accounts, reviewer or [])
        config.check(len(annotators))
        if not 0 < port < 65536:
            raise ConfigError(f"--port must be between 1 and 65535, got {port}")
        records = read_knowledge(input) if input else []
        store = _open_db(db, readonly=False)
        summary = prepare_store(store, records, annotators, config)
    if not summary["items"]:
        fail(f"{db} holds no items: give --input knowledge.jsonl")
    note = " (assignment settings differ from the stored ones: only new items follow them)" if summary["config_changed"] else ""
    if summary["differing_items"]:
        typer.echo(f"note: {summary['differing_items']} input records differ from the stored ones with the same id; "
                   "the stored ones are kept", err=True)
    typer.echo(f"{summary['items']} items ({summary['new_items']} new), {len(annotators)} annotators, "
               f"{len(reviewer or [])} reviewers, {summary['new_assignments']} new assignments{note}")
    idle = [name for name in annotators if not store.queue(name)]
    if idle:
        typer.echo(f"note: no items for {', '.join(idle)} (items keep the annotators they were first given)", err=True)
    if host not in ("127.0.0.1", "localhost", "::1"):
        typer.echo(f"warning: serving on {host}: other machines can reach the log-in page", err=True)
    from annotate.app import launch

    try:
        launch(store, accounts, reviewer or [], host=host, port=port, block=True)
    except OSError as exc:
        fail(f"cannot serve on {host}:{port}: {exc}")


@app.command()
def export(
    db: DbOpt,
    output: Annotated[Path, typer.Option("--output", "-o", help="Gold JSONL to write (atomically).")],
    force: Annotated[bool, typer.Option("--force", help="Write even when there is no gold and -o exists.")] = False,
) -> None:
    """Write the gold records (unanimous or reviewed items) in the format `distill eval-f1` reads."""
    from annotate.gold import empty_gold, gold_records

    if output.is_dir():
        fail(f"{output}: is a folder; -o names the gold JSONL file to write")
    rows, counts = gold_records(_open_db(db, readonly=True).snapshot())
    if not rows and output.exists() and output.stat().st_size and not force:
        fail(f"{output}: exists and {db} has no gold records yet; not overwritten (give --force to empty it)")
    empty = empty_gold(rows)
    write_jsonl(output, rows)
    write_json(output.with_name(output.stem + ".run.json"),
                 {"config": {"db": str(db), "output": str(output)},
                  "metrics": {"gold": len(rows), **counts, "empty_gold": len(empty)}, "empty_gold_ids": empty})
    left = ", ".join(f"{n} {state}" for state, n in counts.items() if state in ("waiting", "needs review") and n)
    typer.echo(f"wrote {len(rows)} gold records -> {output}" + (f" (not exported: {left})" if left else ""))
    if empty:
        typer.echo(f"note: {len(empty)} gold records have no key phrases: {', '.join(empty)}", err=True)


@app.command()
def agreement(
    db: DbOpt,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Also write the figures as JSON.")] = None,
) -> None:
    """Krippendorff's alpha (decisions; MASI on final sets) and pairwise F1 on multiply-annotated items."""
    from annotate.agreement import agreement_report

    report = agreement_report(_open_db(db, readonly=True).snapshot())
    if output:
        write_json(output, report)

    def fmt(x: float | None) -> str:
        return "n/a" if x is None else f"{x:.3f}"

    f1 = report["pairwise_f1"]
    typer.echo(f"items with 2+ submitted annotations: {report['items']} ({', '.join(report['annotators']) or 'none'})")
    typer.echo(f"alpha, accept/reject decisions ({report['decision_units']} phrases): {fmt(report['decision_alpha'])}")
    typer.echo(f"alpha, MASI distance on final sets: {fmt(report['masi_alpha'])}")
    typer.echo(f"pairwise F1 (exact normalised match): overall {fmt(f1['overall'])}, explicit {fmt(f1['explicit'])}, "
               f"implicit {fmt(f1['implicit'])}")
    for pair in f1["pairs"]:
        typer.echo(f"  {pair['a']} vs {pair['b']}: {pair['items']} items, F1 {fmt(pair['overall'])}")
