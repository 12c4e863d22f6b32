"""Key-phrase F1 of predicted knowledge records against gold records: the full report.

Records are matched by (level, id). Only predictions with status "ok" contribute phrases;
any other status is an empty prediction. Gold without a prediction scores zero recall and is
listed; predictions without gold are listed, not scored. Every unique normalised phrase is
embedded once for the whole run.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from eval.embedder import PhraseEncoder
from eval.keyphrase_f1 import aggregate, item_scores, match_one_to_one, similarity_matrix
from ground.normalize import unique_normalized
from ground.errors import ConfigError
from ground import records as R

Key = tuple[str, str]
DEFAULT_TAU = 0.8
SWEEP_TAUS = (0.6, 0.7, 0.8, 0.9)
PRIMARY_METRIC = "macro_f1"
GOLD_TYPES = (R.EXPLICIT, R.IMPLICIT)
_MISSING = "missing"  # per-item status of a gold record with no prediction


def record_key(row: dict) -> Key:
    """(level, id) of a knowledge or gold record, id as a string."""
    return str(row[R.LEVEL]), str(row[R.ID])


def index_records(rows: Iterable[dict], what: str) -> dict[Key, dict]:
    """Records by (level, id), in file order; a repeated key is an error naming it."""
    index: dict[Key, dict] = {}
    for row in rows:
        key = record_key(row)
        if key in index:
            raise ValueError(f"{what} has more than one record for level={key[0]} id={key[1]}; keep one per id")
        index[key] = row
    return index


def predicted_phrases(row: dict | None) -> list[str]:
    """Key phrases of a prediction; none for a missing or non-ok record."""
    if row is None or row.get(R.STATUS) != "ok":
        return []
    return list(row[R.KEY_PHRASES])


class PhraseTable:
    """Each unique normalised phrase embedded once; rows looked up by phrase."""

    def __init__(self, phrases: Iterable[str], encoder: PhraseEncoder):
        self.phrases = list(dict.fromkeys(phrases))
        self.index = {p: i for i, p in enumerate(self.phrases)}
        self.emb = encoder.encode(self.phrases) if self.phrases else np.zeros((0, 0), dtype=np.float32)

    def rows(self, phrases: Sequence[str]) -> np.ndarray:
        """(N, D) embeddings of normalised phrases."""
        return self.emb[[self.index[p] for p in phrases]] if phrases else self.emb[:0]

    def sim(self, pred: list[str], gold: list[str]) -> np.ndarray:
        """The rule-adjusted similarity matrix (P, G)."""
        return similarity_matrix(pred, gold, self.rows(pred), self.rows(gold))


def _normalised_items(pred_index: dict[Key, dict], gold_index: dict[Key, dict]) -> list[dict]:
    """One dict per gold key: raw and normalised phrase lists on both sides."""
    items = []
    for key, gold in gold_index.items():
        pred = pred_index.get(key)
        pred_raw = predicted_phrases(pred)
        item = {
            "key": key,
            "status": _MISSING if pred is None else pred.get(R.STATUS),
            "pred_raw": pred_raw,
            "gold_raw": list(gold[R.KEY_PHRASES]),
            "pred": unique_normalized(pred_raw),
            "gold": unique_normalized(gold[R.KEY_PHRASES]),
        }
        for kind in GOLD_TYPES:
            item[kind] = unique_normalized(gold.get(kind) or [])
        items.append(item)
    return items


def _score_item(item: dict, table: PhraseTable, tau: float, taus: Sequence[float]) -> dict:
    """All the scores one item contributes: headline, tau sweep, many-to-one, exact, typed recall."""
    sim = table.sim(item["pred"], item["gold"])
    scores = {
        "headline": item_scores(sim, item["pred"], item["gold"], tau, "one_to_one"),
        "many_to_one": item_scores(sim, item["pred"], item["gold"], tau, "many_to_one"),
        "exact": item_scores(sim, item["pred"], item["gold"], tau, "exact"),
    }
    for t in taus:
        scores[f"tau_{t:.2f}"] = item_scores(sim, item["pred"], item["gold"], t, "one_to_one")
    for kind in GOLD_TYPES:
        if item[kind]:
            typed_sim = table.sim(item["pred"], item[kind])
            scores[kind] = item_scores(typed_sim, item["pred"], item[kind], tau, "one_to_one")
    return {"sim": sim, "scores": scores}


def _per_item_row(item: dict, sim: np.ndarray, scores: dict, tau: float) -> dict:
    """The error-analysis line of one item: raw and normalised phrases, matched pairs, leftovers, scores."""
    pairs = match_one_to_one(sim, tau)
    used_pred, used_gold = {i for i, _, _ in pairs}, {j for _, j, _ in pairs}
    head = scores["headline"]
    return {
        R.LEVEL: item["key"][0],
        R.ID: item["key"][1],
        R.STATUS: item["status"],
        "pred_raw": item["pred_raw"],
        "gold_raw": item["gold_raw"],
        "pred": item["pred"],
        "gold": item["gold"],
        "matched": [{"pred": item["pred"][i], "gold": item["gold"][j], "similarity": round(s, 4)} for i, j, s in pairs],
        "unmatched_pred": [p for i, p in enumerate(item["pred"]) if i not in used_pred],
        "unmatched_gold": [g for j, g in enumerate(item["gold"]) if j not in used_gold],
        "duplicates_dropped": len(item["pred_raw"]) - len(item["pred"]),
        "precision": round(head["precision"], 6),
        "recall": round(head["recall"], 6),
        "f1": round(head["f1"], 6),
        "exact_f1": round(scores["exact"]["f1"], 6),
    }


def _section(scored: list[dict], name: str, seed: int, n_boot: int) -> dict:
    # A fresh generator per section: sections over the same items see the same resamples (paired).
    return aggregate([s["scores"][name] for s in scored if name in s["scores"]], np.random.default_rng(seed), n_boot)


def _typed_recall(scored: list[dict], kind: str, seed: int, n_boot: int) -> dict:
    """Recall of gold phrases of one type (explicit/implicit) by all predicted phrases."""
    agg = _section(scored, kind, seed, n_boot)
    if not agg["n_items"]:
        return {"n_items": 0}
    n_phrases = sum(s["scores"][kind]["n_gold"] for s in scored if kind in s["scores"])
    keep = ("recall", "recall_ci95")
    return {
        "n_items": agg["n_items"],
        "n_phrases": n_phrases,
        "macro": {k: agg["macro"][k] for k in keep},
        "micro": {k: agg["micro"][k] for k in keep},
    }


def evaluate_f1(
    pred_records: Iterable[dict],
    gold_records: Iterable[dict],
    embedder: PhraseEncoder,
    tau: float = DEFAULT_TAU,
    taus: Sequence[float] = SWEEP_TAUS,
    n_boot: int = 1000,
    seed: int = 0,
    level: str | None = None,
) -> dict:
    """Key-phrase F1 report (headline: macro F1, one-to-one at tau) with per-item rows under "per_item"."""
    _check_args(tau, taus, n_boot, level)
    pred_index = index_records(pred_records, "the prediction file")
    gold_index = index_records(gold_records, "the gold file")
    if level:
        pred_index = {k: v for k, v in pred_index.items() if k[0] == level}
        gold_index = {k: v for k, v in gold_index.items() if k[0] == level}
    items = _normalised_items(pred_index, gold_index)
    all_phrases = (p for it in items for side in ("pred", "gold", *GOLD_TYPES) for p in it[side])
    table = PhraseTable(all_phrases, embedder)
    scored = [_score_item(it, table, tau, taus) for it in items]
    report = _headline(scored, tau, seed, n_boot)
    report["tau_sweep"] = {f"{t:.2f}": _section(scored, f"tau_{t:.2f}", seed, n_boot) for t in taus}
    report["many_to_one"] = _section(scored, "many_to_one", seed, n_boot)
    report["exact"] = _section(scored, "exact", seed, n_boot)
    report["by_level"] = _by_level(items, scored, seed, n_boot)
    report["by_gold_type"] = {kind: _typed_recall(scored, kind, seed, n_boot) for kind in GOLD_TYPES}
    report["by_gold_type"]["note"] = "recall only: predicted phrases are not reliably typed, so precision is not split"
    report["counts"] = _counts(items, pred_index, gold_index, table)
    report["missing_predictions"] = [{R.LEVEL: k[0], R.ID: k[1]} for k in gold_index if k not in pred_index]
    report["unscored_predictions"] = [{R.LEVEL: k[0], R.ID: k[1]} for k in pred_index if k not in gold_index]
    report["metrics"] = flat_metrics(report)
    report["per_item"] = [_per_item_row(it, s["sim"], s["scores"], tau) for it, s in zip(items, scored)]
    return report


def _check_args(tau: float, taus: Sequence[float], n_boot: int, level: str | None) -> None:
    for t in (tau, *taus):
        if not 0.0 < t <= 1.0:
            raise ConfigError(f"tau must be in (0, 1], got {t}")
    if n_boot < 0:
        raise ConfigError(f"n_boot must be >= 0, got {n_boot}")
    if level is not None and level not in R.LEVELS:
        raise ConfigError(f"level must be one of {R.LEVELS}, got {level!r}")


def _headline(scored: list[dict], tau: float, seed: int, n_boot: int) -> dict:
    agg = _section(scored, "headline", seed, n_boot)
    return {
        "primary_metric": PRIMARY_METRIC,
        PRIMARY_METRIC: agg["macro"]["f1"] if agg["macro"] else None,
        "tau": tau,
        "matching": "one-to-one (most pairs with similarity >= tau, then highest total similarity)",
        "headline": agg,
    }


def _by_level(items: list[dict], scored: list[dict], seed: int, n_boot: int) -> dict:
    out = {}
    for lvl in R.LEVELS:
        subset = [s for it, s in zip(items, scored) if it["key"][0] == lvl]
        if subset:
            out[lvl] = _section(subset, "headline", seed, n_boot)
    return out


def _counts(items: list[dict], pred_index: dict, gold_index: dict, table: PhraseTable) -> dict:
    not_ok = sum(1 for it in items if it["status"] not in ("ok", _MISSING))
    return {
        "n_gold_records": len(gold_index),
        "n_pred_records": len(pred_index),
        "n_items_scored": len(items),
        "n_missing_predictions": sum(1 for it in items if it["status"] == _MISSING),
        "n_unscored_predictions": sum(1 for k in pred_index if k not in gold_index),
        "n_pred_not_ok": not_ok,
        "n_unique_phrases_embedded": len(table.phrases),
        "n_pred_duplicates_dropped": sum(len(it["pred_raw"]) - len(it["pred"]) for it in items),
    }


def flat_metrics(report: dict) -> dict[str, float]:
    """The report's numbers as one flat {name: value} dict (sentence-transformers evaluator style)."""
    out: dict[str, float] = {}

    def add(prefix: str, agg: dict | None) -> None:
        for avg in ("macro", "micro"):
            for name, value in ((agg or {}).get(avg) or {}).items():
                if not name.endswith("_ci95"):
                    out[f"{prefix}{avg}_{name}"] = value

    add("", report["headline"])
    for t, agg in report["tau_sweep"].items():
        add(f"tau{t}_", agg)
    add("many_to_one_", report["many_to_one"])
    add("exact_", report["exact"])
    for lvl, agg in report["by_level"].items():
        add(f"{lvl}_", agg)
    return out


