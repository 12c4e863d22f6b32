"""Does a better student give a better CTR model? Correlation of key-phrase F1 with CTR AUC over students.

One point per student (points.jsonl, written by pipeline/study.py): its key-phrase F1 and the test AUC of
MSD trained on its vectors over several seeds. Pearson and Spearman come with percentile-bootstrap 95% intervals
over the points, the unit that varies (the seeds only give each point its error bar), and a permutation p-value:
with five to ten students the interval is wide, and the p-value says how often a random order of the same AUCs
correlates as strongly.
"""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ground.errors import ConfigError, RecordError
from ground.flags import flag
from ground.files import write_json

NAME, F1, F1_CI95, AUC_MEAN, AUC_STD, AUCS, N_SEEDS = "name", "f1", "f1_ci95", "auc_mean", "auc_std", "aucs", "n_seeds"
CORRELATION_JSON, TABLE_MD, PLOT_PNG = "correlation.json", "table.md", "f1_auc.png"
MIN_POINTS = 3


def _check_point(row: object, where: str) -> dict:
    """The point as given, or RecordError naming `where` (path:line) and the first thing wrong."""
    if not isinstance(row, dict):
        raise RecordError(f"{where}: expected a JSON object, got {type(row).__name__}")
    if not isinstance(row.get(NAME), str) or not row[NAME]:
        raise RecordError(f"{where}: '{NAME}' must be a non-empty string")
    for key in (F1, AUC_MEAN, AUC_STD):
        value = row.get(key)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise RecordError(f"{where}: '{key}' must be a finite number, got {value!r}")
    if not 0 <= row[F1] <= 1 or not 0 <= row[AUC_MEAN] <= 1 or row[AUC_STD] < 0:
        raise RecordError(f"{where}: need 0 <= f1, auc_mean <= 1 and auc_std >= 0, got "
                          f"{row[F1]}, {row[AUC_MEAN]}, {row[AUC_STD]}")
    aucs = row.get(AUCS)
    if not isinstance(aucs, list) or not aucs or not all(isinstance(a, (int, float)) for a in aucs):
        raise RecordError(f"{where}: '{AUCS}' must be a non-empty list of numbers (one AUC per seed)")
    if row.get(N_SEEDS) != len(aucs):
        raise RecordError(f"{where}: '{N_SEEDS}' is {row.get(N_SEEDS)!r} but '{AUCS}' has {len(aucs)} values")
    ci = row.get(F1_CI95)
    if ci is not None and (not isinstance(ci, list) or len(ci) != 2 or not ci[0] <= row[F1] <= ci[1]):
        raise RecordError(f"{where}: '{F1_CI95}' must be [low, high] around f1 {row[F1]}, got {ci!r}")
    return row


def read_points(path: str | Path) -> list[dict]:
    """Points from a JSONL file; the first bad line raises RecordError `path:line: problem`."""
    path = Path(path)
    if not path.is_file():
        raise RecordError(f"{path}: no such file")
    points: list[dict] = []
    names: set[str] = set()
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise RecordError(f"{path}:{lineno}: malformed JSON ({exc.msg})") from None
        point = _check_point(row, f"{path}:{lineno}")
        if point[NAME] in names:
            raise RecordError(f"{path}:{lineno}: duplicate name {point[NAME]!r}")
        names.add(point[NAME])
        points.append(point)
    if len(points) < MIN_POINTS:
        raise RecordError(f"{path}: need at least {MIN_POINTS} points for a correlation, got {len(points)}")
    return points


def _pearson_rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """(B, n), (B, n) -> (B,) Pearson r of each row; NaN where a row is constant."""
    xc, yc = x - x.mean(1, keepdims=True), y - y.mean(1, keepdims=True)
    denom = np.sqrt((xc**2).sum(1) * (yc**2).sum(1))
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (xc * yc).sum(1) / denom
    return np.where(denom > 1e-12, np.clip(r, -1.0, 1.0), np.nan)


def _spearman_rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """(B, n), (B, n) -> (B,) Spearman rho: Pearson on average ranks (ties share their mean rank)."""
    from scipy.stats import rankdata

    return _pearson_rows(rankdata(x, axis=1), rankdata(y, axis=1))


