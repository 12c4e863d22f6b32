"""The Gradio app: the annotation screen, the reviewer's tab and a small public API.

Imported only by `annotate serve` (gradio is the optional `annotate` extra).
The logged-in user always comes from `gr.Request.username`, never from a form.

Public API (gradio_client, `api_name`):
- `/load_item(key="")` -> {key, version, status, doc, record, queue}; "" resumes where the user left off.
- `/save(key, doc, version, status="draft")` -> {ok, conflict, version, message}; a stale version is a conflict.
- `/export_gold()` -> gold records (reviewers only).
The page's own handlers are `api_visibility="private"`: not in the API page, not callable by name.
"""

from __future__ import annotations

import json
import os
import threading
from collections import Counter, OrderedDict
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # nothing leaves the machine

import gradio as gr  # noqa: E402

from annotate import render  # noqa: E402
from annotate.gold import gold_records, item_state  # noqa: E402
from annotate.ordering import AnswerNumbers, fresh_commands  # noqa: E402
from annotate.phrases import check_doc, pending_count  # noqa: E402
from annotate.review import UNION, candidates, chosen_by, gold_text, initial_choice, review_list, save_gold  # noqa: E402
from annotate.session import AccessError, Reply, SessionState, handle, item_labels, open_item, resume_key, screen  # noqa: E402
from annotate.store import SAVED_STATUSES, Store  # noqa: E402

STATIC = Path(__file__).parent / "static"
MAX_SESSIONS = 10_000
SYSTEM_FONTS = ("ui-sans-serif", "system-ui", "Segoe UI", "Roboto", "Helvetica Neue", "Arial", "Liberation Sans", "sans-serif")


class Sessions:
    """Per-page state keyed by Gradio's session hash (one per page load), least recently used dropped first.

    A page's entry is its user, its SessionState and its ack, the last command run (see annotate.ordering).
    """

    def __init__(self, capacity: int = MAX_SESSIONS):
        self._states: OrderedDict[str, tuple[str, SessionState, int]] = OrderedDict()
        self._lock = threading.Lock()
        self.capacity = capacity

    def get(self, session: str, user: str) -> tuple[SessionState | None, int]:
        """(the state of a page, its ack), only for the user who opened it; (None, -1) for a page not known."""
        with self._lock:
            entry = self._states.get(session)
            if entry is None or entry[0] != user:
                return None, -1
            self._states.move_to_end(session)
            return entry[1], entry[2]

    def put(self, session: str, user: str, state: SessionState, ack: int = -1) -> None:
        """Remember a page's state and ack."""
        with self._lock:
            self._states[session] = (user, state, ack)
            self._states.move_to_end(session)
            while len(self._states) > self.capacity:
                self._states.popitem(last=False)


def current_user(request: gr.Request | None) -> str:
    """The logged-in user; the app always runs with auth, so a missing one is refused."""
    user = getattr(request, "username", None)
    if not user:
        raise gr.Error("log in first")
    return str(user)


def _parse_commands(text: str) -> list[dict]:
    """The page's batch of commands (a JSON list); anything else is no command."""
    try:
        commands = json.loads(text or "[]")
    except json.JSONDecodeError:
        return []
    return [c for c in commands if isinstance(c, dict)] if isinstance(commands, list) else []


