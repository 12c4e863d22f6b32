"""`distill embed --source knowledge`: knowledge records rendered as text, fallbacks counted, a sentence encoder
(the bundled MiniLM) over them (issue 24, KAR's route)."""

import doctest
import json

import numpy as np
import pytest
from distill_samples import knowledge_row, read_json
from typer.testing import CliRunner

import distill.knowledge_text
from distill.cli import app
from distill.embed import EmbedConfig, embed_tables
from distill.knowledge_text import knowledge_texts, render_knowledge
from ground.errors import ConfigError, RecordError
from ground.files import write_jsonl
from ground.vectors import read_table

CAKESTAND = knowledge_row("22423")  # explicit Type/Size, implicit Occasion/Style, five key phrases
INPUT = "REGENCY CAKESTAND 3 TIER"


def test_default_format_is_explicit_aspect_values_then_implicit_values_then_the_input():
    assert render_knowledge(INPUT, CAKESTAND) == (
        "Type: Cakestand; Size: 3 Tier\nAfternoon Tea, Parties; Vintage\nREGENCY CAKESTAND 3 TIER")
    assert render_knowledge(INPUT, CAKESTAND, "name+explicit+implicit") == render_knowledge(INPUT, CAKESTAND)


def test_phrases_format_is_the_key_phrases_then_the_input():
    assert render_knowledge(INPUT, CAKESTAND, "phrases") == (
        "Cakestand, 3 Tier, Afternoon Tea, Vintage, Regency\nREGENCY CAKESTAND 3 TIER")


def test_implicit_format_is_the_implicit_values_only_then_the_input():
    assert render_knowledge(INPUT, CAKESTAND, "implicit") == "Afternoon Tea, Parties; Vintage\nREGENCY CAKESTAND 3 TIER"


def test_empty_parts_add_no_line_and_the_docstring_example_holds():
    empty = {**CAKESTAND, "explicit": [{"aspect": "Type", "value": " "}], "implicit": [], "key_phrases": []}
    for fmt in ("name+explicit+implicit", "phrases", "implicit"):
        assert render_knowledge(INPUT, empty, fmt) == INPUT
    with pytest.raises(ConfigError, match="knowledge_format must be one of"):
        render_knowledge(INPUT, CAKESTAND, "everything")
    assert doctest.testmod(distill.knowledge_text).failed == 0


def _row(rid: str, like: str = "22423", status: str = "ok", level: str = "item") -> dict:
    return {**knowledge_row(like, level=level, status=status), "id": rid}


def test_each_id_gets_its_knowledge_or_its_input_and_the_fallbacks_are_counted():
    inputs = {"a": "A", "b": "B", "c": "C", "d": "D"}
    rows = [(1, _row("a")), (2, _row("b", status="parse_error")), (3, _row("c", status="api_error"))]
    texts, counts = knowledge_texts(inputs, rows, "implicit", "item", "k.jsonl")
    assert counts == {"from_knowledge": 1, "fallback_no_record": 1, "fallback_failed": 2, "records_unused": 0}
    assert texts == {"a": "Afternoon Tea, Parties; Vintage\nA", "b": "B", "c": "C", "d": "D"}
    assert list(texts) == list(inputs)  # the table keeps the order of the item records


def test_a_catalogues_records_for_items_not_embedded_are_skipped_and_counted():
    rows = [(1, _row("a")), (2, _row("zz")), (3, _row("yy", status="parse_error"))]
    texts, counts = knowledge_texts({"a": "A", "b": "B"}, rows, "implicit", "item", "k.jsonl")
    assert texts == {"a": "Afternoon Tea, Parties; Vintage\nA", "b": "B"}
    assert counts == {"from_knowledge": 1, "fallback_no_record": 1, "fallback_failed": 0, "records_unused": 2}


def test_a_file_with_no_record_for_an_embedded_id_or_a_record_of_the_other_level_is_a_one_line_error():
    inputs = {"a": "A"}
    with pytest.raises(RecordError, match=r"^k\.jsonl:1: id 'zz' is not among the item records embedded, nor is any "
                                          r"other of the file's 2 records' \(the knowledge of another catalogue\?\)$"):
        knowledge_texts(inputs, [(1, _row("zz")), (2, _row("yy"))], "phrases", "item", "k.jsonl")
    with pytest.raises(RecordError, match=r"^u\.jsonl:1: a item record in the user knowledge file$"):
        knowledge_texts(inputs, [(1, _row("a"))], "phrases", "user", "u.jsonl")
    assert knowledge_texts(inputs, [], "phrases", "item", "k.jsonl")[1]["fallback_no_record"] == 1  # no file: inputs


