"""`distill build-data`: examples, augmentation counts, the split by id, and what is written."""

from collections import defaultdict

import pytest
from distill_samples import many_rows, read_json
from typer.testing import CliRunner

from distill.cli import app
from distill.data import DataConfig, build_data, validation_keys
from kgen.parse import parse_answer
from kgen.prompting import build_messages
from ground.files import write_jsonl

SYNONYMS = "Gift\tPresent\nHome Decor\tInterior Decoration\nChristmas Decoration\tChristmas Ornament\nWhite\tIvory\n"


@pytest.fixture
def synonyms(tmp_path):
    path = tmp_path / "syn.tsv"
    path.write_text(SYNONYMS)
    return path


def load(folder):
    from datasets import load_from_disk

    return load_from_disk(str(folder))


def test_build_data_counts_and_splits_by_id(tmp_path, knowledge_file, synonyms):
    out = tmp_path / "sft"
    config = DataConfig(knowledge=[knowledge_file], output=out, augment=("shuffle", "dictionary"), shuffle_factor=2,
                        dictionary_factor=1, dictionary=synonyms, val_fraction=0.25, seed=0)
    stats = build_data(config)
    # 12 ok + 1 parse_error + 1 api_error; each ok record: 1 original + 2 distinct shuffles;
    # a synonym exists for 8 of them (85123A: Gift/Home Decor, 84879: Gift/Christmas Decoration; 22423: none).
    assert stats["source_records"] == 14 and stats["skipped_by_status"] == {"parse_error": 1, "api_error": 1}
    assert (stats["originals"], stats["produced_by_shuffle"], stats["produced_by_dictionary"]) == (12, 24, 8)
    data = load(out)
    assert len(data["train"]) + len(data["validation"]) == 44
    assert (len(data["train"]), len(data["validation"])) == (stats["train_examples"], stats["validation_examples"])
    split_of = defaultdict(set)
    for split in ("train", "validation"):
        for ex in data[split]:
            split_of[(ex["level"], ex["id"])].add(split)
    assert len(split_of) == 12 and all(len(s) == 1 for s in split_of.values())  # no id in both splits
    assert stats["validation_ids"] >= 1 and stats["train_ids"] + stats["validation_ids"] == 12
    assert read_json(out / "build_config.json")["augment"] == ["shuffle", "dictionary"]
    assert read_json(out / "stats.json") == stats


def test_text_examples_are_the_short_student_prompt_and_the_canonical_answer(tmp_path, knowledge_file, synonyms):
    out = tmp_path / "sft"
    build_data(DataConfig(knowledge=[knowledge_file], output=out, augment=("shuffle", "dictionary"), shuffle_factor=2,
                          dictionary_factor=1, dictionary=synonyms, val_fraction=0.25, seed=0, answer_format="text"))
    data = load(out)
    rows = {r["id"]: r for r in many_rows(12)}
    for ex in data["train"]:
        row = rows[ex["id"]]
        assert ex["prompt"] == build_messages("student_item", row["input"])
        answer = ex["completion"][0]
        assert answer["role"] == "assistant"
        parsed = parse_answer(answer["content"])
        assert parsed.status == "ok" and parsed.key_phrases_from == "key_features"
        if ex["source"] == "original":
            assert parsed.key_phrases == row["key_phrases"] and parsed.explicit == row["explicit"]
        if ex["source"] == "shuffle":
            assert sorted(parsed.key_phrases) == sorted(row["key_phrases"])
        if ex["source"] == "dictionary":
            assert parsed.explicit == row["explicit"] and parsed.key_phrases != row["key_phrases"]


