import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from eval.cli import app
from eval.correlate import CORRELATION_JSON, PLOT_PNG, TABLE_MD, correlation, plot_points, read_points, write_report
from ground.errors import RecordError

ROOT = Path(__file__).resolve().parents[1]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def point(name, f1, auc, std=0.002, ci=None):
    p = {"name": name, "f1": f1, "auc_mean": auc, "auc_std": std, "aucs": [auc - std, auc + std], "n_seeds": 2}
    if ci:
        p["f1_ci95"] = ci
    return p


def write_points(path, points):
    path.write_text("".join(json.dumps(p) + "\n" for p in points))
    return path


def test_perfectly_linear_points_give_one_with_a_tight_interval():
    x = [0.05, 0.1, 0.2, 0.35, 0.5, 0.7]
    stats = correlation(x, [0.7 + 0.1 * v for v in x], n_boot=500)
    for method in ("pearson", "spearman"):
        assert stats[method]["r"] == pytest.approx(1.0)
        lo, hi = stats[method]["ci95"]
        assert lo == pytest.approx(1.0) and hi == pytest.approx(1.0)
        assert 0 < stats[method]["n_boot_used"] <= 500


def test_the_exact_permutation_p_of_a_perfect_line_counts_the_two_perfect_orders():
    stats = correlation([1, 2, 3, 4, 5, 6], [2, 4, 6, 8, 10, 12], n_boot=10)
    for method in ("pearson", "spearman"):
        assert stats[method]["p_exact"] is True
        assert stats[method]["p_permutation"] == pytest.approx(2 / 720)  # the order itself and its reverse


def test_a_falling_line_gives_minus_one():
    stats = correlation([0.1, 0.2, 0.3, 0.4], [0.9, 0.8, 0.7, 0.6], n_boot=200)
    assert stats["pearson"]["r"] == pytest.approx(-1.0)
    assert stats["spearman"]["r"] == pytest.approx(-1.0)


def test_monotone_but_curved_points_give_spearman_one_and_pearson_below_one():
    x = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7]
    y = [0.70 + 0.2 * (1 - np.exp(-40 * (v - 0.1))) for v in x]  # rises fast then plateaus, like Figure 4
    stats = correlation(x, y, n_boot=500)
    assert stats["spearman"]["r"] == pytest.approx(1.0)
    assert stats["pearson"]["r"] < 0.9
    assert stats["spearman"]["ci95"][0] == pytest.approx(1.0)  # every resample is monotone too


def test_shuffled_points_give_a_correlation_near_zero_with_an_interval_around_it():
    rng = np.random.default_rng(3)
    x = np.linspace(0, 1, 300)
    y = rng.permutation(x)
    stats = correlation(list(x), list(y), n_boot=500)
    for method in ("pearson", "spearman"):
        assert abs(stats[method]["r"]) < 0.15
        lo, hi = stats[method]["ci95"]
        assert lo < 0 < hi and hi - lo < 0.5
        assert stats[method]["p_permutation"] > 0.05 and stats[method]["p_exact"] is False


def test_the_interval_is_reproducible_with_the_seed_and_narrower_with_more_points():
    rng = np.random.default_rng(0)
    x = rng.uniform(size=200)
    y = x + rng.normal(scale=0.3, size=200)
    a = correlation(list(x), list(y), seed=1)
    assert a == correlation(list(x), list(y), seed=1)
    small = correlation(list(x[:10]), list(y[:10]), seed=1)
    width = lambda s: s["pearson"]["ci95"][1] - s["pearson"]["ci95"][0]
    assert a["pearson"]["ci95"][0] < a["pearson"]["r"] < a["pearson"]["ci95"][1]
    assert width(a) < width(small)


def test_constant_auc_has_no_correlation_and_no_interval():
    stats = correlation([0.1, 0.2, 0.3], [0.8, 0.8, 0.8], n_boot=100)
    assert np.isnan(stats["pearson"]["r"])
    assert stats["pearson"]["ci95"] is None and stats["pearson"]["n_boot_used"] == 0
    assert np.isnan(stats["pearson"]["p_permutation"])


def test_fewer_than_three_points_are_refused():
    with pytest.raises(ValueError, match="at least 3"):
        correlation([0.1, 0.2], [0.5, 0.6])


