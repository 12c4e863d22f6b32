"""One annotator's browser session: open items, apply commands, save, navigate. No Gradio here.

`handle(store, user, state, command)` is the whole protocol the page speaks:
it applies the command, saves through the store (conflicts reported, never
overwritten) and returns the new state and a `Reply` to render.
"""

from __future__ import annotations

from dataclasses import dataclass

from annotate import render
from annotate.actions import EDIT_OPS, OP, Outcome, apply_edit
from annotate.phrases import FLAG, MAX_REASON_CHARS, final_phrases, flag_of, initial_doc, pending_count, suggestions
from annotate.store import Store, item_key
from annotate.undo import TO, undo_target
from ground import records as R

NAV_OPS: tuple[str, ...] = ("next", "prev", "goto", "reload", "open")
REASON = "reason"


class AccessError(ValueError):
    """The user asked for an item that is not in their queue."""


@dataclass
class SessionState:
    """What one open page knows: the item, the version it is based on, its document, the row cursor.

    `confirm` is the (key, version) whose empty submit the annotator was asked to confirm.
    """

    key: str | None = None
    version: int = 0
    status: str = "pending"
    doc: dict | None = None
    cursor: int = 0
    confirm: tuple[str, int] | None = None


@dataclass(frozen=True)
class Reply:
    """What to tell the annotator after a command."""

    message: str = ""
    level: str = "info"  # info | warn | error | confirm (a question: Enter says yes)
    cursor_set: int | None = None


def resume_key(store: Store, user: str) -> str | None:
    """Where an annotator picks up: their most recently edited draft, else their first pending item."""
    queue = store.queue(user)
    drafts = {a.key: a.updated_at for a in store.annotations(annotator=user) if a.status == "draft"}
    if drafts:
        return max(drafts, key=drafts.get)
    for key, status in queue:
        if status == "pending":
            return key
    return queue[0][0] if queue else None


def open_item(store: Store, user: str, key: str) -> SessionState:
    """Load an item of the user's queue: their saved work, or the teacher's phrases if none."""
    if not store.is_assigned(key, user):
        raise AccessError(f"item {key} is not in {user}'s queue")
    saved = store.annotation(key, user)
    if saved:
        return SessionState(key, saved.version, saved.status, saved.doc)
    return SessionState(key, 0, "pending", initial_doc(store.item(key) or {}))


def _neighbour(queue: list[tuple[str, str]], key: str | None, step: int) -> str | None:
    """The item before/after `key` in queue order (no wrap-around); None at either end."""
    keys = [k for k, _ in queue]
    i = keys.index(key) + step if key in keys else 0
    return keys[i] if 0 <= i < len(keys) else None


def _next_unfinished(queue: list[tuple[str, str]], key: str | None) -> str | None:
    """The first item after `key` (wrapping around) that is not submitted; None when all are."""
    keys = [k for k, _ in queue]
    start = keys.index(key) if key in keys else -1
    for offset in range(1, len(keys) + 1):
        k, status = queue[(start + offset) % len(keys)]
        if status != "submitted":
            return k
    return None


def _save(store: Store, user: str, state: SessionState, doc: dict, status: str, action: str,
          payload: dict) -> tuple[SessionState, Reply | None]:
    """Save a new document over the state's version; a conflict leaves the state as it was."""
    result = store.save(state.key, user, doc, state.version, status, action, payload)
    if result.conflict:
        return state, Reply(f"Not saved: this item was changed in another tab or session (now v{result.version}, "
                            f"you had v{state.version}). Press r to load the latest version.", "error")
    return SessionState(state.key, result.version, status, doc, state.cursor), None


def _edit(store: Store, user: str, state: SessionState, command: dict) -> tuple[SessionState, Reply]:
    outcome: Outcome = apply_edit(state.doc, command, str((store.item(state.key) or {}).get(R.INPUT, "")))
    if outcome.doc is None:
        return state, Reply(outcome.message, outcome.level, outcome.cursor)
    new, problem = _save(store, user, state, outcome.doc, "draft", command[OP], command)
    if problem:
        return state, problem
    note = " (re-opened: submit again with Enter)" if state.status == "submitted" else ""
    return new, Reply(f"{outcome.message} · saved v{new.version}{note}", outcome.level, outcome.cursor)


def _undo(store: Store, user: str, state: SessionState) -> tuple[SessionState, Reply]:
    """Go back one change, as kept in the store's log: the document and status of that version."""
    history = [a for a in store.actions(key=state.key, actor=user) if a["kind"] == "annotation"]
    target = undo_target(history, state.version)
    if target is None:
        return state, Reply("nothing to undo: this is the teacher's original")
    if target == 0:
        doc, status = initial_doc(store.item(state.key) or {}), "pending"
    else:
        saved = next(a for a in history if a["version"] == target)
        doc, status = saved["doc"], saved["status"]
    new, problem = _save(store, user, state, doc, status, "undo", {OP: "undo", TO: target})
    if problem:
        return state, problem
    back = "the teacher's original" if target == 0 else f"v{target}"
    return new, Reply(f"undone: back to {back} ({status}) · saved v{new.version}")