@pytest.fixture
def catalogue(tmp_path):
    """Three items, two of them with the same name; knowledge: a and b different, c failed; one user's knowledge."""
    items, users = tmp_path / "items.jsonl", tmp_path / "users.jsonl"
    write_jsonl(items, [{"item_id": "a", "name": INPUT}, {"item_id": "b", "name": INPUT},
                        {"item_id": "c", "name": "WHITE HANGING HEART T-LIGHT HOLDER"}])
    write_jsonl(users, [{"user_id": "u1", "history": ["a", "c"]}, {"user_id": "u2", "history": ["b"]}])
    knowledge, user_knowledge = tmp_path / "knowledge.jsonl", tmp_path / "user_knowledge.jsonl"
    write_jsonl(knowledge, [_row("a"), _row("b", like="84879"), _row("c", like="85123A", status="parse_error")])
    write_jsonl(user_knowledge, [_row("u1", level="user")])
    return {"items": items, "users": users, "knowledge": knowledge, "user_knowledge": user_knowledge}


def test_bad_id_in_the_knowledge_file_stops_before_any_model_loads(catalogue, tmp_path):
    write_jsonl(catalogue["knowledge"], [_row("nope"), _row("other")])
    config = EmbedConfig(items=catalogue["items"], output=tmp_path / "emb", source="knowledge",
                         knowledge=catalogue["knowledge"], encoder="/no/such/model")
    with pytest.raises(RecordError, match=r"knowledge\.jsonl:1: id 'nope' is not among the item records"):
        embed_tables(config)
    assert not (tmp_path / "emb").exists()


def test_settings_that_cannot_work_are_refused(catalogue, tmp_path):
    base = {"items": catalogue["items"], "output": tmp_path / "emb"}
    with pytest.raises(ConfigError, match="needs --knowledge"):
        EmbedConfig(**base, source="knowledge", encoder="all-minilm-l6-v2")
    with pytest.raises(ConfigError, match="model is required with --encoder student"):
        EmbedConfig(**base)
    with pytest.raises(ConfigError, match="engine ray encodes with the student only"):
        EmbedConfig(**base, encoder="all-minilm-l6-v2", engine="ray")
    with pytest.raises(ConfigError, match="read with --source knowledge only"):
        EmbedConfig(**base, encoder="all-minilm-l6-v2", knowledge=catalogue["knowledge"])
    with pytest.raises(ConfigError, match="source must be one of"):
        EmbedConfig(**base, encoder="all-minilm-l6-v2", source="kar")