def test_the_plot_is_a_valid_png(tmp_path):
    pts = [point("untrained", 0.02, 0.80, ci=[0.0, 0.05]), point("n8", 0.05, 0.81), point("n16-aug", 0.09, 0.83)]
    stats = correlation([p["f1"] for p in pts], [p["auc_mean"] for p in pts], n_boot=100)
    path = tmp_path / "plots" / "f1_auc.png"
    plot_points(pts, stats, path)
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    assert data[12:16] == b"IHDR"
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert (width, height) == (768, 528)  # 6.4 x 4.4 inches at 120 dpi
    from PIL import Image

    with Image.open(path) as img:
        img.verify()


def test_write_report_writes_the_table_json_and_plot(tmp_path):
    pts = [point(f"s{i}", 0.1 * i, 0.7 + 0.02 * i) for i in range(1, 6)]
    stats = write_report(write_points(tmp_path / "points.jsonl", pts), tmp_path / "out", n_boot=200)
    assert stats["pearson"]["r"] == pytest.approx(1.0)
    saved = json.loads((tmp_path / "out" / CORRELATION_JSON).read_text())
    assert saved["pearson"]["r"] == pytest.approx(1.0) and saved["n_points"] == 5
    table = (tmp_path / "out" / TABLE_MD).read_text()
    assert table.count("\n| s") == 5 and "Pearson r +1.000" in table
    assert (tmp_path / "out" / PLOT_PNG).read_bytes()[:8] == PNG_SIGNATURE


BAD_LINES = [
    ("{not json", "malformed JSON"),
    ('{"f1": 0.1, "auc_mean": 0.8, "auc_std": 0.01, "aucs": [0.8], "n_seeds": 1}', "'name'"),
    ('{"name": "b", "f1": "high", "auc_mean": 0.8, "auc_std": 0.01, "aucs": [0.8], "n_seeds": 1}', "'f1'"),
    ('{"name": "b", "f1": 0.1, "auc_mean": 0.8, "auc_std": 0.01, "aucs": [0.8, 0.81], "n_seeds": 3}', "'n_seeds'"),
    ('{"name": "b", "f1": 0.1, "f1_ci95": [0.2, 0.3], "auc_mean": 0.8, "auc_std": 0.0, "aucs": [0.8], "n_seeds": 1}',
     "'f1_ci95'"),
    ('{"name": "a", "f1": 0.1, "auc_mean": 0.8, "auc_std": 0.01, "aucs": [0.8], "n_seeds": 1}', "duplicate name"),
]


@pytest.mark.parametrize("line,problem", BAD_LINES)
def test_a_bad_points_line_is_named_by_path_and_line(tmp_path, line, problem):
    good = json.dumps(point("a", 0.1, 0.8))
    path = tmp_path / "points.jsonl"
    path.write_text(f"{good}\n\n{line}\n")
    with pytest.raises(RecordError, match=rf"points.jsonl:3: .*{problem}"):
        read_points(path)


def test_the_cli_writes_the_report(tmp_path):
    pts = write_points(tmp_path / "p.jsonl", [point(f"s{i}", 0.1 * i, 0.7 + 0.01 * i * i) for i in range(1, 5)])
    result = CliRunner().invoke(app, ["correlate", "--points", str(pts), "-o", str(tmp_path / "out"), "--n-boot", "100"])
    assert result.exit_code == 0, result.output
    assert "Spearman rho +1.000" in result.output
    assert (tmp_path / "out" / PLOT_PNG).exists()


@pytest.mark.parametrize("content,expected", [
    (json.dumps(point("a", 0.1, 0.8)) + "\n{oops\n", "p.jsonl:2: malformed JSON"),
    (json.dumps(point("a", 0.1, 0.8)) + "\n", "need at least 3 points"),
])
def test_the_cli_gives_one_line_errors(tmp_path, content, expected):
    path = tmp_path / "p.jsonl"
    path.write_text(content)
    done = subprocess.run([sys.executable, "-m", "eval.cli", "correlate", "--points", str(path), "-o",
                           str(tmp_path / "out")], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], done.stderr
    assert not (tmp_path / "out").exists()