METHODS = {"pearson": _pearson_rows, "spearman": _spearman_rows}
EXACT_PERMUTATIONS_UP_TO = 8  # 8! = 40,320 orders; beyond, a random sample of them


def _permutations(n: int, n_random: int, rng: np.random.Generator) -> tuple[np.ndarray, bool]:
    """(P, n) orders of the y values to test against: all of them for small n, else the identity + random ones."""
    if n <= EXACT_PERMUTATIONS_UP_TO:
        return np.array(list(itertools.permutations(range(n)))), True
    return np.vstack([np.arange(n), rng.permuted(np.tile(np.arange(n), (n_random, 1)), axis=1)]), False


def permutation_p(x: np.ndarray, y: np.ndarray, rows, n_random: int = 9999, seed: int = 0) -> tuple[float, bool]:
    """Two-sided p of the correlation under 'AUC does not depend on F1': the share of orders of y whose |r| is at
    least the observed one (exact over all orders up to 8 points); returns (p, exact)."""
    perms, exact = _permutations(len(x), n_random, np.random.default_rng(seed))
    r = rows(np.broadcast_to(x, perms.shape), y[perms])  # (P,)
    observed = abs(rows(x[None], y[None])[0])
    if np.isnan(observed):
        return math.nan, exact
    return float(np.mean(np.nan_to_num(np.abs(r), nan=0.0) >= observed - 1e-12)), exact


def correlation(x: list[float], y: list[float], n_boot: int = 2000, seed: int = 0) -> dict:
    """Pearson and Spearman of y on x with percentile-bootstrap 95% intervals over the points.

    Resamples where x or y is constant have no correlation and are left out; `n_boot_used` says how many counted
    (ci95 is None when none did). r is NaN when x or y is constant.
    """
    xs, ys = np.asarray(x, float), np.asarray(y, float)
    if xs.shape != ys.shape or xs.ndim != 1 or len(xs) < MIN_POINTS:
        raise ValueError(f"need two equal-length lists of at least {MIN_POINTS} values, got {len(xs)} and {len(ys)}")
    idx = np.random.default_rng(seed).integers(0, len(xs), (n_boot, len(xs)))  # (B, n) resampled points
    out: dict = {"n_points": len(xs), "n_boot": n_boot, "seed": seed}
    for name, rows in METHODS.items():
        r = float(rows(xs[None], ys[None])[0])
        boot = rows(xs[idx], ys[idx]) if n_boot else np.array([])
        boot = boot[~np.isnan(boot)]
        ci = [float(v) for v in np.percentile(boot, [2.5, 97.5])] if len(boot) else None
        p, exact = permutation_p(xs, ys, rows, seed=seed)
        out[name] = {"r": r, "ci95": ci, "n_boot_used": int(len(boot)), "p_permutation": p, "p_exact": exact}
    return out


def correlate_points(points: list[dict], n_boot: int = 2000, seed: int = 0) -> dict:
    """Correlation of auc_mean on f1 over the points."""
    return correlation([p[F1] for p in points], [p[AUC_MEAN] for p in points], n_boot, seed)


def _fmt_r(stats: dict) -> str:
    ci = stats["ci95"]
    return (f"{stats['r']:+.3f} " + (f"[{ci[0]:+.3f}, {ci[1]:+.3f}]" if ci else "[no interval]")
            + f" p={stats['p_permutation']:.3g}")


def format_table(points: list[dict], stats: dict) -> str:
    """A markdown table of the points (by F1) and the two correlations with their intervals."""
    lines = ["| student | key-phrase F1 [95% CI] | MSD test AUC (mean ± std) | seeds |", "|---|---|---|---|"]
    for p in sorted(points, key=lambda p: p[F1]):
        ci = f" [{p[F1_CI95][0]:.3f}, {p[F1_CI95][1]:.3f}]" if p.get(F1_CI95) else ""
        lines.append(f"| {p[NAME]} | {p[F1]:.3f}{ci} | {p[AUC_MEAN]:.4f} ± {p[AUC_STD]:.4f} | {p[N_SEEDS]} |")
    lines += ["", f"Pearson r {_fmt_r(stats['pearson'])}, Spearman rho {_fmt_r(stats['spearman'])} "
              f"(95% percentile bootstrap over {stats['n_points']} points, {stats['n_boot']} resamples; "
              "p: two-sided permutation test, exact up to 8 points)"]
    return "\n".join(lines) + "\n"


