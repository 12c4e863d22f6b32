"""Must show 1: the public API, driven with gradio_client against a launched `annotate serve`."""

import copy

import httpx
import pytest
from gradio_client import Client
from typer.testing import CliRunner

from annotate.cli import app as cli
from annotate_helpers import ACCOUNTS, IDS, knowledge_records, start_server, stop_server
from ground.files import write_jsonl
from ground import records as R


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("api")
    write_jsonl(tmp / "knowledge.jsonl", knowledge_records())
    proc, url = start_server(tmp / "knowledge.jsonl", tmp / "gold.sqlite", "--per-item", "2")
    yield url, tmp / "gold.sqlite"
    stop_server(proc)


def client(url, user):
    return Client(url, auth=(user, ACCOUNTS[user]), verbose=False)


def accept_all(doc):
    doc = copy.deepcopy(doc)
    for row in doc["rows"]:
        row["decision"] = "accept"
    return doc


def test_only_the_three_documented_endpoints_are_public(served):
    url, _ = served
    api = client(url, "alice").view_api(print_info=False, return_format="dict")
    assert sorted(api["named_endpoints"]) == ["/export_gold", "/load_item", "/save"]
    assert not api["unnamed_endpoints"]
    with pytest.raises(ValueError):
        client(url, "alice").predict("{}", api_name="/on_command")


def test_log_in_is_required(served):
    url, _ = served
    with pytest.raises(ValueError, match="Could not login"):
        Client(url, auth=("alice", "wrong"), verbose=False)
    assert httpx.get(url + "gradio_api/info", timeout=60).status_code == 401


def test_save_then_resume_in_a_new_session(served):
    url, _ = served
    first = client(url, "alice")
    item = first.predict(f"item:{IDS[2]}", api_name="/load_item")
    assert item["version"] == 0 and item["status"] == "pending" and item["record"][R.ID] == IDS[2]
    doc = copy.deepcopy(item["doc"])
    doc["rows"][0]["decision"] = "reject"
    doc["rows"].append({"phrase": "Soup Lovers", "type": "implicit", "decision": "add", "origin": None})
    saved = first.predict(item["key"], doc, 0, "draft", api_name="/save")
    assert saved == {"ok": True, "conflict": False, "version": 1, "message": ""}
    later = client(url, "alice").predict("", api_name="/load_item")  # a new session resumes at the draft
    assert later["key"] == f"item:{IDS[2]}" and later["version"] == 1 and later["status"] == "draft"
    assert later["doc"] == doc
    bobs = client(url, "bob").predict(f"item:{IDS[2]}", api_name="/load_item")
    assert bobs["version"] == 0 and all(r["phrase"] != "Soup Lovers" for r in bobs["doc"]["rows"])


def test_two_sessions_conflict_instead_of_overwriting(served):
    url, db = served
    tab1, tab2 = client(url, "bob"), client(url, "bob")
    key = f"item:{IDS[3]}"
    one, two = tab1.predict(key, api_name="/load_item"), tab2.predict(key, api_name="/load_item")
    assert one["version"] == two["version"] == 0
    ok = tab1.predict(key, accept_all(one["doc"]), 0, "draft", api_name="/save")
    clash = tab2.predict(key, {"rows": []}, 0, "draft", api_name="/save")
    assert ok["ok"] and ok["version"] == 1
    assert clash["conflict"] and not clash["ok"] and clash["version"] == 1
    fresh = tab2.predict(key, api_name="/load_item")
    assert fresh["version"] == 1 and len(fresh["doc"]["rows"]) == len(one["doc"]["rows"])  # not emptied


def test_bad_saves_are_refused_with_a_reason(served):
    url, _ = served
    alice = client(url, "alice")
    item = alice.predict(f"item:{IDS[4]}", api_name="/load_item")
    bad_type = accept_all(item["doc"])
    bad_type["rows"][0]["type"] = "odd"
    assert "type" in alice.predict(item["key"], bad_type, 0, "draft", api_name="/save")["message"]
    assert "pending" in alice.predict(item["key"], item["doc"], 0, "submitted", api_name="/save")["message"]
    assert "status" in alice.predict(item["key"], item["doc"], 0, "done", api_name="/save")["message"]
    with pytest.raises(Exception, match="not in"):
        alice.predict("item:nope", api_name="/load_item")


def test_export_gold_through_the_api_and_the_cli(served, tmp_path):
    url, db = served
    key = f"item:{IDS[0]}"
    for user in ("alice", "bob"):
        c = client(url, user)
        item = c.predict(key, api_name="/load_item")
        result = c.predict(key, accept_all(item["doc"]), item["version"], "submitted", api_name="/save")
        assert result["ok"], result
    with pytest.raises(Exception, match="only reviewers"):
        client(url, "alice").predict(api_name="/export_gold")
    gold = client(url, "carol").predict(api_name="/export_gold")
    assert [g[R.ID] for g in gold] == [IDS[0]]
    assert gold[0][R.KEY_PHRASES] == knowledge_records()[0][R.KEY_PHRASES]
    assert gold[0]["annotators"] == ["alice", "bob"] and gold[0]["gold_source"] == "unanimous"
    out = tmp_path / "gold.jsonl"
    result = CliRunner().invoke(cli, ["export", "--db", str(db), "-o", str(out)])  # while the app runs
    assert result.exit_code == 0, result.output
    assert R.read_records(out, "gold") == gold
