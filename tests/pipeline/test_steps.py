"""pipeline.steps: a step runs once and is skipped while its output, config and inputs stay; the CTR end of the
chain (prepare, vectors, DIN and MSD-DIN) on the bundled sample with a tiny student."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ctr.raw import PrepareConfig
from ctr.train_config import CTRConfig
from distill.embed import EmbedConfig
from ground.errors import RecordError
from kgen.generate import GenerateConfig
from pipeline import steps
from pipeline.demo import CTR_ROWS, format_comparison

ROOT = Path(__file__).resolve().parents[2]


def counting_step(tmp_path: Path, calls: list, config: dict, inputs: list[Path]) -> dict:
    output = tmp_path / "out.jsonl"

    def work() -> dict:
        calls.append(config)
        output.write_text("done\n")
        return {"n": len(calls)}

    return steps.resumable("count", output, config, inputs, work)


def test_a_step_is_skipped_only_while_output_config_and_inputs_stay(tmp_path):
    source = tmp_path / "in.jsonl"
    source.write_text("a\n")
    calls: list = []
    assert counting_step(tmp_path, calls, {"k": 1, "path": tmp_path}, [source]) == {"n": 1}
    assert counting_step(tmp_path, calls, {"k": 1, "path": tmp_path}, [source]) == {"n": 1}  # skipped: recorded result
    assert len(calls) == 1
    assert counting_step(tmp_path, calls, {"k": 2, "path": tmp_path}, [source]) == {"n": 2}  # another config
    source.write_text("a\n")  # rewritten, same content: still done
    assert counting_step(tmp_path, calls, {"k": 2, "path": tmp_path}, [source]) == {"n": 2}
    source.write_text("b\n")  # another content
    assert counting_step(tmp_path, calls, {"k": 2, "path": tmp_path}, [source]) == {"n": 3}
    (tmp_path / "out.jsonl").unlink()  # the output is gone
    assert counting_step(tmp_path, calls, {"k": 2, "path": tmp_path}, [source]) == {"n": 4}
    record = json.loads((tmp_path / "out.jsonl.step.json").read_text())
    assert record["step"] == "count" and record["config"] == {"k": 2, "path": str(tmp_path)}
    assert record["result"] == {"n": 4} and record["seconds"] >= 0


def test_a_step_runs_again_when_a_step_before_it_ran_again(tmp_path):
    upstream = tmp_path / "up.jsonl"
    up_calls, down_calls = [], []

    def up() -> dict:
        up_calls.append(1)
        upstream.write_text("same content every time\n")
        return {}

    def down() -> dict:
        down_calls.append(1)
        (tmp_path / "down.jsonl").write_text("x\n")
        return {}

    for k in (1, 1, 2):
        steps.resumable("up", upstream, {"k": k}, [], up)
        steps.resumable("down", tmp_path / "down.jsonl", {}, [upstream], down)
    assert len(up_calls) == 2 and len(down_calls) == 2  # the upstream's record, not its bytes, says it was rebuilt


def test_a_torn_step_record_is_a_one_line_error(tmp_path):
    (tmp_path / "out.jsonl").write_text("done\n")
    (tmp_path / "out.jsonl.step.json").write_text('{"step": "count", "conf')
    with pytest.raises(RecordError, match=r"out\.jsonl\.step\.json: not a step record"):
        counting_step(tmp_path, [], {}, [])


def test_teacher_settings_change_only_what_is_asked():
    default = steps.default_of(GenerateConfig, "settings")
    assert steps.teacher_settings(seed=3) == type(default)(**{**default.to_dict(), "seed": 3})
    text = steps.teacher_settings(answer_format="text", seed=0)
    assert text.answer_format == "text" and text.max_new_tokens < default.max_new_tokens


def test_the_ctr_end_of_the_chain_runs_once_and_resumes(tiny_student, tmp_path, monkeypatch):
    prepared, knowledge = tmp_path / "prepared", tmp_path / "knowledge"
    card = steps.prepare_ctr(PrepareConfig(dataset="sample", raw=ROOT / "data" / "sample", output=prepared))
    embed = EmbedConfig(model=str(tiny_student), items=prepared / "items.jsonl", output=knowledge, max_length=16)
    summary = steps.vectors(embed, user_means=prepared / "users.jsonl")
    n_items = len((prepared / "items.jsonl").read_text().splitlines())
    assert summary["counts"] == {"items": n_items} and 0 < summary["user_means"] <= 300
    assert (knowledge / "user_embeddings.parquet").exists()
    results = {name: steps.ctr(CTRConfig(data=str(prepared), knowledge=str(knowledge), output=str(tmp_path / name),
                                         model=model, epochs=1, embed_dim=4, max_train_samples=256,
                                         max_eval_samples=256), [0])
               for name, (model, _) in CTR_ROWS.items() if name in ("DIN", "MSD-DIN student")}
    assert "MSD-DIN student" in format_comparison(results) and results["DIN"]["test"]["auc"]["n"] == 1

    def never(*args, **kwargs):
        raise AssertionError("a finished step ran again")

    monkeypatch.setattr(steps, "prepare", never)
    monkeypatch.setattr(steps, "embed_tables", never)
    monkeypatch.setattr(steps, "train_seeds", never)
    plain = lambda result: json.loads(json.dumps(result))  # a skipped step returns its result as recorded in JSON
    again = steps.prepare_ctr(PrepareConfig(dataset="sample", raw=ROOT / "data" / "sample", output=prepared))
    assert again == plain(card)
    assert steps.vectors(embed, user_means=prepared / "users.jsonl") == plain(summary)
    again = steps.ctr(CTRConfig(data=str(prepared), knowledge=str(knowledge), output=str(tmp_path / "DIN"),
                                model="din", epochs=1, embed_dim=4, max_train_samples=256, max_eval_samples=256), [0])
    assert again == plain(results["DIN"])