def test_cli_knowledge_route_with_the_bundled_minilm_encodes_the_knowledge_text(catalogue, tmp_path):
    out = tmp_path / "kar"
    result = CliRunner().invoke(app, [
        "embed", "--source", "knowledge", "--encoder", "all-minilm-l6-v2", "--items", str(catalogue["items"]),
        "--users", str(catalogue["users"]), "--knowledge", str(catalogue["knowledge"]),
        "--user-knowledge", str(catalogue["user_knowledge"]), "--batch-size", "2", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "items: from_knowledge 2, fallback_no_record 0, fallback_failed 1, records_unused 0" in result.output
    assert "users: from_knowledge 1, fallback_no_record 1, fallback_failed 0, records_unused 0" in result.output
    ids, kar = read_table(out / "item_embeddings.parquet")
    assert ids == ["a", "b", "c"] and kar.shape == (3, 384) and kar.dtype == np.float32
    assert read_table(out / "user_embeddings.parquet")[1].shape == (2, 384)
    saved = read_json(out / "embed_config.json")
    assert (saved["source"], saved["encoder"], saved["knowledge_format"], saved["dim"]) == (
        "knowledge", "all-minilm-l6-v2", "name+explicit+implicit", 384)
    assert saved["texts"]["items"] == {"from_knowledge": 2, "fallback_no_record": 0, "fallback_failed": 1,
                                       "records_unused": 0}
    assert saved["encoder_kind"] == "sentence-transformers" and saved["pooling"] == "mean"
    assert saved["normalized"] is False and not np.allclose(np.linalg.norm(kar, axis=1), 1, atol=1e-3)

    # The raw-text control: same encoder over the inputs alone. a and b share their input, so only their
    # knowledge can tell them apart; c's record failed, so its knowledge-route vector is its input vector.
    raw = embed_tables(EmbedConfig(items=catalogue["items"], output=tmp_path / "raw", encoder="all-minilm-l6-v2"))
    control = read_table(tmp_path / "raw" / "item_embeddings.parquet")[1]
    assert raw["texts"] == {} and np.allclose(control[0], control[1], atol=1e-6)
    assert np.abs(kar[0] - kar[1]).max() > 1e-2 and np.abs(kar[0] - control[0]).max() > 1e-2
    assert np.allclose(kar[2], control[2], atol=1e-5)


def test_normalize_gives_unit_vectors_in_the_same_directions(catalogue, tmp_path):
    common = {"items": catalogue["items"], "encoder": "all-minilm-l6-v2"}
    raw = embed_tables(EmbedConfig(**common, output=tmp_path / "raw"))
    unit = embed_tables(EmbedConfig(**common, output=tmp_path / "unit", normalize=True))
    a = read_table(tmp_path / "raw" / "item_embeddings.parquet")[1]
    b = read_table(tmp_path / "unit" / "item_embeddings.parquet")[1]
    assert (raw["normalized"], unit["normalized"]) == (False, True)
    assert np.allclose(np.linalg.norm(b, axis=1), 1, atol=1e-5)
    assert np.linalg.norm(a, axis=1).min() > 1.5  # MiniLM's raw mean-pooled vectors: the Normalize layer left out
    assert np.allclose(a / np.linalg.norm(a, axis=1, keepdims=True), b, atol=1e-5)


def test_the_ray_engine_gets_the_knowledge_texts_and_the_settings(catalogue, tmp_path, monkeypatch):
    import distill.embed_ray

    calls = []

    def fake_ray(model, texts, batch_size, max_length, desc, workers=None, layer=-1, pooling="mean"):
        calls.append((model, list(texts), batch_size, max_length, desc, workers, layer, pooling))
        return np.ones((len(texts), 4), np.float32)

    monkeypatch.setattr(distill.embed_ray, "encode_texts_ray", fake_ray)
    summary = embed_tables(EmbedConfig(model="m", items=catalogue["items"], output=tmp_path / "emb", engine="ray",
                                       workers=2, batch_size=3, max_length=9, source="knowledge",
                                       knowledge=catalogue["knowledge"], knowledge_format="phrases",
                                       users=catalogue["users"], layer=5, pooling="last"))
    assert [c[2:] for c in calls] == [(3, 9, "items", 2, 5, "last"), (3, 9, "users", 2, 5, "last")]
    assert calls[0][0] == "m"
    # users given without --user-knowledge: every user keeps its input text, and is counted so
    assert summary["texts"]["users"] == {"from_knowledge": 0, "fallback_no_record": 2, "fallback_failed": 0,
                                            "records_unused": 0}
    assert calls[0][1][0] == "Cakestand, 3 Tier, Afternoon Tea, Vintage, Regency\n" + INPUT
    assert calls[0][1][2] == "WHITE HANGING HEART T-LIGHT HOLDER"  # c: failed record, its input alone
    assert summary["encoder_kind"] == "student" and summary["cut_at_max_length"] is None and summary["dim"] == 4


def test_values_copied_from_the_one_shot_example_are_left_out():
    row = {**CAKESTAND, "leaked": ["Vintage", "Parties"]}
    assert render_knowledge(INPUT, row) == (
        "Type: Cakestand; Size: 3 Tier\nAfternoon Tea, Parties\nREGENCY CAKESTAND 3 TIER")
    assert render_knowledge(INPUT, row, "implicit") == "Afternoon Tea, Parties\nREGENCY CAKESTAND 3 TIER"


def test_a_stray_cjk_glyph_in_an_english_text_is_encoded_but_a_text_the_encoder_cannot_read_is_refused():
    """The teacher sometimes drops one CJK glyph into English knowledge ('Conspir安'): MiniLM reads that text
    (no [UNK] at all), so it is encoded; a Chinese text is mostly [UNK] to MiniLM and is refused, naming --encoder."""
    from distill.encode import encode_sentences, load_sentence_encoder
    from eval.embedder import EmbedderError

    encoder = load_sentence_encoder("all-minilm-l6-v2", 128, normalize=True)
    stray = "The Shadows Conspir安: 1997\nShadow Conspiracy (1997). Genres: Thriller"
    vectors = encode_sentences(encoder, [stray, INPUT], batch_size=2, normalize=True, desc="items")
    assert vectors.shape == (2, 384) and np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)
    with pytest.raises(EmbedderError, match=r"1 phrase\(s\) contain CJK text.*--encoder"):
        encode_sentences(encoder, [INPUT, "安全套装礼品盒"], batch_size=2, normalize=True, desc="items")


def fake_text_encoder(config):
    """distill.embed's text encoder, faked: ones for every text (no model loads)."""
    return (lambda texts, desc=None: np.ones((len(texts), 4), np.float32)), {}, None


def prepared_users(folder, times: dict[str, int | None], card: dict, history: tuple = ("a",)):
    """A users.jsonl with these snapshot times (None: the field left out) and a card.json beside it."""
    folder.mkdir()
    write_jsonl(folder / "users.jsonl", [{"user_id": u, "history": list(history),
                                          **({"history_as_of": t} if t else {})} for u, t in times.items()])
    (folder / "card.json").write_text(json.dumps(card))
    return folder / "users.jsonl"


def test_each_users_snapshot_time_is_kept_beside_their_vector_and_checked_against_the_card(catalogue, tmp_path,
                                                                                           monkeypatch):
    import distill.embed
    from ground.vectors import USER_TABLE, read_times

    monkeypatch.setattr(distill.embed, "text_encoder", fake_text_encoder)
    card = {"users_snapshot_ts": 100, "users_late_snapshot_ts": 200}
    users = prepared_users(tmp_path / "late", {"u1": 100, "u2": 200}, card)
    summary = embed_tables(EmbedConfig(items=catalogue["items"], users=users, output=tmp_path / "emb", encoder="fake"))
    assert read_times(tmp_path / "emb" / USER_TABLE) == {"u1": 100, "u2": 200}
    assert summary["users_snapshot_times"] == [100, 200]
    # a users file `ctr prepare` did not write (no times at all) is embedded as before, with no times
    summary = embed_tables(EmbedConfig(items=catalogue["items"], users=catalogue["users"], output=tmp_path / "plain",
                                       encoder="fake"))
    assert read_times(tmp_path / "plain" / USER_TABLE) is None and "users_snapshot_times" not in summary
    for name, times, message in (("other", {"u1": 100, "u2": 150}, r"users\.jsonl:2: history_as_of 150 is not one "
                                                                    r"of the snapshot times of .*card\.json \(100, 200\)"),
                                 ("mixed", {"u1": 100, "u2": None}, r"users\.jsonl:2: no 'history_as_of', while")):
        users = prepared_users(tmp_path / name, times, card)
        with pytest.raises(RecordError, match=message):
            embed_tables(EmbedConfig(items=catalogue["items"], users=users, output=tmp_path / f"emb-{name}",
                                     encoder="fake"))
        assert not (tmp_path / f"emb-{name}").exists()


def test_user_knowledge_made_from_another_snapshot_of_the_user_is_refused(catalogue, tmp_path, monkeypatch):
    """A record whose input is not the user's text at their snapshot (a later snapshot's, say) would carry clicks
    after the user's time into a vector fed from that time on."""
    import distill.embed
    from kgen.inputs import user_input

    monkeypatch.setattr(distill.embed, "text_encoder", fake_text_encoder)
    users = prepared_users(tmp_path / "p", {"u1": 100, "u2": 100}, {"users_snapshot_ts": 100}, ("a", "c", "b"))
    items = {r["item_id"]: r for r in map(json.loads, catalogue["items"].open())}
    own = user_input({"user_id": "u1", "history": ["a", "c", "b"]}, items)
    config = {"items": catalogue["items"], "users": users, "encoder": "fake", "source": "knowledge"}
    write_jsonl(tmp_path / "uk.jsonl", [{**_row("u1", level="user"), "input": own + "\n1. and a later click"}])
    with pytest.raises(RecordError, match=r"uk\.jsonl:1: the knowledge of user 'u1' was made from another input"):
        embed_tables(EmbedConfig(**config, user_knowledge=tmp_path / "uk.jsonl", output=tmp_path / "no"))
    write_jsonl(tmp_path / "uk.jsonl", [{**_row("u1", level="user"), "input": own}])
    summary = embed_tables(EmbedConfig(**config, user_knowledge=tmp_path / "uk.jsonl", output=tmp_path / "yes"))
    assert summary["texts"]["users"]["from_knowledge"] == 1
    # the record is the teacher's text of the user (its 20 latest items), whatever history length is embedded
    summary = embed_tables(EmbedConfig(**config, user_knowledge=tmp_path / "uk.jsonl", output=tmp_path / "short",
                                       max_history=1))
    assert summary["texts"]["users"]["from_knowledge"] == 1
