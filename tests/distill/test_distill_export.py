"""Student generation, export (LoRA merged) and embedding tables, on a tiny random Llama."""

import json

import pytest
import torch
from distill_samples import SAMPLE_ITEMS, SAMPLE_USERS, CannedStudent, knowledge_row, read_json
from typer.testing import CliRunner

from distill.cli import app
from distill.embed import EmbedConfig, embed_tables
from ground.vectors import mean_pool, read_table
from distill.export import export_model, is_adapter
from distill.generate import generate_student
from distill.student_config import STUDENT_REPETITION_PENALTY, StudentConfig
from kgen.inputs import item_input, user_input
from kgen.parse import format_answer
from kgen.prompting import build_messages
from ground.errors import RecordError
from ground.records import read_records
from ground.files import write_jsonl


@pytest.fixture
def adapter_dir(tiny_model, tmp_path):
    """A LoRA adapter on the tiny model with non-zero B matrices, so merging really changes the weights."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base = AutoModelForCausalLM.from_pretrained(tiny_model)
    model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"]))
    torch.manual_seed(1)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.5)
    folder = tmp_path / "adapter"
    model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(tiny_model).save_pretrained(folder)
    return folder


@pytest.fixture
def inputs(tmp_path):
    items, users = tmp_path / "items.jsonl", tmp_path / "users.jsonl"
    write_jsonl(items, SAMPLE_ITEMS)
    write_jsonl(users, SAMPLE_USERS)
    return items, users


def test_export_merges_the_adapter_into_a_plain_model(adapter_dir, tiny_model, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    out = tmp_path / "export"
    config = export_model(adapter_dir, out)
    assert config["merged_adapter"] is True and not is_adapter(out)
    merged = AutoModelForCausalLM.from_pretrained(out)
    base = AutoModelForCausalLM.from_pretrained(tiny_model)
    with_adapter = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model), adapter_dir)
    ids = torch.tensor([[1, 50, 300, 2000, 7]])
    with torch.no_grad():
        want, got, plain = with_adapter(ids).logits, merged(ids).logits, base(ids).logits
    assert torch.allclose(got, want, atol=1e-4)  # merged = base + adapter
    assert not torch.allclose(got, plain, atol=1e-3)  # and the adapter did change something
    assert (out / "tokenizer.json").exists() and read_json(out / "export_config.json")["parameters"] > 0


def test_embed_writes_one_vector_per_id_from_mean_pooled_hidden_states(tiny_model, inputs, tmp_path):
    from transformers import AutoModel, AutoTokenizer

    items, users = inputs
    summary = embed_tables(EmbedConfig(model=str(tiny_model), items=items, output=tmp_path / "emb", users=users, batch_size=2))
    item_ids, item_vecs = read_table(tmp_path / "emb" / "item_embeddings.parquet")
    user_ids, user_vecs = read_table(tmp_path / "emb" / "user_embeddings.parquet")
    assert item_ids == ["85123A", "22423", "84879"] and item_vecs.shape == (3, 32) and item_vecs.dtype == "float32"
    assert user_ids == ["u12347", "u12348"] and user_vecs.shape == (2, 32)
    assert summary["dim"] == 32 and summary["counts"] == {"items": 3, "users": 2}
    assert read_json(tmp_path / "emb" / "embed_config.json")["pooling"] == "mean"
    # A user's vector is the mean over their rendered history text, computed alone (no padding involved).
    tok, model = AutoTokenizer.from_pretrained(tiny_model), AutoModel.from_pretrained(tiny_model)
    by_id = {i["item_id"]: i for i in SAMPLE_ITEMS}
    enc = tok([user_input(SAMPLE_USERS[0], by_id)], return_tensors="pt")
    with torch.no_grad():
        alone = mean_pool(model(**enc).last_hidden_state, enc["attention_mask"])[0].numpy()
    assert abs(user_vecs[0] - alone).max() < 1e-4


def test_embed_accepts_an_adapter_folder_and_refuses_duplicate_ids(adapter_dir, inputs, tmp_path):
    items, _ = inputs
    embed_tables(EmbedConfig(model=str(adapter_dir), items=items, output=tmp_path / "emb"))
    assert read_table(tmp_path / "emb" / "item_embeddings.parquet")[1].shape == (3, 32)
    assert not (tmp_path / "emb" / "user_embeddings.parquet").exists()
    dup = tmp_path / "dup.jsonl"
    write_jsonl(dup, [*SAMPLE_ITEMS, SAMPLE_ITEMS[0]])
    with pytest.raises(RecordError, match="duplicate id '85123A'"):
        embed_tables(EmbedConfig(model=str(adapter_dir), items=dup, output=tmp_path / "emb2"))


def test_text_generate_uses_the_short_student_prompt_and_writes_knowledge_records(inputs, tmp_path):
    items, users = inputs
    row = knowledge_row("85123A")
    student = CannedStudent(format_answer(row["explicit"], row["implicit"], row["key_phrases"]))
    out = tmp_path / "student_users.jsonl"
    info = generate_student(StudentConfig(model="runs/x", level="user", input=users, output=out, items=items,
                                          answer_format="text"),
                            student=student)
    by_id = {i["item_id"]: i for i in SAMPLE_ITEMS}
    assert student.prompts == [build_messages("student_user", user_input(u, by_id)) for u in SAMPLE_USERS]
    assert student.schemas == [None, None]
    assert "repetition_penalty" not in info["config"]["settings"]  # off for text answers
    records = read_records(out, "knowledge")
    assert [r["id"] for r in records] == ["u12347", "u12348"]
    assert all(r["template"] == "student_user" and r["reference_id"] is None for r in records)
    assert records[0]["key_phrases"] == row["key_phrases"] and records[0]["status"] == "ok"
    assert info["metrics"]["generated"] == 2 and read_json(tmp_path / "student_users.run.json")["metrics"]["generated"] == 2


def test_json_generate_is_the_default_and_holds_explicit_values_to_the_input_spans(inputs, tmp_path):
    from kgen.answer_schema import format_json_answer, input_spans, max_answer_tokens

    items, _ = inputs
    row = knowledge_row("85123A")
    student = CannedStudent(format_json_answer(row["explicit"], row["implicit"]))
    out = tmp_path / "student_items.jsonl"
    info = generate_student(StudentConfig(model="runs/x", level="item", input=items, output=out), student=student)
    assert student.prompts == [build_messages("student_item_json", item_input(i)) for i in SAMPLE_ITEMS]
    for item, schema in zip(SAMPLE_ITEMS, student.schemas):  # each request carries the spans of its own input
        assert schema["properties"]["explicit"]["items"]["properties"]["value"]["enum"] == input_spans([item_input(item)])
    settings = info["config"]["settings"]
    assert settings["answer_format"] == "json" and settings["max_new_tokens"] == max_answer_tokens()
    assert settings["repetition_penalty"] == STUDENT_REPETITION_PENALTY
    records = read_records(out, "knowledge")
    assert all(r["template"] == "student_item_json" and r["status"] == "ok" for r in records)
    assert records[0]["key_phrases"][:3] == ["White", "T-Light Holder", "Hanging Heart"]


def test_generate_selects_ids_and_limits(inputs, tmp_path):
    items, _ = inputs
    ids = tmp_path / "ids.txt"
    ids.write_text("# wanted\n84879\n85123A\nnope\n")
    student = CannedStudent("Key Features: x")
    info = generate_student(StudentConfig(model="m", level="item", input=items, output=tmp_path / "s.jsonl", ids=ids,
                                          limit=1), student=student)
    assert [r["id"] for r in read_records(tmp_path / "s.jsonl", "knowledge")] == ["85123A"]  # input order, then limit
    assert info["metrics"]["missing_ids"] == ["nope"]
    assert student.prompts == [build_messages("student_item_json", item_input(SAMPLE_ITEMS[0]))]


def test_generate_with_a_real_tiny_adapter_is_resumable(adapter_dir, inputs, tmp_path):
    items, _ = inputs
    out = tmp_path / "s.jsonl"
    config = StudentConfig(model=str(adapter_dir), level="item", input=items, output=out, limit=2, batch_size=2,
                           max_new_tokens=6)
    first = generate_student(config)["metrics"]
    records = read_records(out, "knowledge")
    assert first["generated"] == 2 and len(records) == 2
    assert all(r["model"].startswith(f"transformers:{adapter_dir}@") for r in records)
    assert all(r["usage"]["completion_tokens"] <= 6 for r in records)
    again = generate_student(config)["metrics"]
    assert again["skipped_done"] == 2 and again["generated"] == 0


def test_cli_export_and_embed_and_one_line_errors(adapter_dir, inputs, tmp_path):
    items, users = inputs
    runner = CliRunner()
    out = tmp_path / "export"
    result = runner.invoke(app, ["export", "--model", str(adapter_dir), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert json.loads((out / "export_config.json").read_text())["merged_adapter"] is True
    result = runner.invoke(app, ["embed", "--model", str(out), "--items", str(items), "--users", str(users), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert (out / "item_embeddings.parquet").exists() and (out / "export_config.json").exists()
    result = runner.invoke(app, ["export", "--model", str(tmp_path / "nothing"), "-o", str(tmp_path / "e2")])
    assert result.exit_code == 1 and result.stderr.strip() == f"error: {tmp_path / 'nothing'}: no such model folder"
    result = runner.invoke(app, ["generate", "--model", "m", "--level", "shop", "-i", str(items), "-o", str(tmp_path / "g.jsonl")])
    assert result.exit_code == 1 and result.stderr.strip() == "error: level must be item or user, got 'shop'"


def test_cli_generate_on_a_folder_that_holds_no_model_is_one_line_and_writes_nothing(inputs, tmp_path):
    items, _ = inputs
    unrelated = tmp_path / "photos"
    unrelated.mkdir()
    (unrelated / "cat.jpg").write_bytes(b"\xff\xd8")
    out = tmp_path / "student.jsonl"
    result = CliRunner().invoke(app, ["generate", "-m", str(unrelated), "-i", str(items), "-o", str(out)])
    assert result.exit_code == 1
    assert result.stderr.strip() == (f"error: {unrelated}: not a model folder (no config.json or adapter_config.json); "
                                     "give the output of `distill train` or `distill export`")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["photos", items.name, *[p.name for p in inputs[1:]]])
