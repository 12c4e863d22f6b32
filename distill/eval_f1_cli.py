"""`distill eval-f1`: key-phrase F1 of predicted knowledge against gold, as a table and files."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ground.files import check_output_folder, write_json, write_jsonl
from ground import records as R
from ground.cli import fail, one_line_errors
from kgen.models import EMBEDDED_EMBEDDER

F1_JSON = "f1.json"
PER_ITEM_JSONL = "per_item.jsonl"


def _default_output(pred: Path) -> Path:
    return pred.with_name(pred.stem + "_f1")


def eval_f1(
    pred: Annotated[Path, typer.Option("--pred", help="Predicted knowledge JSONL (teacher or student answers).")],
    gold: Annotated[Path, typer.Option("--gold", help="Gold key phrases JSONL (from `annotate export`).")],
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Output folder (default: <pred stem>_f1 beside --pred).")
    ] = None,
    embedder: Annotated[
        str, typer.Option(help="Sentence-transformers name or path; needs a multilingual one for CJK phrases.")
    ] = EMBEDDED_EMBEDDER,
    tau: Annotated[
        float | None, typer.Option(help="Match threshold on similarity (default 0.80, uncalibrated).")
    ] = None,
    calibrate: Annotated[
        Path | None, typer.Option(help="Labelled pairs TSV (phrase_a, phrase_b, 0/1) to choose tau from.")
    ] = None,
    n_boot: Annotated[int, typer.Option(help="Bootstrap resamples for the 95% intervals (0 = none).")] = 1000,
    seed: Annotated[int, typer.Option(help="Bootstrap seed.")] = 0,
    level: Annotated[str | None, typer.Option(help="Score only this level: item or user.")] = None,
    baseline: Annotated[
        str | None, typer.Option(help="Also score a no-model baseline on the same gold and print it beside: name-words.")
    ] = None,
    teacher: Annotated[
        Path | None,
        typer.Option(help="The teacher's answers (knowledge JSONL): also score them, and report --pred's F1 as a "
                          "ratio to theirs with a bootstrap interval paired over the same gold records."),
    ] = None,
) -> None:
    """Key-phrase F1 (macro headline, micro, tau sweep, many-to-one, exact) with bootstrap 95% intervals."""
    from eval.baselines import BASELINES, baseline_records
    from eval.calibrate import calibrate_tau
    from eval.embedder import Embedder
    from eval.f1_report import DEFAULT_TAU, evaluate_f1, format_comparison, format_report
    from eval.paired import format_ratio, paired_f1_ratio, per_item_f1

    if tau is not None and calibrate is not None:
        fail("give --tau or --calibrate, not both")
    if baseline is not None and baseline not in BASELINES:
        fail(f"--baseline must be one of {', '.join(BASELINES)}, got {baseline!r}")
    out_dir = output or _default_output(pred)
    with one_line_errors():  # EmbedderError is a ConfigError
        check_output_folder(out_dir)  # before minutes of embedding, not after
        pred_rows = R.read_records(pred, "knowledge", unique=True)
        gold_rows = R.require_rows(R.read_records(gold, "gold", unique=True), gold)
        encoder = Embedder(embedder, show_progress=True)
        calibration = calibrate_tau(calibrate, encoder) if calibrate else None
        chosen_tau = calibration["tau"] if calibration else (DEFAULT_TAU if tau is None else tau)
        report = evaluate_f1(pred_rows, gold_rows, encoder, tau=chosen_tau, n_boot=n_boot, seed=seed, level=level)
        base = baseline and evaluate_f1(baseline_records(gold_rows, baseline), gold_rows, encoder, tau=chosen_tau,
                                        n_boot=n_boot, seed=seed, level=level)
        ref = teacher and evaluate_f1(R.read_records(teacher, "knowledge", unique=True), gold_rows, encoder,
                                      tau=chosen_tau, n_boot=n_boot, seed=seed, level=level)
    counts = report["counts"]
    if counts["n_items_scored"] == 0:
        fail(f"{gold}: no gold records to score" + (f" at level {level}" if level else ""))
    if counts["n_missing_predictions"] == counts["n_items_scored"]:
        typer.echo(f"warning: no record in {pred} has the (level, id) of a gold record", err=True)
    per_item = report.pop("per_item")
    report["tau_calibrated"] = calibration is not None
    report["calibration"] = calibration
    report["config"] = {
        "pred": str(pred), "gold": str(gold), "embedder": embedder, "embedder_path": encoder.path,
        "tau": chosen_tau, "tau_calibrated": calibration is not None, "calibrate": str(calibrate) if calibrate else None,
        "n_boot": n_boot, "seed": seed, "level": level, "baseline": baseline,
        "teacher": str(teacher) if teacher else None,
    }  # fmt: skip
    if base:
        base.pop("per_item")
        report["baseline"] = {"name": baseline, "headline": base["headline"], "by_level": base["by_level"]}
    if ref:
        ratio = paired_f1_ratio(per_item_f1(per_item), per_item_f1(ref.pop("per_item")), n_boot=n_boot, seed=seed)
        report["over_teacher"] = {"teacher": str(teacher), "headline": ref["headline"], "by_level": ref["by_level"],
                                  **ratio}
    with one_line_errors():
        write_json(out_dir / F1_JSON, report)
        write_jsonl(out_dir / PER_ITEM_JSONL, per_item)
    note = f"calibrated on {calibrate}" if calibration else "uncalibrated: pass --calibrate pairs.tsv to choose it"
    typer.echo(format_report(report, tau_note=note))
    comparison = {"prediction": report}
    if ref:
        comparison["teacher"] = ref
    if base:
        comparison[f"baseline {baseline}"] = base
    if len(comparison) > 1:
        typer.echo(format_comparison(comparison))
    if ref:
        typer.echo(f"prediction F1 / teacher F1: {format_ratio(report['over_teacher'])}")
    typer.echo(f"wrote {out_dir / F1_JSON} and {out_dir / PER_ITEM_JSONL}")