def _submit(store: Store, user: str, state: SessionState) -> tuple[SessionState, Reply]:
    left = pending_count(state.doc)
    if left:
        return state, Reply(f"{left} phrase(s) still pending: decide each (a / x) or accept all with Shift+A", "warn")
    if not final_phrases(state.doc) and state.confirm != (state.key, state.version):
        state.confirm = (state.key, state.version)
        return state, Reply("Submit with no key phrases? This item's gold would be empty. Press Enter again to "
                            "submit it, or any other key to go on.", "confirm")
    new, problem = _save(store, user, state, state.doc, "submitted", "submit", {OP: "submit"})
    if problem:
        return state, problem
    flagged = " (still flagged for review)" if flag_of(new.doc) is not None else ""
    following = _next_unfinished(store.queue(user), state.key)
    if following is None:
        return new, Reply(f"submitted v{new.version}{flagged} · every item in your queue is submitted", "info")
    return open_item(store, user, following), Reply(f"submitted {state.key.split(':', 1)[1]}{flagged} · next item",
                                                    cursor_set=0)


def _flag(store: Store, user: str, state: SessionState, command: dict) -> tuple[SessionState, Reply]:
    """Flag the item for review with an optional reason, or clear the flag; the status stays as it is."""
    doc = {k: v for k, v in state.doc.items() if k != FLAG}
    if command[OP] == "flag":
        doc[FLAG] = " ".join(str(command.get(REASON) or "").split())[:MAX_REASON_CHARS]
    if flag_of(doc) == flag_of(state.doc):
        return state, Reply("already flagged" if command[OP] == "flag" else "this item is not flagged")
    status = "draft" if state.status == "pending" else state.status
    new, problem = _save(store, user, state, doc, status, command[OP], command)
    if problem:
        return state, problem
    text = "flag removed" if command[OP] == "unflag" else "flagged for review" + (f": {doc[FLAG]}" if doc[FLAG] else "")
    return new, Reply(f"{text} · v{new.version}")


def _draft(store: Store, user: str, state: SessionState) -> tuple[SessionState, Reply]:
    new, problem = _save(store, user, state, state.doc, "draft", "draft", {OP: "draft"})
    return (state, problem) if problem else (new, Reply(f"draft saved · v{new.version}"))


def _navigate(store: Store, user: str, state: SessionState, command: dict) -> tuple[SessionState, Reply]:
    op = command[OP]
    if op in ("reload", "open"):
        key = state.key if op == "reload" else (resume_key(store, user))
    elif op == "goto":
        key = str(command.get("target") or "")
    else:
        key = _neighbour(store.queue(user), state.key, 1 if op == "next" else -1)
        if key is None:
            return state, Reply(f"this is the {'last' if op == 'next' else 'first'} item in your queue")
    if key is None:
        return state, Reply("your queue is empty", "warn")
    try:
        new = open_item(store, user, key)
    except AccessError as exc:
        return state, Reply(str(exc), "error")
    return new, Reply("reloaded the latest saved version" if op == "reload" else "", cursor_set=0)


def handle(store: Store, user: str, state: SessionState, command: dict) -> tuple[SessionState, Reply]:
    """Apply one command from the page; the returned state replaces the old one."""
    op = command.get(OP)
    if op == "show":  # draw the page again, nothing else
        return state, Reply()
    cursor = command.get("cursor")
    if isinstance(cursor, int) and not isinstance(cursor, bool):
        state.cursor = max(cursor, 0)
    if state.key is None and op not in NAV_OPS:
        return state, Reply("no item is open", "warn")
    if op not in NAV_OPS and command.get("key") not in (None, state.key):
        return state, Reply("ignored a key press meant for the previous item", "warn")
    if op != "submit":
        state.confirm = None  # any other key answers "no" to an empty submit
    if op in NAV_OPS:
        return _navigate(store, user, state, command)
    if op in EDIT_OPS:
        return _edit(store, user, state, command)
    if op == "undo":
        return _undo(store, user, state)
    if op == "submit":
        return _submit(store, user, state)
    if op in ("flag", "unflag"):
        return _flag(store, user, state, command)
    if op == "draft":
        return _draft(store, user, state)
    return state, Reply(f"unknown command {op!r}", "error")


def screen(store: Store, user: str, state: SessionState, reply: Reply, labels: dict[str, str], *, answer: int,
           ack: int) -> tuple[str, str, str, str]:
    """(main, message, queue, reasoning) HTML for a state; `labels` names each item in the queue list.

    `answer` numbers the page's answers and `ack` is its last command run (see annotate.ordering).
    """
    if state.key is None:
        empty = (f'<div id="ann-main" class="ann-main" data-rows="0" data-answer="{answer}" data-ack="{ack}">'
                 '<p class="ann-empty">No items are assigned to you.</p></div>')
        return empty, render.message(reply.message, reply.level), "", ""
    record = store.item(state.key) or {}
    queue = store.queue(user)
    keys = [k for k, _ in queue]
    rows = len(state.doc["rows"])
    cursor = reply.cursor_set if reply.cursor_set is not None else state.cursor
    state.cursor = min(max(cursor, 0), max(rows - 1, 0))
    saved = store.annotations(annotator=user)
    used = suggestions(a.doc for a in saved)
    flagged = {a.key for a in saved if flag_of(a.doc) is not None}
    main = render.main_screen(
        record, state.doc, version=state.version, status=state.status, cursor=state.cursor,
        done=sum(1 for _, s in queue if s == "submitted"), total=len(queue),
        position=keys.index(state.key) + 1 if state.key in keys else 0, user=user, suggestions=used,
        cursor_set=state.cursor if reply.cursor_set is not None else None, answer=answer, ack=ack,
    )
    return main, render.message(reply.message, reply.level), render.queue_panel(queue, labels, state.key, flagged), render.reasoning(record)


def item_labels(records: list[dict]) -> dict[str, str]:
    """A short label per item key: the first line of its input."""
    out = {}
    for record in records:
        lines = str(record.get(R.INPUT, "")).strip().splitlines()
        out[item_key(record)] = (lines[0] if lines else "")[:60]
    return out
