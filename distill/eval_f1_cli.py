"""`distill eval-f1`: key-phrase F1 of predicted knowledge against gold, as a table and files."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import typer

from eval.baselines import BASELINES
from eval.f1_report import DEFAULT_TAU
from ground import records as R
from ground.cli import fail, one_line_errors
from ground.errors import ConfigError
from ground.files import check_output_folder, write_json, write_jsonl
from ground.flags import config_flags, flag, resolve
from kgen.models import EMBEDDED_EMBEDDER

F1_JSON = "f1.json"
PER_ITEM_JSONL = "per_item.jsonl"


def _default_output(pred: Path) -> Path:
    return pred.with_name(pred.stem + "_f1")


@dataclass(kw_only=True)
class EvalF1Config:
    """Settings of `distill eval-f1`."""

    pred: Path = field(metadata=flag("Predicted knowledge JSONL (teacher or student answers).", "--pred"))
    gold: Path = field(metadata=flag("Gold key phrases JSONL (from `annotate export`).", "--gold"))
    output: Path | None = field(default=None, metadata=flag(
        "Output folder (none: <pred stem>_f1 beside --pred).", "--output", "-o"))
    embedder: str = field(default=EMBEDDED_EMBEDDER, metadata=flag(
        "Sentence-transformers name or path; needs a multilingual one for CJK phrases."))
    tau: float | None = field(default=None, metadata=flag(
        f"Match threshold on similarity (none: {DEFAULT_TAU:.2f}, uncalibrated)."))
    calibrate: Path | None = field(default=None, metadata=flag(
        "Labelled pairs TSV (phrase_a, phrase_b, 0/1) to choose tau from."))
    n_boot: int = field(default=1000, metadata=flag("Bootstrap resamples for the 95% intervals (0 = none)."))
    seed: int = field(default=0, metadata=flag("Bootstrap seed."))
    level: str | None = field(default=None, metadata=flag("Score only this level: item or user."))
    baseline: str | None = field(default=None, metadata=flag(
        f"Also score a no-model baseline on the same gold and print it beside: {', '.join(BASELINES)}."))
    teacher: Path | None = field(default=None, metadata=flag(
        "The teacher's answers (knowledge JSONL): also score them, and report --pred's F1 as a ratio to theirs with "
        "a bootstrap interval paired over the same gold records."))

    def __post_init__(self) -> None:
        if self.tau is not None and self.calibrate is not None:
            raise ConfigError("give --tau or --calibrate, not both")
        if self.baseline is not None and self.baseline not in BASELINES:
            raise ConfigError(f"--baseline must be one of {', '.join(BASELINES)}, got {self.baseline!r}")


@config_flags(EvalF1Config)
def eval_f1(*, flags: dict) -> None:
    """Key-phrase F1 (macro headline, micro, tau sweep, many-to-one, exact) with bootstrap 95% intervals."""
    from eval.baselines import baseline_records
    from eval.calibrate import calibrate_tau
    from eval.embedder import Embedder
    from eval.f1_report import evaluate_f1, format_comparison, format_report
    from eval.paired import format_ratio, paired_f1_ratio, per_item_f1

    with one_line_errors():
        c = resolve(EvalF1Config, None, flags)
    out_dir = c.output or _default_output(c.pred)
    with one_line_errors():  # EmbedderError is a ConfigError
        check_output_folder(out_dir)  # before minutes of embedding, not after
        pred_rows = R.read_records(c.pred, "knowledge", unique=True)
        gold_rows = R.require_rows(R.read_records(c.gold, "gold", unique=True), c.gold)
        encoder = Embedder(c.embedder, show_progress=True)
        calibration = calibrate_tau(c.calibrate, encoder) if c.calibrate else None
        chosen_tau = calibration["tau"] if calibration else (DEFAULT_TAU if c.tau is None else c.tau)
        report = evaluate_f1(pred_rows, gold_rows, encoder, tau=chosen_tau, n_boot=c.n_boot, seed=c.seed, level=c.level)
        base = c.baseline and evaluate_f1(baseline_records(gold_rows, c.baseline), gold_rows, encoder, tau=chosen_tau,
                                          n_boot=c.n_boot, seed=c.seed, level=c.level)
        ref = c.teacher and evaluate_f1(R.read_records(c.teacher, "knowledge", unique=True), gold_rows, encoder,
                                        tau=chosen_tau, n_boot=c.n_boot, seed=c.seed, level=c.level)
    counts = report["counts"]
    if counts["n_items_scored"] == 0:
        fail(f"{c.gold}: no gold records to score" + (f" at level {c.level}" if c.level else ""))
    if counts["n_missing_predictions"] == counts["n_items_scored"]:
        typer.echo(f"warning: no record in {c.pred} has the (level, id) of a gold record", err=True)
    per_item = report.pop("per_item")
    report["tau_calibrated"] = calibration is not None
    report["calibration"] = calibration
    report["config"] = {
        "pred": str(c.pred), "gold": str(c.gold), "embedder": c.embedder, "embedder_path": encoder.path,
        "tau": chosen_tau, "tau_calibrated": calibration is not None, "calibrate": str(c.calibrate) if c.calibrate else None,
        "n_boot": c.n_boot, "seed": c.seed, "level": c.level, "baseline": c.baseline,
        "teacher": str(c.teacher) if c.teacher else None,
    }  # fmt: skip
    if base:
        base.pop("per_item")
        report["baseline"] = {"name": c.baseline, "headline": base["headline"], "by_level": base["by_level"]}
    if ref:
        ratio = paired_f1_ratio(per_item_f1(per_item), per_item_f1(ref.pop("per_item")), n_boot=c.n_boot, seed=c.seed)
        report["over_teacher"] = {"teacher": str(c.teacher), "headline": ref["headline"], "by_level": ref["by_level"],
                                  **ratio}
    with one_line_errors():
        write_json(out_dir / F1_JSON, report)
        write_jsonl(out_dir / PER_ITEM_JSONL, per_item)
    note = f"calibrated on {c.calibrate}" if calibration else "uncalibrated: pass --calibrate pairs.tsv to choose it"
    typer.echo(format_report(report, tau_note=note))
    comparison = {"prediction": report}
    if ref:
        comparison["teacher"] = ref
    if base:
        comparison[f"baseline {c.baseline}"] = base
    if len(comparison) > 1:
        typer.echo(format_comparison(comparison))
    if ref:
        typer.echo(f"prediction F1 / teacher F1: {format_ratio(report['over_teacher'])}")
    typer.echo(f"wrote {out_dir / F1_JSON} and {out_dir / PER_ITEM_JSONL}")