def test_json_examples_are_the_student_json_prompt_and_the_answer_in_the_schema(tmp_path, knowledge_file, synonyms):
    import json

    from kgen.answer_schema import answer_schema

    out = tmp_path / "sft"
    stats = build_data(DataConfig(knowledge=[knowledge_file], output=out, augment=("shuffle", "dictionary"),
                                  shuffle_factor=2, dictionary_factor=1, dictionary=synonyms, val_fraction=0.25,
                                  seed=0))
    assert read_json(out / "build_config.json")["answer_format"] == "json"  # the default
    data = load(out)
    rows = {r["id"]: r for r in many_rows(12)}
    facts = lambda aspects: [(a["aspect"], a["value"]) for a in aspects]
    texts = defaultdict(set)
    for ex in [*data["train"], *data["validation"]]:
        row = rows[ex["id"]]
        assert ex["prompt"] == build_messages("student_item_json", row["input"])
        text = ex["completion"][0]["content"]
        texts[ex["id"]].add(text)
        answer = json.loads(text)
        jsonschema_validate(answer, answer_schema())
        parsed = parse_answer(text)
        assert parsed.status == "ok" and facts(parsed.explicit) == facts(answer["explicit"])
        if ex["source"] == "original":
            assert facts(answer["explicit"]) == facts(row["explicit"]) and facts(answer["implicit"]) == facts(row["implicit"])
        if ex["source"] == "shuffle":  # the same facts, another order
            assert sorted(facts(answer["explicit"])) == sorted(facts(row["explicit"]))
            assert sorted(facts(answer["implicit"])) == sorted(facts(row["implicit"]))
        if ex["source"] == "dictionary":  # explicit values copied from the name never change
            assert facts(answer["explicit"]) == facts(row["explicit"]) and facts(answer["implicit"]) != facts(row["implicit"])
    # every example of an id is a distinct completion: a key-phrase shuffle the JSON cannot show is not counted
    assert sum(len(t) for t in texts.values()) == stats["train_examples"] + stats["validation_examples"]


def test_json_examples_leave_out_the_facts_taken_out_as_leaked_from_the_example(tmp_path):
    import json

    row = many_rows(1)[0]
    row["key_phrases"] = [p for p in row["key_phrases"] if p != "Gift"]
    row["leaked_dropped"] = ["gift"]  # the teacher's one-shot example said "Gift" and the name does not
    knowledge = tmp_path / "k.jsonl"
    write_jsonl(knowledge, [row])
    build_data(DataConfig(knowledge=[knowledge], output=tmp_path / "sft", augment=(), val_fraction=0.0))
    (ex,) = load(tmp_path / "sft")["train"]
    answer = json.loads(ex["completion"][0]["content"])
    assert [a["value"] for a in answer["implicit"]] == ["Home Decor"]
    assert [a["value"] for a in answer["explicit"]] == ["White", "T-Light Holder", "Hanging Heart"]


def jsonschema_validate(answer: dict, schema: dict) -> None:
    """The schema's own rules, checked by hand (no jsonschema dependency): keys, list sizes, string lengths."""
    assert set(answer) == set(schema["required"])
    for key, rule in schema["properties"].items():
        assert rule["minItems"] <= len(answer[key]) <= rule["maxItems"], (key, answer[key])
        for fact in answer[key]:
            assert set(fact) == {"aspect", "value"}
            assert 1 <= len(fact["value"]) <= rule["items"]["properties"]["value"]["maxLength"]


def test_the_split_of_an_id_does_not_change_when_data_grows():
    few = [("item", f"i{n}") for n in range(200)]
    more = few + [("item", f"j{n}") for n in range(300)]
    val_few, val_more = validation_keys(few, 0.1, 0), validation_keys(more, 0.1, 0)
    assert val_few == {k for k in val_more if k in set(few)}
    assert 0.04 < len(val_more) / len(more) < 0.16
    assert validation_keys(few, 0.1, 1) != val_few  # the seed matters


def test_tiny_data_still_gets_one_validation_id_and_zero_fraction_none():
    assert len(validation_keys([("item", "a"), ("item", "b")], 0.01, 0)) == 1
    assert validation_keys([("item", "a"), ("item", "b")], 0.0, 0) == set()


def test_no_augmentation_and_no_validation(tmp_path, knowledge_file):
    out = tmp_path / "sft"
    stats = build_data(DataConfig(knowledge=[knowledge_file], output=out, augment=(), val_fraction=0.0))
    assert (stats["originals"], stats["produced_by_shuffle"], stats["produced_by_dictionary"]) == (12, 0, 0)
    data = load(out)
    assert len(data["train"]) == 12 and len(data["validation"]) == 0