class AnnotateApp:
    """Handlers bound to one store and the roles of its users."""

    def __init__(self, store: Store, reviewers: list[str]):
        self.store = store
        self.reviewers = set(reviewers)
        self.sessions = Sessions()
        self.answers = AnswerNumbers()
        self.labels = item_labels(store.items())

    # --- the annotation page --------------------------------------------------
    def on_load(self, request: gr.Request):
        """A page opened (or reloaded): resume at the user's next item."""
        user = current_user(request)
        state, reply = handle(self.store, user, SessionState(), {"op": "open"})
        self.sessions.put(request.session_hash, user, state)
        is_reviewer = user in self.reviewers
        tabs = gr.Tabs(selected="review" if is_reviewer and state.key is None else "annotate")
        return (*screen(self.store, user, state, reply, self.labels, answer=self.answers.next(), ack=-1),
                gr.Tab(visible=is_reviewer), tabs, *self._review_choices(user), render.review_top(user))

    def on_command(self, text: str, request: gr.Request):
        """The commands typed on the page since its last request, run in order (see annotate.ordering)."""
        user = current_user(request)
        state, ack = self.sessions.get(request.session_hash, user)
        commands, ack = fresh_commands(_parse_commands(text), ack)
        if state is None:  # the server restarted under an open page
            state, _ = handle(self.store, user, SessionState(), {"op": "open"})
        reply = Reply()
        for command in commands:
            state, reply = handle(self.store, user, state, command)
        self.sessions.put(request.session_hash, user, state, ack)
        return screen(self.store, user, state, reply, self.labels, answer=self.answers.next(), ack=ack)

    # --- the public API -------------------------------------------------------
    def api_load_item(self, key: str = "", request: gr.Request = None) -> dict:
        """Open an item of your queue ("" = where you left off): its record, your saved version and document."""
        user = current_user(request)
        key = key or resume_key(self.store, user) or ""
        try:
            state = open_item(self.store, user, key)
        except AccessError as exc:
            raise gr.Error(str(exc)) from None
        return {"key": key, "version": state.version, "status": state.status, "doc": state.doc,
                "record": self.store.item(key), "queue": [list(q) for q in self.store.queue(user)]}

    def api_save(self, key: str, doc: dict, version: int, status: str = "draft", request: gr.Request = None) -> dict:
        """Save your document for an item over `version`; a stale version is refused as a conflict."""
        user = current_user(request)
        problem = check_doc(doc)
        if problem is None and status not in SAVED_STATUSES:
            problem = f"status must be one of {SAVED_STATUSES}, got {status!r}"
        if problem is None and status == "submitted" and pending_count(doc):
            problem = "cannot submit with pending phrases"
        if problem is None and not self.store.is_assigned(key, user):
            problem = f"item {key} is not in {user}'s queue"
        if problem:
            return {"ok": False, "conflict": False, "version": int(version), "message": problem}
        result = self.store.save(key, user, doc, int(version), status, "api_save", {"status": status})
        return {"ok": result.ok, "conflict": result.conflict, "version": result.version, "message": result.message}

    def api_export_gold(self, request: gr.Request = None) -> list:
        """The gold records so far, as `annotate export` writes them (reviewers only)."""
        if current_user(request) not in self.reviewers:
            raise gr.Error("only reviewers can export")
        return gold_records(self.store.snapshot())[0]

    # --- the review tab -------------------------------------------------------
    def _review_choices(self, user: str, value: str | None = None):
        """The item list (keeping `value` picked) and the counts per state, fresh from the store."""
        if user not in self.reviewers:
            return gr.Dropdown(choices=[], value=None), ""
        states = review_list(self.store.snapshot())
        counts = Counter(s.state for s in states)
        choices = [(f"{s.key.split(':', 1)[1]} — {s.state} — {self.labels.get(s.key, '')}", s.key) for s in states]
        return gr.Dropdown(choices=choices, value=value), render.review_summary(dict(counts))

    def _reviewer(self, request: gr.Request) -> str:
        user = current_user(request)
        if user not in self.reviewers:
            raise gr.Error("only reviewers can review")
        return user

    def _review_body(self, key: str) -> str:
        state = item_state(key, self.store.snapshot())
        saved = {a.annotator: a for a in self.store.annotations(key=key)}
        versions = [(name, saved[name].status, saved[name].doc) if name in saved else (name, "pending", {})
                    for name in state.assigned]
        review = (state.review.reviewer, state.review.reason) if state.review else None
        return render.review_screen(key, self.store.item(key) or {}, state.state, review, versions, candidates(state))

    def on_review_refresh(self, key: str | None, request: gr.Request):
        """Reload the reviewer's item list and counts (the picked item stays picked)."""
        return self._review_choices(self._reviewer(request), key)

    def on_review_open(self, key: str | None, request: gr.Request):
        """Show the annotators' versions of an item side by side, and the gold to start from."""
        self._reviewer(request)
        if not key:
            return "", gr.Radio(choices=[], value=None), "", "", ""
        state = item_state(key, self.store.snapshot())
        names = [a.annotator for a in state.submitted] + [UNION]
        reason = state.review.reason if state.review else ""
        return self._review_body(key), gr.Radio(choices=names, value=None), gold_text(initial_choice(state)), reason, ""

    def on_review_step(self, key: str | None, step: int, request: gr.Request):
        """Open the next (step 1) or previous (-1) item of the list, wrapping round: after a save, ] goes to the top."""
        user = self._reviewer(request)
        keys = [s.key for s in review_list(self.store.snapshot())]
        i = keys.index(key) + step if key in keys else 0
        target = keys[i % len(keys)] if keys else None
        return (*self._review_choices(user, target), *self.on_review_open(target, request))

    def on_review_source(self, key: str | None, source: str | None, request: gr.Request):
        """Start the gold from one annotator's version, or from the union of all."""
        self._reviewer(request)
        if not key or not source:
            return gr.Textbox()
        return gold_text(chosen_by(item_state(key, self.store.snapshot()), source))

    def on_review_save(self, key: str | None, text: str, source: str | None, reason: str, request: gr.Request):
        """Save the reviewer's gold with its reason; the list, counts and item redrawn from the store."""
        user = self._reviewer(request)
        if not key:
            return render.message("pick an item first", "warn"), *self._review_choices(user), ""
        review = self.store.review(key)
        result = save_gold(self.store, user, key, text or "", reason or "", source or UNION,
                           review.version if review else 0)
        if not result.ok:
            note = render.message(result.message or "not saved", "error")
        else:
            kept = len(self.store.review(key).doc["rows"])
            note = render.message(f"gold saved for {key} (v{result.version}, {kept} phrases)")
        return note, *self._review_choices(user, key), self._review_body(key)


