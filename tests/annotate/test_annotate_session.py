import pytest

from annotate.assign import AssignConfig
from annotate.prepare import prepare_store
from annotate.phrases import flag_of, initial_doc
from annotate.session import Reply, SessionState, handle, item_labels, resume_key, screen
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
    assert reply.message == "nothing to undo: this is the teacher's original"


def test_undo_survives_a_reload_and_skips_what_was_undone(store):
    state = opened(store)
    state, _ = run(store, "alice", state, {"op": "accept", "row": 0}, {"op": "reject", "row": 1},
                   {"op": "undo"}, {"op": "add", "text": "Morning Coffee"})
    state = opened(store)  # a new page: nothing of the old one is left but the store
    state, reply = run(store, "alice", state, {"op": "undo"})  # the add goes
    assert [r["phrase"] for r in state.doc["rows"]] == [r["phrase"] for r in initial_doc(store.item(KEYS[0]))["rows"]]
    assert [r["decision"] for r in state.doc["rows"][:2]] == ["accept", "pending"]
    assert "back to v1" in reply.message
    state = opened(store)
    state, reply = run(store, "alice", state, {"op": "undo"})  # the accept goes; the undone reject stays undone
    assert {r["decision"] for r in state.doc["rows"]} == {"pending"} and "teacher's original" in reply.message


def test_undo_back_to_the_original_restores_its_status(store):
    state = opened(store)
    state, _ = run(store, "alice", state, {"op": "accept", "row": 0}, {"op": "undo"})
    saved = store.annotation(KEYS[0], "alice")
    assert saved.status == "pending" and saved.doc == initial_doc(store.item(KEYS[0]))
    assert dict(store.queue("alice"))[KEYS[0]] == "pending"  # not counted as a draft
    assert resume_key(store, "alice") == KEYS[0]


def test_undo_of_an_edit_on_a_submitted_item_restores_submitted(store):
    state = opened(store)
    state, _ = run(store, "alice", state, {"op": "accept_all"}, {"op": "submit"}, {"op": "goto", "target": KEYS[0]},
                   {"op": "reject", "row": 0})
    assert store.annotation(KEYS[0], "alice").status == "draft"  # re-opened
    state, _ = run(store, "alice", opened_at(store, KEYS[0]), {"op": "undo"})
    assert store.annotation(KEYS[0], "alice").status == "submitted" and state.status == "submitted"


def opened_at(store, key, user="alice"):
    state, _ = handle(store, user, SessionState(), {"op": "goto", "target": key})
    return state


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
    state, reply = run(store, "alice", state, {"op": "flag", "reason": "  is  200g the weight? "})
    saved = store.annotation(KEYS[0], "alice")
    assert flag_of(saved.doc) == "is 200g the weight?" and saved.status == "draft" and "flagged" in reply.message
    state, _ = run(store, "alice", state, {"op": "accept", "row": 0})
    assert flag_of(store.annotation(KEYS[0], "alice").doc) == "is 200g the weight?"  # editing keeps the flag
    state, _ = run(store, "alice", state, {"op": "unflag"})
    assert flag_of(store.annotation(KEYS[0], "alice").doc) is None


def test_a_flag_survives_submit_until_the_annotator_clears_it(store):
    state = opened(store)
    state, _ = run(store, "alice", state, {"op": "flag"}, {"op": "accept_all"}, {"op": "submit"})
    saved = store.annotation(KEYS[0], "alice")
    assert saved.status == "submitted" and flag_of(saved.doc) == ""
    main, _, queue, _ = screen(store, "alice", opened_at(store, KEYS[0]), Reply(), item_labels(store.items()),
                               answer=1, ack=-1)
    assert 'data-flagged="1"' in main and "Flagged for review" in main and "q-flag" in queue


def test_an_empty_submit_asks_first_and_any_other_key_says_no(store):
    state = opened(store)
    rows = len(state.doc["rows"])
    state, _ = run(store, "alice", state, *({"op": "reject", "row": i} for i in range(rows)))
    state, reply = run(store, "alice", state, {"op": "submit"})
    assert reply.level == "confirm" and "no key phrases" in reply.message
    assert store.annotation(KEYS[0], "alice").status == "draft"
    state, _ = run(store, "alice", state, {"op": "draft"}, {"op": "submit"})  # another key came between: ask again
    assert store.annotation(KEYS[0], "alice").status == "draft"
    state, reply = run(store, "alice", state, {"op": "submit"})
    assert store.annotation(KEYS[0], "alice").status == "submitted" and state.key == KEYS[1]


def test_a_typed_phrase_found_in_the_input_is_explicit_unless_typed_otherwise(store):
    state = opened(store)
    assert store.item(KEYS[0])["input"] == "COSTA Classic Blend Coffee Beans 200g"
    state, _ = run(store, "alice", state, {"op": "add", "text": "Costa Zzyzx"}, {"op": "add", "text": "blend beans"},
                   {"op": "add", "text": "Morning Ritual", "type": "explicit"})
    assert [r["type"] for r in state.doc["rows"][-3:]] == ["implicit", "explicit", "explicit"]


def test_a_legacy_flagged_status_reads_as_a_flagged_draft(store):
    store.save(KEYS[0], "alice", {"rows": []}, 0, "draft")
    con = store._con()
    con.execute("UPDATE annotations SET status = 'flagged' WHERE key = ?", (KEYS[0],))
    saved = store.annotation(KEYS[0], "alice")
    assert saved.status == "draft" and flag_of(saved.doc) == ""
    assert dict(store.queue("alice"))[KEYS[0]] == "draft"


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