def _fmt(x: float | None) -> str:
    return "  -  " if x is None else f"{x:.3f}"


def _row(label: str, agg: dict | None, avg: str = "macro") -> str:
    """One table line: P, R, F1 and the F1 interval of an aggregate."""
    block = (agg or {}).get(avg)
    if not block:
        return f"{label:<28} {'(no items)':>6}"
    ci = block.get("f1_ci95")
    ci_text = f"[{ci[0]:.3f}, {ci[1]:.3f}]" if ci else ""
    n = agg.get("n_items", 0)
    return f"{label:<28} {_fmt(block['precision'])}  {_fmt(block['recall'])}  {_fmt(block['f1'])}  {ci_text:<16} {n:>6}"


def format_report(report: dict, tau_note: str = "uncalibrated") -> str:
    """The readable table: headline, tau sweep, many-to-one, exact, levels, typed recall, bookkeeping."""
    tau = report["tau"]
    lines = [
        f"Key-phrase F1, one-to-one matching at tau {tau:.2f} ({tau_note}); macro F1 is the headline",
        f"{'':<28} {'P':>5}  {'R':>5}  {'F1':>5}  {'F1 95% CI':<16} {'items':>6}",
        _row("macro (headline)", report["headline"]),
        _row("micro", report["headline"], "micro"),
    ]
    lines += [_row(f"macro, tau {t}", agg) for t, agg in report["tau_sweep"].items()]
    lines.append(_row(f"macro, many-to-one {tau:.2f}", report["many_to_one"]))
    lines.append(_row("macro, exact match", report["exact"]))
    lines += [_row(f"macro, level {lvl}", agg) for lvl, agg in report["by_level"].items()]
    for kind in GOLD_TYPES:
        typed = report["by_gold_type"][kind]
        if typed.get("n_items"):
            ci = typed["macro"]["recall_ci95"]
            ci_text = f"[{ci[0]:.3f}, {ci[1]:.3f}]" if ci else ""
            lines.append(
                f"{'recall of gold ' + kind:<28} {'':>5}  {_fmt(typed['macro']['recall'])}  {'':>5}  "
                f"{ci_text:<16} {typed['n_items']:>6}   (R 95% CI)"
            )
    c = report["counts"]
    lines.append(
        f"gold {c['n_gold_records']}, predictions {c['n_pred_records']}, not ok {c['n_pred_not_ok']} (scored as empty), "
        f"missing {c['n_missing_predictions']} (zero recall), unscored {c['n_unscored_predictions']} (no gold)"
    )
    return "\n".join(lines)


def headline_figures(report: dict) -> dict:
    """The headline macro figures of an F1 report, rounded: F1 and its interval, P, R, exact-match F1, records."""
    head = report["headline"]["macro"]
    return {"f1": round(head["f1"], 4), "f1_ci95": [round(x, 4) for x in head["f1_ci95"]],
            "precision": round(head["precision"], 4), "recall": round(head["recall"], 4),
            "exact_f1": round(report["exact"]["macro"]["f1"], 4), "n_items": report["headline"]["n_items"]}


def format_comparison(reports: dict[str, dict]) -> str:
    """Headline macro P/R/F1 of several reports on the same gold, one line each, then per level."""
    lines = [f"{'headline macro, same gold':<28} {'P':>5}  {'R':>5}  {'F1':>5}  {'F1 95% CI':<16} {'items':>6}"]
    lines += [_row(name, report["headline"]) for name, report in reports.items()]
    levels = sorted({lvl for report in reports.values() for lvl in report["by_level"]})
    for lvl in levels if len(levels) > 1 else []:
        lines += [_row(f"{name}, {lvl}", report["by_level"].get(lvl)) for name, report in reports.items()]
    return "\n".join(lines)
