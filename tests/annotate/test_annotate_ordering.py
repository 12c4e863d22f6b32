"""Commands of a page run in the order typed, whatever order their requests arrive in."""

import json
from types import SimpleNamespace

from annotate.app import AnnotateApp
from annotate.assign import AssignConfig
from annotate.ordering import CommandOrder
from annotate.prepare import prepare_store
from annotate.store import Store, item_key
from annotate_helpers import knowledge_records


def cmd(seq, op="accept"):
    return {"op": op, "seq": seq}


def ops(commands):
    return [c["seq"] for c in commands]


def test_in_order_commands_run_at_once():
    order = CommandOrder()
    assert [ops(order.arrive("p", cmd(i), now=0)) for i in range(3)] == [[0], [1], [2]]


def test_an_early_command_waits_for_the_one_before_it():
    order = CommandOrder()
    assert ops(order.arrive("p", cmd(0), now=0)) == [0]
    assert order.arrive("p", cmd(2, "submit"), now=0.01) == []  # "submit" overtook "accept all"
    assert ops(order.arrive("p", cmd(1, "accept_all"), now=0.02)) == [1, 2]


def test_repeats_are_dropped_and_pages_are_separate():
    order = CommandOrder()
    assert ops(order.arrive("p", cmd(0), now=0)) == [0]
    assert ops(order.arrive("q", cmd(0), now=0)) == [0]
    assert ops(order.arrive("p", cmd(1), now=0.2)) == [1]
    assert order.arrive("p", cmd(1), now=0.3) == []  # run already
    assert order.arrive("p", cmd(3), now=0.4) == []
    assert order.arrive("p", cmd(3), now=0.5) == []  # held already
    assert ops(order.arrive("p", cmd(2), now=0.6)) == [2, 3]


def test_a_page_that_counts_from_zero_again_starts_afresh():
    order = CommandOrder()
    for i in range(3):
        order.arrive("p", cmd(i), now=0)
    assert order.arrive("p", cmd(5), now=0) == []
    assert ops(order.arrive("p", cmd(0), now=1)) == [0]  # the held 5 belonged to the old count
    assert ops(order.arrive("p", cmd(1), now=1)) == [1]


def test_a_lost_command_is_skipped_after_the_gap():
    order = CommandOrder(gap_s=5)
    order.arrive("p", cmd(0), now=0)
    assert order.arrive("p", cmd(2), now=1) == []
    assert order.arrive("p", cmd(3), now=2) == []
    assert ops(order.arrive("p", cmd(4), now=7)) == [2, 3, 4]  # 1 never came


def test_a_restarted_server_takes_the_page_where_it_is():
    order = CommandOrder()
    assert ops(order.arrive("p", cmd(41), now=0)) == [41]
    assert ops(order.arrive("p", cmd(42), now=0)) == [42]


def test_unnumbered_commands_run_as_they_come():
    order = CommandOrder()
    assert order.arrive("p", {"op": "next"}) == [{"op": "next"}]
    assert order.arrive("p", {"op": "next", "seq": "x"}) == [{"op": "next", "seq": "x"}]


def test_the_app_runs_accept_all_then_submit_even_when_submit_arrives_first(tmp_path):
    store = Store(tmp_path / "gold.sqlite")
    prepare_store(store, knowledge_records(), ["alice"], AssignConfig(per_item=1))
    app = AnnotateApp(store, reviewers=[])
    page = SimpleNamespace(username="alice", session_hash="page-1")
    app.on_load(page)
    first = item_key(knowledge_records()[0])
    send = lambda seq, op: app.on_command(json.dumps({"op": op, "seq": seq, "key": first, "cursor": 0, "row": 0}), page)
    send(0, "accept")
    held = send(2, "submit")  # overtook "accept all"
    assert store.annotation(first, "alice").status == "draft"
    assert not any(isinstance(out, str) for out in held)  # gr.skip(): the page is not re-rendered yet
    send(1, "accept_all")
    assert store.annotation(first, "alice").status == "submitted"
