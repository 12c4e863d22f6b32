import sqlite3
import threading

import pytest

from annotate.assign import AssignConfig, doubled, plan_assignments
from annotate.prepare import check_roles, parse_account, prepare_store, read_accounts_file, read_knowledge
from annotate.store import Store, item_key
from annotate_helpers import knowledge_records
from ground.errors import RecordError
from ground.files import write_jsonl
from ground import records as R

DOC = {"rows": [{"phrase": "Mug", "type": "explicit", "decision": "accept", "origin": "Mug"}]}


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "gold.sqlite")
    prepare_store(s, knowledge_records(), ["alice", "bob"], AssignConfig(per_item=2))
    return s


def test_database_is_wal_and_items_keep_input_order(store):
    assert store._con().execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert [item_key(r) for r in store.items()] == [item_key(r) for r in knowledge_records()]
    assert store.add_items(knowledge_records()) == (0, 0)  # adding the same file again adds nothing
    changed = [{**knowledge_records()[0], R.RAW: "another answer"}]
    assert store.add_items(changed) == (0, 1)  # the stored record stays; the difference is counted
    assert store.items()[0][R.RAW] != "another answer"


def test_save_bumps_the_version_and_a_stale_version_conflicts(store):
    key = item_key(knowledge_records()[0])
    first = store.save(key, "alice", DOC, 0)
    assert first.ok and first.version == 1
    stale = store.save(key, "alice", {"rows": []}, 0)
    assert stale.conflict and not stale.ok and stale.version == 1
    assert store.annotation(key, "alice").doc == DOC  # the stale save wrote nothing
    assert len(store.actions(key=key)) == 1
    assert store.save(key, "bob", {"rows": []}, 0).ok  # another annotator has a record of their own


def test_submitted_at_and_created_at_are_kept(store):
    key = item_key(knowledge_records()[0])
    store.save(key, "alice", DOC, 0)
    created = store.annotation(key, "alice").created_at
    store.save(key, "alice", DOC, 1, "submitted")
    submitted = store.annotation(key, "alice")
    assert submitted.status == "submitted" and submitted.submitted_at and submitted.created_at == created
    store.save(key, "alice", DOC, 2, "draft")
    assert store.annotation(key, "alice").submitted_at == submitted.submitted_at


def test_action_log_is_append_only(store):
    key = item_key(knowledge_records()[0])
    store.save(key, "alice", DOC, 0, action="accept", payload={"op": "accept", "row": 0})
    log = store.actions(key=key, actor="alice")
    assert log[0]["action"] == "accept" and log[0]["payload"] == {"op": "accept", "row": 0} and log[0]["doc"] == DOC
    con = sqlite3.connect(store.path)
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        con.execute("UPDATE actions SET action = 'x'")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        con.execute("DELETE FROM actions")


def test_concurrent_savers_never_lose_or_duplicate_an_edit(store):
    """Eight threads race on the same record; each retries on conflict. Every success is logged once."""
    key = item_key(knowledge_records()[1])
    acked: list[int] = []
    lock = threading.Lock()

    def worker(n: int) -> None:
        for i in range(25):
            while True:
                current = store.annotation(key, "alice")
                version = current.version if current else 0
                doc = {"rows": [{"phrase": f"w{n}-{i}", "type": "implicit", "decision": "add", "origin": None}]}
                result = store.save(key, "alice", doc, version, payload={"edit": f"w{n}-{i}"})
                if result.ok:
                    with lock:
                        acked.append(result.version)
                    break

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    log = store.actions(key=key, actor="alice")
    assert sorted(acked) == list(range(1, 201))
    assert [row["version"] for row in log] == list(range(1, 201))
    assert sorted(row["payload"]["edit"] for row in log) == sorted(f"w{n}-{i}" for n in range(8) for i in range(25))
    assert store.annotation(key, "alice").version == 200


