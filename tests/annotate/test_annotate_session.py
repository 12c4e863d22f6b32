import pytest

from annotate.assign import AssignConfig
from annotate.prepare import prepare_store
from annotate.session import SessionState, handle, item_labels, resume_key, screen
from annotate.store import Store, item_key
from annotate_helpers import XSS_NAME, knowledge_records

KEYS = [item_key(r) for r in knowledge_records()]


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "gold.sqlite")
    prepare_store(s, knowledge_records(), ["alice", "bob"], AssignConfig(per_item=2))
    return s


def run(store, user, state, *commands):
    reply = None
    for command in commands:
        command = {**command, "key": state.key} if "key" not in command else command
        state, reply = handle(store, user, state, command)
    return state, reply


def opened(store, user="alice"):
    state, _ = handle(store, user, SessionState(), {"op": "open"})
    return state


def test_open_starts_at_the_first_pending_item_with_the_teacher_phrases(store):
    state = opened(store)
    assert state.key == KEYS[0] and state.version == 0 and state.status == "pending"
    assert {r["decision"] for r in state.doc["rows"]} == {"pending"}
    assert store.annotation(KEYS[0], "alice") is None  # opening saves nothing


def test_every_edit_is_saved_as_a_draft_with_a_new_version(store):
    state = opened(store)
    state, reply = run(store, "alice", state, {"op": "accept", "row": 0}, {"op": "reject", "row": 1},
                       {"op": "add", "text": "Morning Coffee", "type": "implicit"})
    saved = store.annotation(KEYS[0], "alice")
    assert saved.version == 3 == state.version and saved.status == "draft"
    assert [r["decision"] for r in saved.doc["rows"]][:2] == ["accept", "reject"]
    assert saved.doc["rows"][-1]["phrase"] == "Morning Coffee"
    assert reply.cursor_set == len(saved.doc["rows"]) - 1
    assert [a["action"] for a in store.actions(key=KEYS[0], actor="alice")] == ["accept", "reject", "add"]


def test_undo_restores_the_previous_document_as_a_new_version(store):
    state = opened(store)
    state, _ = run(store, "alice", state, {"op": "accept", "row": 0}, {"op": "reject", "row": 1})
    state, reply = run(store, "alice", state, {"op": "undo"})
    assert state.version == 3 and state.doc["rows"][1]["decision"] == "pending"
    assert state.doc["rows"][0]["decision"] == "accept"
    state, _ = run(store, "alice", state, {"op": "undo"})
    assert state.doc["rows"][0]["decision"] == "pending"
    _, reply = run(store, "alice", state, {"op": "undo"})
    assert reply.message == "nothing to undo in this session"


def test_a_second_tab_gets_a_conflict_not_an_overwrite(store):
    tab1, tab2 = opened(store), opened(store)
    tab1, _ = run(store, "alice", tab1, {"op": "accept", "row": 0})
    tab2, reply = run(store, "alice", tab2, {"op": "reject", "row": 0})
    assert reply.level == "error" and "changed in another tab" in reply.message
    assert store.annotation(KEYS[0], "alice").doc["rows"][0]["decision"] == "accept"
    tab2, _ = run(store, "alice", tab2, {"op": "reload"})
    tab2, reply = run(store, "alice", tab2, {"op": "reject", "row": 0})
    assert reply.level == "info" and store.annotation(KEYS[0], "alice").version == 2


def test_submit_needs_every_phrase_decided_then_moves_on(store):
    state = opened(store)
    state, reply = run(store, "alice", state, {"op": "submit"})
    assert reply.level == "warn" and "still pending" in reply.message
    state, _ = run(store, "alice", state, {"op": "accept_all"})
    state, reply = run(store, "alice", state, {"op": "submit"})
    assert store.annotation(KEYS[0], "alice").status == "submitted"
    assert state.key == KEYS[1] and reply.cursor_set == 0


def test_commands_meant_for_another_item_are_ignored(store):
    state = opened(store)
    _, reply = run(store, "alice", state, {"op": "accept", "row": 0, "key": KEYS[1]})
    assert "previous item" in reply.message and store.annotation(KEYS[0], "alice") is None


def test_resume_goes_to_the_latest_draft_then_the_first_pending(store):
    state = opened(store)
    state, _ = run(store, "alice", state, {"op": "goto", "target": KEYS[2]}, {"op": "accept", "row": 0})
    assert resume_key(store, "alice") == KEYS[2]
    assert resume_key(store, "bob") == KEYS[0]  # bob's queue is his own


def test_navigation_and_flags(store):
    state = opened(store)
    state, _ = run(store, "alice", state, {"op": "next"})
    assert state.key == KEYS[1]
    state, _ = run(store, "alice", state, {"op": "prev"}, {"op": "prev"})
    assert state.key == KEYS[0]
    state, reply = run(store, "alice", state, {"op": "flag"})
    assert store.annotation(KEYS[0], "alice").status == "flagged" and "flagged" in reply.message
    state, _ = run(store, "alice", state, {"op": "accept", "row": 0})
    assert store.annotation(KEYS[0], "alice").status == "flagged"  # editing keeps the flag
    state, _ = run(store, "alice", state, {"op": "flag"})
    assert store.annotation(KEYS[0], "alice").status == "draft"


def test_items_outside_the_queue_are_refused(tmp_path):
    store = Store(tmp_path / "g.sqlite")
    prepare_store(store, knowledge_records(), ["alice", "bob"], AssignConfig(per_item=1))
    not_alices = next(k for k, names in store.assignments().items() if names == ["bob"])
    state = opened(store)
    state, reply = run(store, "alice", state, {"op": "goto", "target": not_alices})
    assert reply.level == "error" and state.key != not_alices


def test_annotators_do_not_see_each_other(store):
    alice = opened(store)
    alice, _ = run(store, "alice", alice, {"op": "add", "text": "Alice Only Phrase"})
    bob = opened(store, "bob")
    assert all(r["phrase"] != "Alice Only Phrase" for r in bob.doc["rows"])
    main, _, _, _ = screen(store, "bob", bob, handle(store, "bob", bob, {"op": "reload"})[1],
                           item_labels(store.items()), answer=1, ack=-1)
    assert "Alice Only Phrase" not in main  # not even as a suggestion


def test_screen_shows_progress_and_escapes_the_queue(store):
    state = opened(store)
    state, reply = run(store, "alice", state, {"op": "accept_all"}, {"op": "submit"})
    main, message, queue, raw = screen(store, "alice", state, reply, item_labels(store.items()), answer=2, ack=1)
    assert 'data-answer="2" data-ack="1"' in main
    assert "<b>1</b> / 6 done" in main
    assert "<script>" not in queue and "&lt;script&gt;" in queue and XSS_NAME not in queue
    assert "submitted" in message


def test_show_draws_the_page_again_and_changes_nothing(store):
    state = opened(store)
    state, _ = run(store, "alice", state, {"op": "accept", "row": 0})
    again, reply = handle(store, "alice", state, {"op": "show", "key": "item:someone-else"})
    assert again is state and reply.message == "" and store.annotation(state.key, "alice").version == 1
