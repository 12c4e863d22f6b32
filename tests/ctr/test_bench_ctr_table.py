"""The CTR bench's table: every MSD row is paired with DIN and, given --reference, with the raw-text control."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pandas as pd
import pytest

from ctr.train_config import CTRConfig

from bench import bench_ctr as B

SEEDS = [0, 1]
RNG = np.random.default_rng(0)
LABELS = RNG.integers(0, 2, 400)
USERS = np.repeat(np.arange(40), 10)
ITEMS = np.arange(400) % 8  # the test rows' items


def write_run(folder, signal: float, seed: int) -> None:
    """A finished run whose test probabilities carry `signal` x the label plus noise."""
    folder.mkdir(parents=True)
    prob = np.clip(0.5 + signal * (LABELS - 0.5) + np.random.default_rng(seed).normal(0, 0.2, len(LABELS)), 0, 1)
    pd.DataFrame({"split": "test", "row": np.arange(len(LABELS)), "label": LABELS, "user_id": USERS,
                  "prob": prob}).to_parquet(folder / "predictions.parquet")
    slices = {"item_train_count": {"0": {"rows": 0, "auc": None}}}
    test = {"auc": 0.5 + signal / 2, "gauc": 0.5, "logloss": 0.6, "slices": slices, "samples": len(LABELS)}
    (folder / "metrics.json").write_text(json.dumps({
        "test": test, "val": {"auc": 0.5 + signal / 2}, "best_epoch": 2, "epochs_cap": 30, "train_seconds": 1.0,
        "samples_per_s": 1.0, "peak_rss_mb": 1.0}))


@pytest.fixture
def runs(tmp_path):
    rows = {"tune/deepfm/best": 0.1, "tune/din/best": 0.2, "tune/msd/best": 0.3,
            "vectors/MSD-DIN__knowledge": 0.5, "tune/msd-deepfm/best": 0.15, "vectors/MSD-DeepFM__knowledge": 0.05}
    for folder, signal in rows.items():
        for seed in SEEDS:
            write_run(tmp_path / folder / f"seed-{seed}", signal, seed)
    # the data: 8 items; the test rows' items 0-1 have 5 train rows (rare), the others 30
    train = np.concatenate([np.repeat([0, 1], 5), np.repeat(np.arange(2, 8), 30)])
    samples = pd.DataFrame({"item_id": np.concatenate([train, ITEMS]).astype(str),
                            "split": ["train"] * len(train) + ["test"] * len(ITEMS)})
    (tmp_path / "data").mkdir()
    samples.to_parquet(tmp_path / "data" / "samples.parquet")
    return tmp_path


def args_for(runs, reference: str | None) -> argparse.Namespace:
    return argparse.Namespace(runs=runs, data=runs / "data", vectors=[f"knowledge={runs}/v"], user_vectors=[],
                              reference=reference, n_boot=200, oracle="click-rate")


def test_the_co_click_oracle_has_its_own_folders(tmp_path):
    args = args_for(tmp_path, None)
    assert "MSD-DIN, oracle vectors" in B.row_folders(args)
    args.oracle = "co-click"  # never the click-rate oracle's runs under another name
    assert B.row_folders(args)["MSD-DIN, oracle-coclick vectors"] == tmp_path / "controls" / "oracle-coclick"
    assert "MSD-DIN, oracle vectors" not in B.row_folders(args)


def test_rows_are_paired_with_din_and_with_the_reference(runs):
    rows, seeds = B.build_rows(args_for(runs, "MSD-DIN"), SEEDS)
    assert seeds == SEEDS and set(rows) == {"DeepFM", "DIN", "MSD-DIN", "MSD-DIN, knowledge", "MSD-DeepFM",
                                            "MSD-DeepFM, knowledge"}
    # MSD on DeepFM: paired with DeepFM, and with its own family's reference row
    assert rows["MSD-DeepFM"]["vs"] == "DeepFM" and "vs_reference" not in rows["MSD-DeepFM"]
    assert rows["MSD-DeepFM, knowledge"]["vs_reference"] == "MSD-DeepFM"
    assert rows["MSD-DeepFM, knowledge"]["paired_reference"]["mean_delta"] < 0  # 0.05 signal vs 0.15
    assert "vs" not in rows["DeepFM"]
    assert rows["DIN"]["vs"] == "DeepFM" and rows["MSD-DIN, knowledge"]["vs"] == "DIN"
    knowledge = rows["MSD-DIN, knowledge"]
    assert knowledge["vs_reference"] == "MSD-DIN" and "vs_reference" not in rows["MSD-DIN"]
    # The knowledge row's probabilities carry more signal than the reference's: a positive paired delta.
    assert knowledge["paired_reference"]["mean_delta"] > 0 and knowledge["paired_reference"]["seeds"] == 2
    assert "vs MSD-DIN" in B.table_text(rows)
    rare = knowledge["paired"]["items_le_20"]  # the rows of items 0 and 1 (5 train rows each)
    assert rare["rows"] == 100 and rare["mean_delta"] > 0 and "items with <= 20 train rows (100 test rows)" in (
        B.table_text(rows))


def test_no_reference_no_second_pairing(runs):
    rows, _ = B.build_rows(args_for(runs, None), SEEDS)
    assert all("paired_reference" not in r for r in rows.values())


def test_vectors_take_label_equals_folder():
    with pytest.raises(SystemExit, match="LABEL=FOLDER"):
        B.vector_sets(argparse.Namespace(vectors=["no-folder"], user_vectors=[]))


def test_two_benches_share_a_queue_through_run_locks(tmp_path, monkeypatch):
    """A run another live bench trains is skipped (or waited for); a lock left by a dead bench is taken over."""
    import subprocess

    trained = []

    def fake_ctr(*args):
        run = tmp_path / args[-1]
        trained.append(run.name)
        (run / "metrics.json").parent.mkdir(parents=True, exist_ok=True)
        (run / "metrics.json").write_text(json.dumps({"val": {"auc": 0.7}}))

    monkeypatch.setattr(B, "ctr", fake_ctr)
    busy, stale = tmp_path / "seed-0", tmp_path / "seed-1"
    other = subprocess.Popen(["sleep", "60"])  # a live bench
    try:
        (tmp_path / "seed-0.lock").write_text(str(other.pid))
        assert B.train_run(busy, [], skip_busy=True) is None and trained == []
    finally:
        other.kill()
        other.wait()
    (tmp_path / "seed-1.lock").write_text(str(other.pid))  # its process is gone now
    assert B.train_run(stale, []) == {"val": {"auc": 0.7}} and trained == ["seed-1"]
    assert not (tmp_path / "seed-1.lock").exists()
    assert B.train_run(stale, []) == {"val": {"auc": 0.7}} and trained == ["seed-1"]  # done: not trained again


def test_user_vectors_rows_read_their_folders_user_table():
    args = argparse.Namespace(vectors=["KAR=/k/items"], user_vectors=["KAR users=/k/both"])
    assert B.vector_sets(args) == {"MSD-DIN, KAR": {"knowledge": "/k/items"},
                                   "MSD-DIN, KAR users": {"knowledge": "/k/both", "user_source": "table"}}


def test_an_ablation_that_is_the_tuned_config_itself_has_no_row(runs):
    args = args_for(runs, None)
    assert B.ablations(args) == B.ABLATIONS  # not tuned yet: every ablation
    (runs / "tune" / "msd" / "tune.json").write_text(json.dumps({"chosen": {"fusion": "none", "user_level": True}}))
    assert set(B.ablations(args)) == {"MSD-DIN w/o user level"}  # fusion "none" was chosen: w/o fusion is MSD-DIN
    assert "MSD-DIN w/o item fusion" not in B.row_folders(args)
    (runs / "tune" / "msd" / "tune.json").write_text(json.dumps({"chosen": {"fusion": "gate"}}))
    assert B.ablations(args) == B.ABLATIONS


def test_elec_is_tuned_with_the_knowledge_and_paired_with_din(runs, monkeypatch):
    """ELEC's row is its served vanilla network, paired with DIN; its gain network's AUC is stated beside it."""
    for seed in SEEDS:
        write_run(runs / "tune" / "elec" / "best" / f"seed-{seed}", 0.25, seed)
        metrics = json.loads((runs / "tune/elec/best" / f"seed-{seed}" / "metrics.json").read_text())
        metrics["gain"] = {"val": {"auc": 0.6}, "test": {"auc": 0.61 + seed / 100}}
        (runs / "tune/elec/best" / f"seed-{seed}" / "metrics.json").write_text(json.dumps(metrics))
    rows, _ = B.build_rows(args_for(runs, None), SEEDS)
    assert rows["ELEC"]["vs"] == "DIN" and rows["ELEC"]["paired"]["mean_delta"] > 0  # 0.25 signal vs DIN's 0.2
    assert rows["ELEC"]["gain_network"]["auc"]["mean"] == pytest.approx(0.615)
    assert "gain_network" not in rows["DIN"]
    assert "its gain network (MSD-DIN inside ELEC, not served): test AUC 0.6150" in B.table_text(rows)
    called = []
    monkeypatch.setattr(B, "ctr", lambda *a: called.append(a))
    B.tune(argparse.Namespace(models="din,elec", knowledge=runs / "v", runs=runs, data=runs / "data",
                              train_args="--epochs 3", trials=2), [0])
    din, elec = [a for a in called if "--seeds" in a][:2]
    assert "--knowledge" not in din and elec[elec.index("--knowledge") + 1] == str(runs / "v")


def test_retrain_trains_each_model_at_its_recorded_trial_drawn_again(tmp_path, monkeypatch):
    """The chosen trial's settings come back from its number (the record prints only some), checked against the
    record; a knowledge model gets the vectors and MSD's fusion choice its search had."""
    from ctr.tune import TuneConfig, draw, space

    def drawn(model, trial):
        base = CTRConfig(data=str(tmp_path / "data"), model=model, knowledge=str(tmp_path / "v"), output="x")
        return draw(space(base, {"epochs"}), TuneConfig().search_seed, trial)

    printed = {"deepfm": drawn("deepfm", 3), "din": drawn("din", 0) | {"embed_dim": 8, "hidden": [200, 80],
                                                                       "dropout": 0.0, "learning_rate": 0.001,
                                                                       "weight_decay": 0.0},
               "elec": {k: v for k, v in drawn("elec", 2).items() if k != "standardize_vectors"} | {"fusion": "gate"}}
    record = {"table": "tuned", "date": "2026-12-07 05:05:45", "dataset": "toy", "rows": {
        label: {"trials": 4, "chosen_trial": {"deepfm": 3, "din": 0, "elec": 2}[model], "search_wall_s": 9.0,
                "chosen": printed[model]} for label, model in (("DeepFM", "deepfm"), ("DIN", "din"), ("ELEC", "elec"))}}
    (tmp_path / "bench" / "results").mkdir(parents=True)
    (tmp_path / "bench" / "results" / "ctr.jsonl").write_text(json.dumps(record) + "\n")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "card.json").write_text(json.dumps({"title": "toy", "dataset": "toy"}))
    monkeypatch.setattr(B, "RESULTS", tmp_path / "bench" / "results")
    trained = []
    monkeypatch.setattr(B, "train_run", lambda run, args, skip_busy=False: trained.append((run, args)))
    args = argparse.Namespace(runs=tmp_path / "runs", data=tmp_path / "data", models="deepfm,din,elec",
                              knowledge=tmp_path / "v", train_args="--epochs 3", from_record="2026-12-07 05:05:45")
    args.runs.mkdir()
    (args.runs / "choice.json").write_text(json.dumps({"fusion": "gate"}))
    B.retrain(args, [0, 1])
    assert [run.relative_to(args.runs).as_posix() for run, _ in trained] == [
        f"tune/{m}/best/seed-{s}" for m in ("deepfm", "din", "elec") for s in (0, 1)]
    import yaml

    def config(model):
        return yaml.safe_load((args.runs / "tune" / model / "best" / "config.yaml").read_text())

    assert config("deepfm") == drawn("deepfm", 3)
    assert config("din") == {"embed_dim": 8, "hidden": [200, 80], "dropout": 0.0, "learning_rate": 0.001,
                             "weight_decay": 0.0}  # trial 0: the defaults, as printed
    assert config("elec") == drawn("elec", 2)  # standardize_vectors too, which the record does not print
    assert trained[2][1][:4] == ["--data", str(args.data), "--epochs", "3"] and "din" in trained[2][1]
    assert "--knowledge" not in trained[2][1]
    elec = trained[4][1]
    assert elec[elec.index("--knowledge") + 1] == str(tmp_path / "v") and "--fusion=gate" in elec
    assert B.tune_facts(args, "DIN")["config_from_record"] == "2026-12-07 05:05:45"
    (args.runs / "tune/elec/best/seed-0").mkdir(parents=True)
    (args.runs / "tune/elec/best/seed-0/ctr_config.json").write_text(json.dumps({"model": "elec", "top_k": 5}))
    assert B.chosen_config(args, "elec") == {"model": "elec", "top_k": 5}  # variants start from the run's config
    (args.runs / "choice.json").write_text(json.dumps({"fusion": "concat"}))
    with pytest.raises(SystemExit, match="elec's trial 2 of 2026-12-07 05:05:45 draws again as .*fusion"):
        B.retrain(args, [0])  # RUNS/choice.json is not what the recorded search had
    args.models = "msd"
    with pytest.raises(SystemExit, match="has no MSD-DIN row to retrain"):
        B.retrain(args, [0])
    args.from_record = "2026-01-01"
    with pytest.raises(SystemExit, match="no tuned table of 'toy' dated '2026-01-01'"):
        B.retrain(args, [0])
    monkeypatch.setattr(B, "ctr", lambda *a: trained.append(a))
    args.models, args.trials, before = "deepfm,din,elec,msd", 4, len(trained)
    B.tune(args, [0])  # the retrained models are not searched again
    assert [a[a.index("--model") + 1] for a in trained[before:]] == ["msd", "msd"]


def test_the_variant_stages_train_seed_by_seed(tmp_path, monkeypatch):
    """A bench cut short (the session ends) has every row at its first seeds, so its table keeps them all."""
    trained = []
    monkeypatch.setattr(B, "variant_runs", lambda args, group, label, changes, seeds, model="msd":
                        trained.append((label, seeds)))
    args = argparse.Namespace(**vars(args_for(tmp_path, None)), models="din,msd")
    args.vectors, args.user_vectors = [f"a={tmp_path}/a"], [f"b={tmp_path}/b"]
    B.vectors(args, [0, 1, 2])
    assert trained == [(label, [seed]) for seed in (0, 1, 2) for label in ("MSD-DIN, a", "MSD-DIN, b")]