def test_sessions_saving_on_the_same_base_version_let_exactly_one_win(store):
    """Eight sessions opened the item at version 0 and save at once: one edit lands, seven are conflicts."""
    key = item_key(knowledge_records()[1])
    start = threading.Barrier(8)
    results: dict[int, object] = {}

    def session(n: int) -> None:
        doc = {"rows": [{"phrase": f"s{n}", "type": "implicit", "decision": "add", "origin": None}]}
        start.wait()
        results[n] = store.save(key, "alice", doc, 0, payload={"edit": f"s{n}"})

    threads = [threading.Thread(target=session, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    won = [n for n, r in results.items() if r.ok]
    assert len(won) == 1 and all(r.conflict and r.version == 1 for n, r in results.items() if n != won[0])
    saved = store.annotation(key, "alice")
    assert saved.version == 1 and saved.doc["rows"][0]["phrase"] == f"s{won[0]}"
    assert [a["payload"]["edit"] for a in store.actions(key=key, actor="alice")] == [f"s{won[0]}"]


def test_reviews_are_versioned_too(store):
    key = item_key(knowledge_records()[0])
    assert store.save_review(key, "carol", DOC, "both fine", "alice", 0).version == 1
    assert store.save_review(key, "carol", DOC, "again", "alice", 0).conflict
    assert store.review(key).reason == "both fine"
    assert store.actions(key=key, actor="carol")[0]["kind"] == "review"


def test_assignment_gives_k_distinct_annotators_balanced_and_deterministic():
    keys = [f"item:{i}" for i in range(30)]
    names = ["a", "b", "c", "d"]
    plan = plan_assignments(keys, names, AssignConfig(per_item=2, seed=3))
    assert all(len(set(v)) == 2 for v in plan.values())
    loads = [sum(n in v for v in plan.values()) for n in names]
    assert max(loads) - min(loads) <= 1 and sum(loads) == 60
    assert plan == plan_assignments(keys, names, AssignConfig(per_item=2, seed=3))
    assert plan != plan_assignments(keys, names, AssignConfig(per_item=2, seed=4))


def test_a_share_of_items_is_double_annotated():
    keys = [f"item:{i}" for i in range(40)]
    plan = plan_assignments(keys, ["a", "b", "c"], AssignConfig(double_share=0.25, seed=1))
    twice = {k for k, v in plan.items() if len(v) == 2}
    assert twice == doubled(keys, 0.25, 1) and len(twice) == 10
    assert all(len(v) == 1 for k, v in plan.items() if k not in twice)


def test_existing_assignments_stay_when_items_are_added():
    first = plan_assignments(["item:1", "item:2"], ["a", "b"], AssignConfig())
    second = plan_assignments(["item:1", "item:2", "item:3"], ["a", "b"], AssignConfig(), existing=first)
    assert set(second) == {"item:3"}


def test_bad_settings_name_the_bad_value():
    with pytest.raises(ValueError, match="per_item must be at least 1, got 0"):
        AssignConfig(per_item=0)
    with pytest.raises(ValueError, match="double_share must be between 0 and 1, got 1.5"):
        AssignConfig(double_share=1.5)
    with pytest.raises(ValueError, match="3 annotators per item need at least 3"):
        plan_assignments(["item:1"], ["a", "b"], AssignConfig(per_item=3))
    with pytest.raises(ValueError, match="expected user:password"):
        parse_account("alice")
    with pytest.raises(ValueError, match="has no account"):
        check_roles([("alice", "x")], ["carol"])
    with pytest.raises(ValueError, match="at least one annotator"):
        check_roles([("carol", "x")], ["carol"])
    assert parse_account("bob:pa:ss") == ("bob", "pa:ss")


def test_repeated_ids_in_the_input_are_refused(tmp_path):
    rows = knowledge_records()
    write_jsonl(tmp_path / "k.jsonl", rows + rows[:1])
    with pytest.raises(RecordError, match="repeats level=item id=85123A"):
        read_knowledge(tmp_path / "k.jsonl")


def test_accounts_file_skips_comments_and_names_a_bad_line(tmp_path):
    path = tmp_path / "accounts.txt"
    path.write_text("# team\nalice:one\n\n  bob:two:three\n")
    assert read_accounts_file(path) == [("alice", "one"), ("bob", "two:three")]
    path.write_text("alice:one\nbad name:x\n")
    with pytest.raises(ValueError, match=r"accounts.txt:2: user name 'bad name'"):
        read_accounts_file(path)
