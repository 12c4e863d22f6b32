"""ELEC: the two distillation losses, where their gradients go, a vanilla forward without knowledge, train/eval."""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from ctr.data import batches
from ctr.build import build_model
from ctr.elec import ELEC, representation_loss, score_loss
from ctr.runs import load_vanilla
from ctr.train import evaluate_run, optimizer
from ctr.train_config import CTRConfig

ROOT = Path(__file__).resolve().parents[2]


def elec_config(data, knowledge, **overrides) -> CTRConfig:
    values = dict(data=str(data.folder), output="x", model="elec", knowledge=str(knowledge), embed_dim=8,
                  hidden=[16, 8], attention_hidden=[8], learning_rate=1e-2)
    return CTRConfig(**{**values, **overrides})


def build_elec(tensors, knowledge_dir, **overrides) -> ELEC:
    data, features, catalogue, _ = tensors
    torch.manual_seed(0)
    return build_model(elec_config(data, knowledge_dir, **overrides), features, catalogue, data)


class Untouchable(nn.Module):
    """Stands in for the knowledge vectors and the adaptors: reading a vector or calling it fails the test."""

    def touched(self, *args):
        raise AssertionError("the vanilla network touched the knowledge")

    forward = items = users = touched


def test_score_loss_is_zero_for_equal_logits_and_positive_otherwise():
    logits = torch.tensor([-3.0, 0.0, 0.5, 8.0])
    assert score_loss(logits.clone(), logits, temperature=2.0).item() == pytest.approx(0.0, abs=1e-7)
    assert score_loss(logits + 0.3, logits).item() > 1e-3
    assert score_loss(-logits, logits, temperature=2.0).item() > score_loss(logits + 0.3, logits, 2.0).item()


def test_representation_loss_is_zero_for_equal_representations_and_positive_otherwise():
    hidden = torch.randn(5, 4)
    assert representation_loss(hidden.clone(), hidden).item() == 0.0
    assert representation_loss(hidden + 0.1, hidden).item() == pytest.approx(0.01, rel=1e-4)
    projection = torch.nn.Linear(3, 4)
    assert representation_loss(torch.randn(5, 3), hidden, projection).item() > 0


class Twin(nn.Module):
    """A copy of the gain network in the vanilla seat: same outputs, same last hidden layer."""

    def __init__(self, gain: nn.Module):
        super().__init__()
        self.copy = copy.deepcopy(gain)
        self.dnn = self.copy.backbone.dnn

    def forward(self, batch):
        return self.copy(batch)


def test_the_distillation_terms_vanish_when_the_vanilla_network_is_the_gain_network(tensors, knowledge_dir):
    gain = build_elec(tensors, knowledge_dir).gain
    model = ELEC(gain=gain, vanilla=Twin(gain), score_weight=1.0, repr_weight=1.0, temperature=2.0).eval()
    batch = next(batches(tensors[3], 64))
    with torch.no_grad():
        terms = model.losses(batch)
        assert terms["score"].item() == pytest.approx(0.0, abs=1e-7) and terms["repr"].item() == 0.0
        model.vanilla.dnn[0].weight.mul_(1.5)  # the twin drifts: both terms see it
        terms = model.losses(batch)
    assert terms["score"].item() > 1e-6 and terms["repr"].item() > 1e-6


def test_distillation_gradients_reach_only_the_vanilla_network(tensors, knowledge_dir):
    model = build_elec(tensors, knowledge_dir, vanilla_hidden=[16, 4]).train()  # narrower: a projection is used
    terms = model.losses(next(batches(tensors[3], 64)))
    (terms["score"] + terms["repr"]).backward()
    gain = [p.grad for p in model.gain.parameters() if p.requires_grad]
    assert gain and all(g is None or g.abs().sum() == 0 for g in gain)
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.vanilla.parameters())
    assert model.projection.weight.grad.abs().sum() > 0


def test_the_gain_network_learns_from_its_own_bce(tensors, knowledge_dir):
    model = build_elec(tensors, knowledge_dir).train()
    model.losses(next(batches(tensors[3], 64)))["gain_bce"].backward()
    assert all(p.grad is None for p in model.vanilla.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.gain.item_adaptor.parameters())


def test_the_vanilla_forward_never_touches_the_knowledge(tensors, knowledge_dir):
    model = build_elec(tensors, knowledge_dir).eval()
    batch = next(batches(tensors[3], 64))
    with torch.no_grad():
        expected = model(batch)
        model.gain.vectors = Untouchable()
        model.gain.item_adaptor, model.gain.user_adaptor = Untouchable(), Untouchable()
        assert torch.equal(model(batch), expected)
        with pytest.raises(AssertionError, match="touched the knowledge"):
            model.gain(batch)  # the stand-in does fire when the knowledge is read


def test_one_training_step_lowers_the_loss(tensors, knowledge_dir):
    model = build_elec(tensors, knowledge_dir).train()
    opt = optimizer(model, elec_config(tensors[0], knowledge_dir))
    batch = next(batches(tensors[3], 128))
    before = model.losses(batch)["total"]
    opt.zero_grad()
    before.backward()
    opt.step()
    assert model.losses(batch)["total"].item() < before.item()


def test_config_checks_the_elec_fields():
    with pytest.raises(ValueError, match="needs --knowledge"):
        CTRConfig(data="d", output="o", model="elec")
    with pytest.raises(ValueError, match="distill_repr_weight"):
        CTRConfig(data="d", output="o", model="elec", knowledge="k", distill_repr_weight=-1)
    with pytest.raises(ValueError, match="distill_temperature"):
        CTRConfig(data="d", output="o", model="elec", knowledge="k", distill_temperature=0)
    with pytest.raises(ValueError, match="--lora is MSD's"):
        CTRConfig(data="d", output="o", model="elec", knowledge="k", lora=True)


def run_ctr(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ctr.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})


def test_train_elec_saves_the_vanilla_network_and_eval_reproduces_its_auc(prepared, knowledge_dir, tmp_path):
    out, knowledge = tmp_path / "run", shutil.copytree(knowledge_dir, tmp_path / "knowledge")
    result = run_ctr("train", "--data", str(prepared), "-o", str(out), "--model", "elec-deepfm", "--knowledge",
                     str(knowledge), "--epochs", "2", "--batch-size", "64", "--lr", "0.01", "--embed-dim", "8",
                     "--distill-repr-weight", "0.5")
    assert result.returncode == 0, result.stderr
    assert {"model.pt", "gain.pt", "ctr_config.json", "features.json", "metrics.json"} <= {p.name for p in out.iterdir()}
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["gain"]["test"]["auc"] is not None and metrics["served_params"] > 0
    assert json.loads((out / "ctr_config.json").read_text())["distill_repr_weight"] == 0.5
    assert not any(k.startswith(("gain.", "vanilla.")) for k in torch.load(out / "model.pt"))
    shutil.rmtree(knowledge)  # the served network needs no knowledge table
    # `ctr eval` is a print around evaluate_run (its CLI is tested in test_ctr_train.py): in process, one start less
    assert evaluate_run(out, split="test")["auc"] == pytest.approx(metrics["test"]["auc"], abs=1e-9)
    served, features = load_vanilla(out)  # a plain backbone: no knowledge tables, no adaptors
    assert type(served).__name__ == "DeepFM" and not hasattr(served, "vectors") and not served.training
    assert features.user_fields
