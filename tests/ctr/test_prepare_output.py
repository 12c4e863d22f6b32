"""The output folder of `ctr prepare`: refused when foreign, replaced whole, never half-written; the CLI; the sample."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from prepare_files import assert_no_leak, ml1m_folder, read_output, snapshot_histories, train_stats, write_text
from typer.testing import CliRunner

from ctr.cli import app
from ctr.prepare import assign_splits, history_slices, prepare, time_cutoffs
from ctr.raw import PrepareConfig
from ground.snapshots import times_digest

ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()


def test_foreign_non_empty_folder_is_refused_and_left_intact(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    (out / "card.json").write_text('{"dataset": "something else"}')
    result = runner.invoke(app, ["prepare", "--dataset", "ml-1m", "--raw", str(ml1m_folder(tmp_path / "raw")),
                                 "-o", str(out)])
    assert result.exit_code == 1 and "not a `ctr prepare` output" in result.output
    assert sorted(p.name for p in out.iterdir()) == ["card.json", "notes.txt"]
    assert (out / "notes.txt").read_text() == "mine"


def test_earlier_output_is_replaced_whole_and_a_failed_run_keeps_it(tmp_path):
    raw, out = ml1m_folder(tmp_path / "raw"), tmp_path / "out"
    config = PrepareConfig(dataset="ml-1m", raw=raw, output=out)
    prepare(config, log=lambda m: None)
    (out / "stale.txt").write_text("from before")
    prepare(config, log=lambda m: None)
    assert not (out / "stale.txt").exists()  # a new folder took the old one's place
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    write_text(raw / "ratings.dat", ["1::1::5::100", "1::2::x::100"])
    with pytest.raises(ValueError, match=r"ratings\.dat:2: rating must be an integer"):
        prepare(config, log=lambda m: None)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "raw"]  # no temp folder left behind


def test_cli_end_to_end_in_a_subprocess(tmp_path):
    raw, out = ml1m_folder(tmp_path / "raw", gz=True), tmp_path / "out"
    cmd = [sys.executable, "-m", "ctr.cli", "prepare", "--dataset", "ml-1m", "--raw", str(raw), "-o", str(out),
           "--max-history", "4", "--split", "0.7,0.15,0.15"]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["title"] == "ML-1M"
    samples, card, _, _ = read_output(out)
    assert card["max_history"] == 4 and card["config"]["split_fractions"] == [0.7, 0.15, 0.15]
    assert_no_leak(samples, max_history=4)
    write_text(raw / "movies.dat.gz", ["1::Toy Story (1995)::Animation", "2::Heat (1995)"])
    bad = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 1
    assert bad.stderr.strip().splitlines()[-1] == (
        f"error: {raw / 'movies.dat.gz'}:2: expected 3 fields separated by '::', got 2: '2::Heat (1995)'")


@pytest.mark.parametrize(("args", "message"), [
    (["--split", "0.8,0.3"], "split_fractions must be 3 non-negative numbers"),
    (["--max-history", "0"], "max_history must be >= 1"),
    (["--dataset", "ml-20m"], "dataset must be one of"),
])
def test_bad_options_are_one_line_errors(tmp_path, args, message):
    base = {"--dataset": "ml-1m", "--raw": str(tmp_path), "-o": str(tmp_path / "out")}
    flat = [x for k, v in base.items() if k not in args for x in (k, v)] + args
    result = runner.invoke(app, ["prepare", *flat])
    assert result.exit_code == 1 and message in result.output


def test_bundled_sample_histories_rebuilt_and_stats_recounted(tmp_path):
    card = prepare(PrepareConfig(dataset="sample", raw=ROOT / "data/sample", output=tmp_path / "out"),
                   log=lambda m: None)
    samples, _, items, users = read_output(tmp_path / "out")
    assert len(samples) == 24167 == sum(s["samples"] for s in card["splits"].values())
    assert_no_leak(samples, max_history=50)
    stats = train_stats(samples)
    given = {json.loads(line)["item_id"]: json.loads(line)["stats"]
             for line in (ROOT / "data/sample/items.jsonl").read_text().splitlines()}
    for item in items:
        assert item["stats"] == stats.get(item["item_id"], {"exposures": 0, "clicks": 0})
        assert item["stats"]["clicks"] < given[item["item_id"]]["clicks"]  # whole-period counts are not reused
    assert {u["user_id"]: u["history"] for u in users} == snapshot_histories(samples, 50, card["users_snapshot_ts"])
    last_train = samples.loc[samples["split"] == "train", "ts"].max()
    assert samples["ts"].min() < card["users_snapshot_ts"] < last_train  # T0 inside the train window
    assert {u["history_as_of"] for u in users} == {card["users_snapshot_ts"]}
    assert (samples.loc[samples["split"] != "train", "ts"] > last_train).all()
    assert "users_late_snapshot_ts" not in card and card["config"]["late_snapshot"] is False


def test_late_snapshot_gives_users_without_a_click_by_t0_their_snapshot_at_the_end_of_validation(tmp_path):
    config = PrepareConfig(dataset="sample", raw=ROOT / "data/sample", output=tmp_path / "out", late_snapshot=True)
    card = prepare(config, log=lambda m: None)
    samples, _, _, users = read_output(tmp_path / "out")
    t0, late = card["users_snapshot_ts"], card["users_late_snapshot_ts"]
    assert late == card["cutoffs"]["val_last_ts"] and t0 < late and "--late-snapshot" in card["protocol"]["users_rule"]
    at_t0, at_late = snapshot_histories(samples, 50, t0), snapshot_histories(samples, 50, late)
    kinds = {"t0": 0, "late": 0, "late_empty": 0}
    for user in users:
        u, as_of = user["user_id"], user["history_as_of"]
        if at_t0[u]:  # a click up to T0: the T0 snapshot, as without the flag
            assert (as_of, user["history"]) == (t0, at_t0[u])
            kinds["t0"] += 1
        else:  # decided at T0, so a user with no click by the late time gets it too, with an empty history
            assert (as_of, user["history"]) == (late, at_late[u])
            kinds["late" if at_late[u] else "late_empty"] += 1
    assert min(kinds.values()) > 0, kinds
    assert json.loads((tmp_path / "out" / "card.json").read_text())["config"]["late_snapshot"] is True


def test_snapshot_clicks_gives_each_user_their_snapshot_at_their_own_kth_click(tmp_path):
    config = PrepareConfig(dataset="sample", raw=ROOT / "data/sample", output=tmp_path / "out", snapshot_clicks=20)
    card = prepare(config, log=lambda m: None)
    samples, _, _, users = read_output(tmp_path / "out")
    clicks = samples[samples["label"] == 1].sort_values("ts", kind="stable")
    kth = {u: int(g["ts"].iloc[19]) for u, g in clicks.groupby("user_id") if len(g) >= 20}
    assert 0 < len(kth) < samples["user_id"].nunique()  # some users never reach 20 clicks: they get no record
    assert {u["user_id"]: u["history_as_of"] for u in users} == kth
    for user in users:
        assert user["history"] == snapshot_histories(samples, 50, kth[user["user_id"]])[user["user_id"]]
        assert len(user["history"]) >= 20  # the first 20 clicks, and those in the same second as the 20th
    assert card["users_snapshot_clicks"] == 20 and card["config"]["snapshot_clicks"] == 20
    assert card["users_snapshot_digest"] == times_digest(kth) and "users_snapshot_ts" not in card
    assert "K-th click, K = 20" in card["protocol"]["users_rule"]


def test_snapshot_clicks_is_refused_with_late_snapshot_or_below_one(tmp_path):
    common = dict(dataset="sample", raw=ROOT / "data/sample", output=tmp_path / "out")
    with pytest.raises(ValueError, match="--snapshot-clicks and --late-snapshot are two snapshot rules"):
        PrepareConfig(**common, snapshot_clicks=5, late_snapshot=True)
    with pytest.raises(ValueError, match="snapshot_clicks must be >= 1"):
        PrepareConfig(**common, snapshot_clicks=0)


def test_history_slices_by_hand():
    user = np.array([0, 0, 1, 0, 0, 1])
    ts = np.array([10, 10, 5, 20, 30, 5])
    click = np.array([True, True, True, False, True, True])
    clicks, start, end = history_slices(user, ts, click, max_history=2)
    got = [clicks[s:e].tolist() for s, e in zip(start, end)]
    # rows 0 and 1 share ts 10: neither sees the other; row 4 sees the last 2 of rows 0, 1 (row 3 is no click)
    assert got == [[], [], [], [0, 1], [0, 1], []]


def test_time_cutoffs_never_split_a_timestamp():
    ts = np.array([1, 2, 2, 2, 2, 3, 4, 5, 6, 7])
    cut = time_cutoffs(ts, (0.3, 0.3, 0.4))
    assert cut == (2, 3)  # the ts at the 30% and 60% ranks; the tie at 2 goes to train whole
    assert assign_splits(ts, cut).tolist() == ["train"] * 5 + ["val"] + ["test"] * 4


@pytest.mark.parametrize(("line", "problem"), [
    ('{"user_id": "u1", "item_id": "a", "label": 1}', "field 'ts' must be an integer (unix seconds), got null"),
    ('{"user_id": "u1", "item_id": "zz", "label": 0, "ts": 5}', "item_id zz is not in items.jsonl"),
    ('{"user_id": "u1", "item_id": "a", "label": 2, "ts": 5}', "field 'label' must be 0 or 1, got 2"),
])
def test_sample_format_bad_interaction_named_by_path_and_line(tmp_path, line, problem):
    raw = tmp_path / "raw"
    raw.mkdir()
    write_text(raw / "items.jsonl", ['{"item_id": "a", "name": "Mug"}', '{"item_id": "b", "name": "Jug"}'])
    write_text(raw / "users.jsonl", ['{"user_id": "u1", "history": ["a"], "profile": {"country": "France"}}'])
    path = write_text(raw / "interactions.jsonl", ['{"user_id": "u1", "item_id": "a", "label": 1, "ts": 3}', line])
    with pytest.raises(ValueError) as err:
        prepare(PrepareConfig(dataset="sample", raw=raw, output=tmp_path / "out"), log=lambda m: None)
    assert str(err.value) == f"{path}:2: {problem}"
    assert not (tmp_path / "out").exists()
