"""`ctr serve` on KAR's route (issue 24): a run whose tables a sentence-transformers encoder (the bundled
MiniLM) made over each item's knowledge text scores as `ctr eval` does, makes a missing vector from the same
text with the same encoder, and never mixes a knowledge text's vector with an input text's."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ctr.encoders import SentenceEncoder
from ctr.scoring import ServeConfig, Served, warm
from ground.errors import ConfigError
from ground.files import write_jsonl
from kgen.inputs import item_input
from test_serve import a_request, client_for, eval_rows, redis_server, train_run  # noqa: F401 (fixture)


def knowledge_record(rid: str, level: str, n: int, status: str = "ok") -> dict:
    explicit = [{"aspect": "Mood", "value": ["calm", "loud", "tender", "grim"][n % 4]}]
    implicit = [{"aspect": "Audience", "value": ["children", "critics", "teenagers"][n % 3]}]
    return {"id": rid, "level": level, "input": rid, "explicit": explicit, "implicit": implicit,
            "key_phrases": [explicit[0]["value"], implicit[0]["value"]], "raw": "", "model": "fake:teacher",
            "template": level, "reference_id": None, "status": status}


@pytest.fixture(scope="module")
def kar(tmp_path_factory, prepared) -> dict:
    """Knowledge for the first 20 items (the 3rd one failed) and 10 users; MiniLM tables over it; an MSD run."""
    from distill.embed import EmbedConfig, embed_tables
    from kgen.inputs import user_input

    folder = tmp_path_factory.mktemp("kar")
    items = [json.loads(line) for line in (prepared / "items.jsonl").read_text().splitlines()]
    users = [json.loads(line) for line in (prepared / "users.jsonl").read_text().splitlines()]
    item_rows = [knowledge_record(str(r["item_id"]), "item", n, "failed" if n == 2 else "ok")
                 for n, r in enumerate(items[:20])]
    write_jsonl(folder / "items.knowledge.jsonl", item_rows)
    by_id = {str(r["item_id"]): r for r in items}  # a user record's input: the user's text, as kgen shows it
    write_jsonl(folder / "users.knowledge.jsonl", [{**knowledge_record(str(u["user_id"]), "user", n),
                                                    "input": user_input(u, by_id)} for n, u in enumerate(users[:10])])
    tables = folder / "tables"
    embed_tables(EmbedConfig(items=prepared / "items.jsonl", users=prepared / "users.jsonl", output=tables,
                             source="knowledge", encoder="all-minilm-l6-v2", knowledge=folder / "items.knowledge.jsonl",
                             user_knowledge=folder / "users.knowledge.jsonl", max_length=64, max_history=5))
    run = train_run(folder / "run", prepared, "msd", tables, user_source="table")
    return {"run": run, "tables": tables, "items": items, "item_rows": item_rows}


def test_served_scores_equal_ctr_eval_scores_on_the_knowledge_route(kar):
    requests, expected = eval_rows(kar["run"], 25)
    client, served = client_for(ServeConfig(model=str(kar["run"]), codec="float32"))
    assert isinstance(served.knowledge.encoder, SentenceEncoder)
    got = []
    for body in requests:
        response = client.post("/score", json=body)
        assert response.status_code == 200, response.text
        got.extend(response.json()["scores"])
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5)  # MiniLM re-encodes each text as the tables did
    assert np.std(expected) > 1e-3


def test_an_item_is_encoded_from_the_text_its_table_row_came_from(kar):
    from ctr.scoring import RequestError

    served = Served(ServeConfig(model=str(kar["run"]), codec="float32"))
    first, failed, plain = kar["items"][0], kar["items"][2], kar["items"][25]
    assert served.known_item(str(first["item_id"])).text == f"Mood: calm\nchildren\n{item_input(first)}"
    assert served.known_item(str(failed["item_id"])).text == item_input(failed)  # a failed record: the input
    assert served.known_item(str(plain["item_id"])).text == item_input(plain)  # no record: the input
    # a request's own record: its knowledge if it sends one, else its input (the catalogue's record is not its)
    sent = {**first, "knowledge": {"explicit": [{"aspect": "Mood", "value": "eerie"}], "implicit": []}}
    assert served.local(str(first["item_id"]), sent).text == f"Mood: eerie\n{item_input(first)}"
    assert served.local(str(first["item_id"]), dict(first)).text == item_input(first)
    user = served.users["u0"]  # users with a knowledge record: their knowledge, then their input
    assert served.knowledge.texts.user_text(user, served.items, 5).startswith("Mood: calm\nchildren\n")
    with pytest.raises(RequestError, match="knowledge must be an object"):
        served.local("x", {"item_id": "x", "name": "X", "knowledge": "critics"})


def test_a_new_item_with_its_knowledge_is_scored_and_bad_knowledge_is_a_422(kar, prepared):
    client, _ = client_for(ServeConfig(model=str(kar["run"])))
    body = a_request(prepared)
    new = {"item_id": "brand-new", "name": "A quiet film", "knowledge": {"explicit": [], "implicit": [
        {"aspect": "Audience", "value": "critics"}]}}
    answer = client.post("/score", json={**body, "candidates": [*body["candidates"][:2], new]})
    assert answer.status_code == 200 and len(answer.json()["scores"]) == 3
    for knowledge in ("critics", {"implicit": [{"value": 3}]}, {"opinion": "good"}):
        bad = client.post("/score", json={**body, "candidates": [{**new, "knowledge": knowledge}]})
        assert bad.status_code == 422 and "knowledge" in bad.text, bad.text


def test_warm_stores_the_tables_vectors_under_the_knowledge_texts(kar, redis_server):  # noqa: F811
    config = ServeConfig(model=str(kar["run"]), redis=redis_server.url, lru_size=0, codec="float32")
    out = warm(config, top=30)
    assert out["computed"] == 30 and out["from_tables"] and not out["student_loaded"]  # no encoder loaded
    served = Served(config)
    body = {"user_id": "u3", "history": [str(r["item_id"]) for r in kar["items"][:4]],
            "candidates": [str(r["item_id"]) for r in kar["items"][4:10]]}
    again = served.score(**body)
    assert again["cache"]["redis"] == 10 and again["cache"]["computed"] == 1  # u3's vector: warm stores items


def test_student_flag_on_a_sentence_encoder_run_is_refused(kar):
    with pytest.raises(ConfigError, match="sentence-transformers encoder 'all-minilm-l6-v2'.*--student"):
        Served(ServeConfig(model=str(kar["run"]), student="some-student"))


def test_gone_knowledge_records_are_a_one_line_error(kar, tmp_path):
    import shutil

    from ground.errors import RecordError

    tables = tmp_path / "tables"
    shutil.copytree(kar["tables"], tables)
    embed = json.loads((tables / "embed_config.json").read_text())
    (tables / "embed_config.json").write_text(json.dumps({**embed, "knowledge": str(tmp_path / "gone.jsonl")}))
    run = tmp_path / "run"
    shutil.copytree(kar["run"], run)
    config = json.loads((run / "ctr_config.json").read_text())
    (run / "ctr_config.json").write_text(json.dumps({**config, "knowledge": str(tables)}))
    with pytest.raises(RecordError, match="gone.jsonl: the knowledge records the run's tables were made from are gone"):
        Served(ServeConfig(model=str(run)))
    assert Path(tables / "item_embeddings.parquet").exists()
