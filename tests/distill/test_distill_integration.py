"""The one test on the real bundled SmolLM2-135M: a short LoRA run, then generation with the adapter."""

import math

import pytest
from distill_samples import SAMPLE_ITEMS, many_rows

from distill.data import DataConfig, build_data
from distill.generate import generate_student
from distill.student_config import StudentConfig
from distill.train import train
from distill.train_config import TrainConfig
from kgen.answer_schema import input_spans
from ground.records import read_records
from ground.files import write_jsonl


@pytest.mark.integration
def test_lora_on_smollm2_trains_two_steps_and_generates(tmp_path):
    knowledge = tmp_path / "knowledge.jsonl"
    write_jsonl(knowledge, many_rows(4))
    build_data(DataConfig(knowledge=[knowledge], output=tmp_path / "sft", augment=(), val_fraction=0.0))
    run = tmp_path / "run"
    metrics = train(TrainConfig(data=str(tmp_path / "sft"), output=str(run), lora=True, max_steps=2,
                                learning_rate=2e-4, warmup_ratio=0.0, save_steps=2, batch_size=1))
    assert metrics["global_step"] == 2 and math.isfinite(metrics["train_loss"])
    assert (run / "adapter_model.safetensors").exists() and (run / "checkpoint-2").exists()
    items = tmp_path / "items.jsonl"
    write_jsonl(items, SAMPLE_ITEMS)
    out = tmp_path / "student.jsonl"
    info = generate_student(StudentConfig(model=str(run), level="item", input=items, output=out, limit=2, batch_size=2))
    records = read_records(out, "knowledge")
    assert info["metrics"]["generated"] == 2 and sorted(r["id"] for r in records) == ["22423", "85123A"]
    # The default structured answer: it always closes, and every explicit value is a span of its own input.
    assert all(r["status"] == "ok" and r["explicit"] for r in records), [r["raw"] for r in records]
    for r in records:
        assert all(a["value"] in input_spans([r["input"]]) for a in r["explicit"]), (r["input"], r["explicit"])
