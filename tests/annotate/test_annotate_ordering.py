"""The commands of a page run once each, in typed order, however its requests are repeated."""

import json
import re
from types import SimpleNamespace

from annotate.app import AnnotateApp, Sessions
from annotate.assign import AssignConfig
from annotate.ordering import AnswerNumbers, fresh_commands
from annotate.prepare import prepare_store
from annotate.session import SessionState
from annotate.store import Store, item_key
from annotate_helpers import knowledge_records


def cmd(seq, op="accept"):
    return {"op": op, "seq": seq}


def seqs(taken):
    commands, ack = taken
    return [c["seq"] for c in commands], ack


def test_a_batch_runs_in_typed_order_and_acks_its_last_command():
    assert seqs(fresh_commands([cmd(1), cmd(0), cmd(2)], -1)) == ([0, 1, 2], 2)
    assert seqs(fresh_commands([cmd(3)], 2)) == ([3], 3)


def test_a_resent_batch_runs_only_what_did_not_run():
    assert seqs(fresh_commands([cmd(0), cmd(1)], 1)) == ([], 1)  # the answer was lost, the page sent it again
    assert seqs(fresh_commands([cmd(1), cmd(2), cmd(2), cmd(3)], 1)) == ([2, 3], 3)


def test_a_restarted_server_takes_the_page_where_it_is():
    assert seqs(fresh_commands([cmd(41), cmd(42)], -1)) == ([41, 42], 42)


def test_unnumbered_commands_are_dropped():
    junk = [{"op": "next"}, {"op": "next", "seq": "1"}, {"op": "next", "seq": True}, {"op": "next", "seq": -1}]
    assert seqs(fresh_commands(junk, -1)) == ([], -1)


def test_answers_grow_and_a_restarted_server_still_counts_up():
    answers = AnswerNumbers()
    numbers = [answers.next() for _ in range(4)]
    assert numbers == sorted(set(numbers))
    assert AnswerNumbers().next() > numbers[-1]  # from the clock


def test_sessions_keep_state_and_ack_per_page_and_forget_the_least_recently_used():
    sessions = Sessions(capacity=2)
    a, b, c = SessionState(key="item:a"), SessionState(key="item:b"), SessionState(key="item:c")
    sessions.put("a", "alice", a, 5)
    sessions.put("b", "alice", b, 7)
    assert sessions.get("a", "alice") == (a, 5)
    assert sessions.get("a", "bob") == (None, -1)  # only for the user who opened the page
    sessions.put("c", "alice", c)
    assert sessions.get("b", "alice") == (None, -1)  # forgotten: a restart, as far as the page is concerned
    assert sessions.get("a", "alice") == (a, 5) and sessions.get("c", "alice") == (c, -1)


def test_the_app_runs_a_batch_once_and_answers_with_ack_and_number(tmp_path):
    store = Store(tmp_path / "gold.sqlite")
    prepare_store(store, knowledge_records(), ["alice"], AssignConfig(per_item=1))
    app = AnnotateApp(store, reviewers=[])
    page = SimpleNamespace(username="alice", session_hash="page-1")
    loaded = app.on_load(page)[0]
    assert 'data-ack="-1"' in loaded
    first = item_key(knowledge_records()[0])
    batch = json.dumps([{"op": op, "seq": seq, "key": first, "cursor": 0, "row": 0}
                        for seq, op in [(0, "accept"), (1, "accept_all"), (2, "submit")]])
    main = app.on_command(batch, page)[0]
    assert store.annotation(first, "alice").status == "submitted"
    assert store.annotation(first, "alice").version == 3
    assert 'data-ack="2"' in main and f'data-key="{first}"' not in main  # on to the next item
    again = app.on_command(batch, page)[0]  # the same request again: nothing runs twice
    assert store.annotation(first, "alice").version == 3
    assert 'data-ack="2"' in again
    junk = app.on_command("not json", page)[0]
    answers = [int(re.search(r'data-answer="(\d+)"', html).group(1)) for html in (loaded, main, again, junk)]
    assert answers == sorted(set(answers))