def test_bad_config_and_no_usable_records(tmp_path):
    with pytest.raises(ValueError, match="unknown augmentation 'synonyms'"):
        DataConfig(knowledge=[tmp_path / "k.jsonl"], output=tmp_path / "sft", augment=("synonyms",))
    with pytest.raises(ValueError, match="val_fraction must be in \\[0, 1\\), got 1.5"):
        DataConfig(knowledge=[tmp_path / "k.jsonl"], output=tmp_path / "sft", val_fraction=1.5)
    bad = tmp_path / "k.jsonl"
    write_jsonl(bad, [{**many_rows(1)[0], "status": "truncated"}])
    with pytest.raises(ValueError, match="no usable knowledge records"):
        build_data(DataConfig(knowledge=[bad], output=tmp_path / "sft"))


def test_cli_build_data_and_its_one_line_errors(tmp_path, knowledge_file, synonyms):
    runner = CliRunner()
    out = tmp_path / "sft"
    result = runner.invoke(app, ["build-data", "-k", str(knowledge_file), "--augment", "shuffle",
                                 "--shuffle-factor", "1", "--dictionary", str(synonyms), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert read_json(out / "stats.json")["produced_by_shuffle"] == 12
    result = runner.invoke(app, ["build-data", "-k", str(tmp_path / "missing.jsonl"), "-o", str(out)])
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines() == [f"error: {tmp_path / 'missing.jsonl'}: no such file"]


# --- build-data never deletes what it did not make ---


def build_cli(knowledge_file, out, *extra):
    return CliRunner().invoke(app, ["build-data", "-k", str(knowledge_file), "--augment", "", "-o", str(out), *extra])


def one_line(result, text):
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {text}"), result.stderr


def test_build_data_refuses_a_folder_of_someone_elses_files(tmp_path, knowledge_file):
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "thesis.txt").write_text("draft")
    result = build_cli(knowledge_file, precious)
    one_line(result, f"{precious}: holds 'thesis.txt' and is not an earlier `distill build-data` output")
    assert [p.name for p in precious.iterdir()] == ["thesis.txt"] and (precious / "thesis.txt").read_text() == "draft"


def test_build_data_into_the_current_folder_is_refused(tmp_path, knowledge_file, monkeypatch):
    monkeypatch.chdir(tmp_path)
    before = sorted(p.name for p in tmp_path.iterdir())
    for out in (".", str(tmp_path), ".."):
        result = build_cli(knowledge_file, out)
        assert result.exit_code == 1 and "current folder or one above it" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == before and knowledge_file.exists()


def test_build_data_replaces_its_own_output_but_not_one_with_a_user_file(tmp_path, knowledge_file):
    out = tmp_path / "sft"
    out.mkdir()  # an empty folder is fine
    assert build_cli(knowledge_file, out).exit_code == 0
    assert build_cli(knowledge_file, out, "--val-fraction", "0").exit_code == 0  # an earlier output is replaced
    assert read_json(out / "build_config.json")["val_fraction"] == 0
    (out / "notes.md").write_text("mine")
    one_line(build_cli(knowledge_file, out), f"{out}: holds 'notes.md'")
    assert (out / "notes.md").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["knowledge.jsonl", "sft"]  # no temp folder left


def test_a_failed_build_leaves_the_old_output_and_no_temp_folder(tmp_path, knowledge_file, monkeypatch):
    import distill.data

    out = tmp_path / "sft"
    build_data(DataConfig(knowledge=[knowledge_file], output=out, augment=(), val_fraction=0.0))
    before = sorted(str(p.relative_to(out)) for p in out.rglob("*"))

    def disk_full(splits, folder):
        (folder / "half").write_text("x")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(distill.data, "save_splits", disk_full)
    with pytest.raises(OSError):
        build_data(DataConfig(knowledge=[knowledge_file], output=out, augment=(), val_fraction=0.5))
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*")) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["knowledge.jsonl", "sft"]
