"""`ctr train` / `ctr eval` end to end on a tiny prepared folder; vocabularies come from the train split only."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from ctr.data import build_split, history_keys, load_prepared
from ctr.features import UNKNOWN, build_features
from ctr.train_config import CTRConfig

ROOT = Path(__file__).resolve().parents[2]


def run_ctr(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ctr.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})


def test_vocabularies_come_from_the_train_split_only(prepared):
    data = load_prepared(prepared)
    samples = data.samples.copy()
    samples.loc[samples["split"] == "test", "gender"] = "only-in-test"
    data.samples = samples
    features = build_features(data.split("train"), data.card)
    assert "only-in-test" not in features.vocabs["gender"]
    test = build_split(data, "test", features, 4)
    gender = features.user_fields.index("gender")
    assert (test.user[:, gender] == UNKNOWN).all()
    assert min(min(v.values()) for v in features.vocabs.values()) == 2  # 0 = padding, 1 = unknown


def test_history_keys_keep_the_last_items_oldest_first_right_padded():
    column = pd.Series([["b", "c", "d"], [], ["a"]])
    keys = history_keys(column, ["a", "b", "c", "d"], max_history=2, where="t")
    assert keys.tolist() == [[3, 4], [0, 0], [1, 0]]


def test_config_rejects_bad_values():
    with pytest.raises(ValueError, match="model must be one of"):
        CTRConfig(data="d", output="o", model="xgboost")
    with pytest.raises(ValueError, match="needs --knowledge"):
        CTRConfig(data="d", output="o", model="msd")
    with pytest.raises(ValueError, match="mask_rate"):
        CTRConfig(data="d", output="o", mask_rate=1.5)


def test_train_writes_its_run_and_eval_reproduces_the_test_auc(prepared, knowledge_dir, tmp_path):
    """MSD on DIN: the model file, the vocabularies and the knowledge tables must all come back for eval."""
    out = tmp_path / "run"
    result = run_ctr("train", "--data", str(prepared), "-o", str(out), "--model", "msd", "--knowledge",
                     str(knowledge_dir), "--epochs", "3", "--batch-size", "64", "--lr", "0.01", "--embed-dim", "8")
    assert result.returncode == 0, result.stderr
    assert {"model.pt", "ctr_config.json", "features.json", "metrics.json"} <= {p.name for p in out.iterdir()}
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["history"] and "samples/s" in result.stdout
    evaluated = run_ctr("eval", "--model", str(out), "--split", "test")
    assert evaluated.returncode == 0, evaluated.stderr
    scored = json.loads(evaluated.stdout)
    assert scored["auc"] == pytest.approx(metrics["test"]["auc"], abs=1e-9)
    assert scored["logloss"] == pytest.approx(metrics["test"]["logloss"], abs=1e-6)


def test_seeds_give_a_mean_and_spread(prepared, tmp_path):
    result = run_ctr("train", "--data", str(prepared), "-o", str(tmp_path), "--model", "deepfm", "--epochs", "1",
                     "--batch-size", "128", "--seeds", "0,1")
    assert result.returncode == 0, result.stderr
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["seeds"] == [0, 1] and summary["test"]["auc"]["n"] == 2
    assert (tmp_path / "seed-1" / "model.pt").exists()


def test_a_missing_data_folder_is_one_line(tmp_path):
    result = run_ctr("train", "--data", str(tmp_path / "nope"), "-o", str(tmp_path / "o"))
    assert result.returncode == 1 and result.stderr.strip().startswith("error: ")
    assert len(result.stderr.strip().splitlines()) == 1



def test_training_and_loading_a_run_flush_denormals(prepared, tmp_path):
    """Denormal weights made ML-1M epochs ~25x slower (bench/ctr_denormals.py): train and load_run flush them."""
    import torch

    from ctr.runs import load_run
    from ctr.train import train
    from ctr.train_config import CTRConfig

    def flushing() -> bool:
        return torch.tensor([1e-40]).item() == 0

    try:
        torch.set_flush_denormal(False)
        assert not flushing()
        train(CTRConfig(data=str(prepared), output=str(tmp_path / "run"), model="deepfm", epochs=1, batch_size=256,
                        max_train_samples=256, max_eval_samples=256))
        assert flushing()
        torch.set_flush_denormal(False)
        load_run(tmp_path / "run")
        assert flushing()
    finally:
        torch.set_flush_denormal(False)


def test_lora_on_the_top_layer_trains_saves_and_evaluates_the_same(prepared, tiny_student, tmp_path):
    """`ctr train --lora --lora-layers 1` end to end; `ctr eval` rebuilds the adapters where they were and
    reproduces the test AUC."""
    out = tmp_path / "lora"
    result = run_ctr("train", "--data", str(prepared), "-o", str(out), "--model", "msd", "--lora", "--student",
                     str(tiny_student), "--lora-layers", "1", "--lora-r", "4", "--epochs", "1", "--batch-size", "128",
                     "--embed-dim", "8", "--student-max-length", "16")
    assert result.returncode == 0, result.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert json.loads((out / "ctr_config.json").read_text())["lora_layers"] == 1
    evaluated = run_ctr("eval", "--model", str(out), "--split", "test")
    assert evaluated.returncode == 0, evaluated.stderr
    assert json.loads(evaluated.stdout)["auc"] == pytest.approx(metrics["test"]["auc"], abs=1e-9)