def _asset(name: str) -> str:
    return (STATIC / name).read_text(encoding="utf-8")


def build_blocks(app: AnnotateApp) -> gr.Blocks:
    """The page: the annotation tab for everyone, the review tab for reviewers."""
    with gr.Blocks(title="Gold key phrases", analytics_enabled=False) as demo:
        with gr.Tabs() as tabs:
            with gr.Tab("Annotate", id="annotate"):
                with gr.Row(equal_height=False):
                    with gr.Column(scale=7, min_width=560, elem_id="ann-left"):
                        main = gr.HTML(elem_id="ann-screen")
                        gr.HTML(render.editor(), elem_id="ann-editor-block")
                        msg = gr.HTML(elem_id="ann-message")
                    with gr.Column(scale=3, min_width=280):
                        with gr.Accordion("Teacher's reasoning", open=False, elem_id="ann-reasoning"):
                            raw = gr.HTML()
                        with gr.Accordion("Your queue", open=True, elem_id="ann-queue-acc"):
                            queue = gr.HTML(elem_id="ann-queue")
                cmd = gr.Textbox(visible="hidden", elem_id="ann-cmd")
                run = gr.Button("run", visible="hidden", elem_id="ann-run")
            with gr.Tab("Review", id="review", visible=False) as review_tab:
                rv_top = gr.HTML(elem_id="rv-top")
                with gr.Row():
                    rv_item = gr.Dropdown(label="Item", choices=[], scale=4)
                    rv_prev = gr.Button("◀ Prev", scale=0, min_width=110, elem_id="rv-prev")
                    rv_next = gr.Button("Next ▶", scale=0, min_width=110, elem_id="rv-next")
                    rv_refresh = gr.Button("Refresh list", scale=0, min_width=140, elem_id="rv-refresh")
                rv_summary = gr.HTML(elem_id="rv-summary")
                rv_body = gr.HTML(elem_id="rv-body")
                rv_source = gr.Radio(label="Start from", choices=[])
                rv_gold = gr.Textbox(label="Gold phrases: one `explicit: phrase` or `implicit: phrase` a line (e: / i:)",
                                     lines=6, elem_id="rv-gold")
                rv_reason = gr.Textbox(label="Reason for this choice", lines=2, elem_id="rv-reason")
                rv_save = gr.Button("Save gold (Ctrl+Enter)", variant="primary", elem_id="rv-save")
                rv_msg = gr.HTML(elem_id="rv-msg")
        hidden = {"api_visibility": "private", "show_progress": "hidden"}
        demo.load(app.on_load, None, [main, msg, queue, raw, review_tab, tabs, rv_item, rv_summary, rv_top], **hidden)
        run.click(app.on_command, [cmd], [main, msg, queue, raw], js="(c) => [window.__annTake ? window.__annTake() : c]",
                  trigger_mode="multiple", **hidden)  # the page keeps one request in flight: see annotate.ordering
        opened = [rv_body, rv_source, rv_gold, rv_reason, rv_msg]
        rv_refresh.click(app.on_review_refresh, [rv_item], [rv_item, rv_summary], **hidden)
        rv_item.input(app.on_review_open, [rv_item], opened, **hidden)  # a pick by the reviewer, not a redraw
        for button, step in ((rv_prev, -1), (rv_next, 1)):
            button.click(app.on_review_step, [rv_item, gr.State(step)], [rv_item, rv_summary, *opened], **hidden)
        rv_source.input(app.on_review_source, [rv_item, rv_source], [rv_gold], **hidden)
        rv_save.click(app.on_review_save, [rv_item, rv_gold, rv_source, rv_reason], [rv_msg, rv_item, rv_summary, rv_body],
                      **hidden)
        gr.api(app.api_load_item, api_name="load_item", concurrency_limit=None)
        gr.api(app.api_save, api_name="save", concurrency_limit=None)
        gr.api(app.api_export_gold, api_name="export_gold", concurrency_limit=None)
    return demo


def launch(store: Store, accounts: list[tuple[str, str]], reviewers: list[str], host: str = "127.0.0.1",
           port: int = 7860, block: bool = True, quiet: bool = False) -> tuple[gr.Blocks, str]:
    """Serve the app with log-in; returns (blocks, local url) when `block` is False."""
    demo = build_blocks(AnnotateApp(store, reviewers))
    demo.queue(default_concurrency_limit=1)  # one page request at a time: saves never race
    _, url, _ = demo.launch(
        server_name=host, server_port=port, auth=accounts, auth_message="Gold key phrases: log in to annotate.",
        prevent_thread_lock=not block, quiet=quiet, share=False, run_history=False, footer_links=["api"],
        enable_monitoring=False, mcp_server=False, ssr_mode=False, show_error=False,
        theme=gr.themes.Soft(primary_hue="indigo", neutral_hue="slate", font=SYSTEM_FONTS), css=_asset("annotate.css"),
        head=f"<script>{_asset('annotate.js')}</script>",
    )
    return demo, url