MIN_AUC_SPAN = 0.01  # the AUC axis spans at least this much, so that noise of 0.002 does not fill the plot


def plot_points(points: list[dict], stats: dict, path: str | Path, title: str = "",
                x_label: str = "key-phrase F1 of the student") -> None:
    """F1 on x, AUC on y, the points joined in F1 order (as the paper's Figure 4); vertical bars: std over the
    seeds; horizontal bars: the F1 bootstrap interval where given."""
    import textwrap

    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    pts = sorted(points, key=lambda p: p[F1])
    x, y = np.array([p[F1] for p in pts]), np.array([p[AUC_MEAN] for p in pts])
    xerr = np.array([[p[F1] - p[F1_CI95][0], p[F1_CI95][1] - p[F1]] if p.get(F1_CI95) else [0.0, 0.0]
                     for p in pts]).T  # (2, n): below, above
    fig, ax = plt.subplots(figsize=(6.4, 4.4), dpi=120)
    ax.errorbar(x, y, xerr=xerr, fmt="none", ecolor="#9bb8d3", elinewidth=1, capsize=0, zorder=1)
    ax.errorbar(x, y, yerr=[p[AUC_STD] for p in pts], fmt="o-", color="#1f4e79", ecolor="#1f4e79",
                capsize=4, markersize=6, linewidth=1.5, zorder=2)
    for p in pts:
        ax.annotate(p[NAME], (p[F1], p[AUC_MEAN]), textcoords="offset points", xytext=(5, 6), fontsize=8)
    ax.set_xlabel(f"{x_label} (light bars: bootstrap 95% CI)")
    ax.set_ylabel("CTR test AUC (MSD, mean ± std over seeds)")
    low, high = ax.get_ylim()
    if high - low < MIN_AUC_SPAN:
        mid = (high + low) / 2
        ax.set_ylim(mid - MIN_AUC_SPAN / 2, mid + MIN_AUC_SPAN / 2)
    ax.set_title(textwrap.fill(title or "Distillation metric vs CTR metric", 70), fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.text(0.02, 0.97, f"Pearson r = {_fmt_r(stats['pearson'])}\nSpearman ρ = {_fmt_r(stats['spearman'])}",
            transform=ax.transAxes, va="top", fontsize=8, bbox={"facecolor": "white", "alpha": 0.8, "lw": 0})
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    plt.close(fig)


@dataclass(kw_only=True)
class CorrelateConfig:
    """Settings of `msd-eval correlate`."""

    points: Path = field(metadata=flag(
        "JSONL, one line per student: name, f1, f1_ci95?, auc_mean, auc_std, aucs, n_seeds.", "--points"))
    output: Path = field(metadata=flag("Output folder: correlation.json, table.md, f1_auc.png.", "--output", "-o"))
    n_boot: int = field(default=2000, metadata=flag("Bootstrap resamples over the points for the 95% intervals."))
    seed: int = field(default=0, metadata=flag("Bootstrap seed."))
    title: str = field(default="", metadata=flag("Plot title."))

    def __post_init__(self) -> None:
        if self.n_boot < 0:
            raise ConfigError(f"--n-boot must be >= 0, got {self.n_boot}")


def write_report(points_path: str | Path, output: str | Path, n_boot: int = 2000, seed: int = 0,
                 title: str = "", x_label: str = "key-phrase F1 of the student") -> dict:
    """Read the points, write correlation.json, table.md and f1_auc.png into `output`; return the statistics."""
    points = read_points(points_path)
    stats = correlate_points(points, n_boot, seed)
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    write_json(output / CORRELATION_JSON, {**stats, "points": str(points_path), "x": F1, "y": AUC_MEAN})
    (output / TABLE_MD).write_text(format_table(points, stats), encoding="utf-8")
    plot_points(points, stats, output / PLOT_PNG, title, x_label)
    return stats
