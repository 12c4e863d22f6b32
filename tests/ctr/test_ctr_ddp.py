"""`ctr train` under `torchrun --nproc_per_node 2` (gloo, CPU) against the same run in one process.

Tolerances on test AUC (108 test rows, ~40 positives: one swapped pair moves AUC by ~4e-4):
- DIN, 0.005: `batch_size` is the global batch, so both ranks together train on the same
  samples per step as one process; only the float order of the gradient all-reduce differs.
- MSD, 0.15: each rank draws its own history masks, so training differs as a different
  masking seed does; on this set, reseeding the masking alone moves one process's test
  AUC over 0.59-0.70 (5 draws, std ~0.05), and 0.15 is about three of those std.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ctr import distributed as D
from ctr.train import evaluate_run, train
from ctr.train_config import CTRConfig
from ground.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
RUN_FILES = {"model.pt", "ctr_config.json", "features.json", "metrics.json", "predictions.parquet"}
FLAGS = {"batch_size": 64, "learning_rate": 0.01, "embed_dim": 8}


def torchrun(out: Path, data: Path, model: str, epochs: int, *extra: str) -> subprocess.CompletedProcess:
    """`ctr train` under torchrun with 2 CPU ranks."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--standalone",
           "-m", "ctr.cli", "train", "--data", str(data), "-o", str(out), "--model", model, "--epochs", str(epochs),
           "--batch-size", str(FLAGS["batch_size"]), "--lr", str(FLAGS["learning_rate"]),
           "--embed-dim", str(FLAGS["embed_dim"]), *extra]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def one_process(out: Path, data: Path, model: str, epochs: int, **extra) -> dict:
    return train(CTRConfig(data=str(data), output=str(out), model=model, epochs=epochs, **FLAGS, **extra))


def metrics_of(out: Path) -> dict:
    return json.loads((out / "metrics.json").read_text())


def assert_written_once(out: Path, result: subprocess.CompletedProcess, epochs_run: int) -> None:
    """The run's files and nothing else (no per-rank copies, no temporary files); each progress line once."""
    assert {p.name for p in out.iterdir()} == RUN_FILES
    lines = result.stdout.splitlines()
    assert [line.split(":")[0] for line in lines if line.startswith("epoch ")] == [
        f"epoch {e}" for e in range(1, epochs_run + 1)]
    assert sum(line.startswith("-> ") for line in lines) == 1


def test_din_under_torchrun_matches_one_process_and_writes_each_file_once(prepared, tmp_path):
    result = torchrun(tmp_path / "ddp", prepared, "din", 2)
    ddp = metrics_of(tmp_path / "ddp")
    assert ddp["world_size"] == 2
    assert_written_once(tmp_path / "ddp", result, ddp["epochs_run"])
    single = one_process(tmp_path / "one", prepared, "din", 2)
    assert single["world_size"] == 1
    assert ddp["test"]["auc"] == pytest.approx(single["test"]["auc"], abs=0.005)
    assert [h["train_loss"] for h in ddp["history"]] == pytest.approx(
        [h["train_loss"] for h in single["history"]], abs=1e-3)


@pytest.fixture(scope="module")
def msd_ddp(prepared, knowledge_dir, tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    out = tmp_path_factory.mktemp("msd") / "ddp"
    return out, torchrun(out, prepared, "msd", 3, "--knowledge", str(knowledge_dir))


def test_msd_under_torchrun_is_within_noise_and_eval_reproduces_it(msd_ddp, prepared, knowledge_dir, tmp_path):
    out, result = msd_ddp
    ddp = metrics_of(out)
    assert_written_once(out, result, ddp["epochs_run"])
    single = one_process(tmp_path / "one", prepared, "msd", 3, knowledge=str(knowledge_dir))
    assert ddp["test"]["auc"] == pytest.approx(single["test"]["auc"], abs=0.15)
    evaluated = evaluate_run(out)  # what `ctr eval` prints: the saved model needs no rank to score
    assert evaluated["auc"] == pytest.approx(ddp["test"]["auc"], abs=1e-9)
    assert evaluated["logloss"] == pytest.approx(ddp["test"]["logloss"], abs=1e-6)


def test_a_rerun_with_two_ranks_reproduces_the_metrics(msd_ddp, prepared, knowledge_dir, tmp_path):
    first = metrics_of(msd_ddp[0])
    torchrun(tmp_path / "again", prepared, "msd", 3, "--knowledge", str(knowledge_dir))
    again = metrics_of(tmp_path / "again")
    assert again["test"] == first["test"] and again["val"] == first["val"]
    assert [h["train_loss"] for h in again["history"]] == [h["train_loss"] for h in first["history"]]


def test_the_shards_of_a_global_batch_are_the_batch_one_process_trains_on():
    order = torch.randperm(10, generator=torch.Generator().manual_seed(0))
    shards = [D.shard(order, r, 2) for r in range(2)]
    assert len(shards[0]) == len(shards[1]) == 5  # same number of steps on every rank
    for k in range(0, 5, 2):  # global batch 4 = 2 per rank
        assert sorted(torch.cat([s[k : k + 2] for s in shards]).tolist()) == sorted(order[2 * k : 2 * k + 4].tolist())
    odd = [D.shard(order[:7], r, 2) for r in range(2)]  # 7 rows: one is wrapped so both ranks take 4
    assert len(odd[0]) == len(odd[1]) == 4 and set(torch.cat(odd).tolist()) == set(order[:7].tolist())


def test_a_rank_other_than_0_writes_and_prints_nothing(prepared, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(D, "is_main", lambda: False)  # as on rank 1; the gathers stay one-process no-ops
    metrics = one_process(tmp_path / "run", prepared, "deepfm", 1)
    assert metrics["test"]["auc"] is not None
    assert not (tmp_path / "run").exists() and "epoch" not in capsys.readouterr().out


def test_what_ddp_does_not_handle_is_refused_in_one_line(monkeypatch, tmp_path):
    monkeypatch.setenv("WORLD_SIZE", "2")  # as under a launcher; refused before any rendezvous
    with pytest.raises(ConfigError, match="--lora trains in one process only"):
        train(CTRConfig(data=str(tmp_path), output=str(tmp_path / "o"), model="msd", lora=True))
    with pytest.raises(ConfigError, match="batch_size 65 is the global batch and must split evenly over 2 ranks"):
        train(CTRConfig(data=str(tmp_path), output=str(tmp_path / "o"), batch_size=65))
