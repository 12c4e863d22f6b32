"""HTML of the annotation and review screens. Every piece of model or user text goes through `esc`.

Pure functions from data to markup; the Gradio layer only places them.
"""

from __future__ import annotations

import html
from collections.abc import Iterable

from annotate.phrases import DECISION, HINT, ORIGIN, PHRASE, ROWS, TYPE, final_phrases, flag_of, grounded, highlight_spans
from ground import records as R

DECISION_LABEL = {"pending": "pending", "accept": "✓ accepted", "reject": "✗ rejected", "edit": "✎ edited", "add": "+ added"}
STATUS_LABEL = {"pending": "pending", "draft": "draft", "submitted": "submitted"}

# (keys, what they do): the help overlay and the cheat sheet are built from this one table.
KEYS: tuple[tuple[str, str], ...] = (
    ("j / ↓", "next phrase"),
    ("k / ↑", "previous phrase"),
    ("a", "accept phrase"),
    ("x", "reject phrase"),
    ("e", "edit phrase (Enter saves, Esc cancels)"),
    ("n", "new phrase (Enter adds, Esc cancels)"),
    ("Tab, then e / i", "in the phrase box: choose explicit or implicit"),
    ("t", "switch explicit / implicit"),
    ("Shift+A", "accept all pending phrases"),
    ("u", "undo last change"),
    ("d", "save draft (changes autosave anyway)"),
    ("Enter", "submit and go to the next item"),
    ("] / →", "next item"),
    ("[ / ←", "previous item"),
    ("f", "flag item for review (type a reason, Enter) / unflag"),
    ("g", "show / hide the teacher's reasoning"),
    ("r", "reload the latest saved version"),
    ("?", "this help"),
    ("Esc", "close help, leave the phrase box"),
)


def esc(text: object) -> str:
    """Text as inert HTML (quotes escaped too, so it is safe inside attributes)."""
    return html.escape("" if text is None else str(text), quote=True)


def highlighted(text: str, phrases: Iterable[str]) -> str:
    """The input text, escaped, with the phrases marked where they occur."""
    out, last = [], 0
    for start, end in highlight_spans(text, phrases):
        out.append(esc(text[last:start]))
        out.append(f'<mark class="hl">{esc(text[start:end])}</mark>')
        last = end
    out.append(esc(text[last:]))
    return "".join(out)


UNGROUNDED = (' <span class="ungrounded" title="explicit, but not found in the input text: check it">'
              '⚠ not in input</span>')


def _row(i: int, row: dict, cursor: int, record: dict) -> str:
    decision, kind = row[DECISION], row[TYPE]
    was = ""
    if row.get(ORIGIN) is not None and row[PHRASE] != row[ORIGIN]:
        was = f'<span class="was">teacher: {esc(row[ORIGIN])}</span>'
    hint = esc(row.get(HINT) or "")
    guess = ' <span class="guess" title="type guessed: not found in the text">?</span>' if row.get(HINT) == "guess" else ""
    if kind == R.EXPLICIT and not grounded(row[PHRASE], record):
        guess += UNGROUNDED
    return (
        f'<tr class="ann-row d-{esc(decision)}{" cur" if i == cursor else ""}" data-idx="{i}">'
        f'<td class="n">{i + 1}</td><td class="p"><span class="ph">{esc(row[PHRASE])}</span>{was}</td>'
        f'<td><span class="t t-{esc(kind)}" title="{hint}">{esc(kind)}</span>{guess}</td>'
        f'<td><span class="d">{esc(DECISION_LABEL.get(decision, decision))}</span></td></tr>'
    )


def phrase_table(doc: dict, cursor: int, record: dict) -> str:
    """The phrase rows with type and decision; the row under the cursor marked, explicit ones not in the input too."""
    rows = "".join(_row(i, r, cursor, record) for i, r in enumerate(doc[ROWS]))
    if not rows:
        rows = '<tr class="empty"><td colspan="4">No phrases yet: press <kbd>n</kbd> to add one.</td></tr>'
    head = "<thead><tr><th>#</th><th>Key phrase</th><th>Type</th><th>Decision</th></tr></thead>"
    return f'<table class="ann-rows">{head}<tbody>{rows}</tbody></table>'


def _progress(done: int, total: int) -> str:
    pct = 100 * done / total if total else 0
    return (f'<span class="ann-progress" title="submitted / assigned to you"><b>{done}</b> / {total} done'
            f'<span class="bar"><i style="width:{pct:.1f}%"></i></span></span>')


def answer_badge(record: dict) -> str:
    """A loud badge when the teacher's answer is not a whole one (truncated, unparsed, failed)."""
    status = record.get(R.STATUS, "ok")
    if status == "ok":
        return ""
    return (f'<span class="ann-badge ann-answer" title="the teacher\'s answer is not complete: check its phrases">'
            f'⚠ answer {esc(status)}</span>')


def flag_banner(doc: dict) -> str:
    """The flag and its reason, while the item is flagged."""
    reason = flag_of(doc)
    if reason is None:
        return ""
    return (f'<div class="ann-flag">⚑ Flagged for review{": " + esc(reason) if reason else ""}'
            '<span class="sum">f removes the flag</span></div>')


def main_screen(record: dict, doc: dict, *, version: int, status: str, cursor: int, done: int, total: int,
                position: int, user: str, suggestions: list[str], cursor_set: int | None, answer: int, ack: int) -> str:
    """The item card: header, input text with explicit phrases marked, phrase rows, suggestion list."""
    explicit = [r[PHRASE] for r in doc[ROWS] if r[TYPE] == R.EXPLICIT and r[DECISION] != "reject"]
    teacher = f'teacher {esc(record.get(R.MODEL) or "?")} · answer {esc(record.get(R.STATUS, "?"))}'
    options = "".join(f'<option value="{esc(s)}"></option>' for s in suggestions)
    kept = len(final_phrases(doc))
    pending = sum(1 for r in doc[ROWS] if r[DECISION] == "pending")
    attrs = (f'data-key="{esc(f"{record[R.LEVEL]}:{record[R.ID]}")}" data-version="{version}" '
             f'data-rows="{len(doc[ROWS])}" data-answer="{answer}" data-ack="{ack}" data-user="{esc(user)}" '
             f'data-flagged="{"1" if flag_of(doc) is not None else "0"}"'
             + (f' data-cursor-set="{cursor_set}"' if cursor_set is not None else ""))
    return (
        f'<div id="ann-main" class="ann-main" {attrs}>'
        f'<div class="ann-top"><span class="ann-id"><span class="lvl">{esc(record[R.LEVEL])}</span>'
        f'{esc(record[R.ID])}</span>'
        f'<span class="ann-badge st-{esc(status)}">{esc(STATUS_LABEL.get(status, status))} · v{version}</span>'
        f'{answer_badge(record)}<span class="ann-pos">#{position} of {total}</span>{_progress(done, total)}'
        f'<span class="ann-user">{esc(user)} · <a href="/logout">log out</a></span></div>{flag_banner(doc)}'
        f'<div class="ann-card ann-input"><div class="ann-label">Input <span class="sum">{teacher}</span></div>'
        f'<div class="ann-text">{highlighted(str(record.get(R.INPUT, "")), explicit)}</div></div>'
        f'<div class="ann-card"><div class="ann-label">Key phrases <span class="sum">{kept} kept · {pending} pending</span>'
        f'</div>{phrase_table(doc, cursor, record)}</div>'
        f'<datalist id="ann-suggest">{options}</datalist></div>'
    )


def message(text: str, level: str = "info") -> str:
    """The one-line status under the editor; a question (level confirm) is an alert."""
    if not text:
        return '<div class="ann-msg"></div>'
    role = "alertdialog" if level == "confirm" else "status"
    return f'<div class="ann-msg lvl-{esc(level)}" role="{role}">{esc(text)}</div>'


def queue_panel(queue: list[tuple[str, str]], labels: dict[str, str], current: str | None, flagged: set[str]) -> str:
    """Counts per status (and flagged) and the annotator's items, each a link to open it."""
    counts = {s: sum(1 for _, st in queue if st == s) for s in STATUS_LABEL}
    chips = "".join(f'<span class="chip st-{s}">{esc(STATUS_LABEL[s])} <b>{n}</b></span>' for s, n in counts.items())
    chips += f'<span class="chip st-flagged">⚑ flagged <b>{len(flagged)}</b></span>' if flagged else ""
    items = "".join(
        f'<a class="q-item st-{esc(st)}{" cur" if key == current else ""}" data-goto="{esc(key)}" href="#" '
        f'title="{esc(labels.get(key, key))}"><span class="dot"></span><span class="q-id">{esc(key.split(":", 1)[1])}</span>'
        f'{"<span class=q-flag>⚑</span>" if key in flagged else ""}<span class="q-name">{esc(labels.get(key, ""))}</span></a>'
        for key, st in queue
    )
    return f'<div class="ann-queue"><div class="chips">{chips}</div><div class="q-list">{items}</div></div>'


def reasoning(record: dict) -> str:
    """The teacher's whole answer, escaped, line breaks kept."""
    raw = record.get(R.RAW) or "(the teacher gave no text)"
    return f'<pre class="ann-raw">{esc(raw)}</pre>'


def help_table() -> str:
    """The keyboard help rows."""
    return "".join(f"<tr><td><kbd>{esc(k)}</kbd></td><td>{esc(what)}</td></tr>" for k, what in KEYS)


def _buttons(specs: list[tuple[str, str, str]]) -> str:
    return "".join(f'<button type="button" class="ann-btn b-{op}" data-op="{op}">{esc(label)} <kbd>{esc(key)}</kbd></button>'
                   for op, label, key in specs)


def editor() -> str:
    """The static phrase box, type choice and action buttons (never re-rendered, so typing is never lost)."""
    phrase_ops = [("accept", "Accept", "a"), ("reject", "Reject", "x"), ("edit", "Edit", "e"), ("add", "New", "n"),
                  ("toggle", "Type", "t"), ("undo", "Undo", "u")]
    item_ops = [("prev", "◀ Prev", "["), ("next", "Next ▶", "]"), ("flag", "Flag", "f"), ("draft", "Draft", "d"),
                ("help", "Keys", "?"), ("submit", "Submit & next", "Enter")]
    return (
        '<div class="ann-editor"><span class="ann-mode" id="ann-mode">new</span>'
        '<input id="ann-phrase" list="ann-suggest" autocomplete="off" spellcheck="false" maxlength="120" '
        'placeholder="n: new phrase · e: edit selected · Enter saves · Esc cancels" title="suggestions: phrases you used before" '
        'data-placeholder-flag="why flag this item? (optional) · Enter flags · Esc cancels" />'
        '<select id="ann-ptype" title="type of the phrase"><option value="" selected>auto</option>'
        '<option value="explicit">explicit</option><option value="implicit">implicit</option></select>'
        '<button type="button" class="ann-btn b-commit" data-op="commit">Save phrase <kbd>Enter</kbd></button></div>'
        f'<div class="ann-actions"><div class="grp">{_buttons(phrase_ops)}'
        '<span id="ann-sync" class="ann-sync" data-state="idle" title="whether the server has your last keys">✓ up to date</span></div>'
        f'<div class="grp">{_buttons(item_ops)}</div></div>'
        f'<div id="ann-help" class="ann-help" hidden><div class="box"><h3>Keyboard</h3><table>{help_table()}</table>'
        '<p>Keys are ignored while you type in a text box. Every change is saved as a draft at once.</p>'
        '<p class="close">Esc or ? to close</p></div></div>'
    )


def _flag_note(doc: dict) -> str:
    reason = flag_of(doc)
    if reason is None:
        return ""
    return f'<div class="rv-flag">⚑ flagged{": " + esc(reason) if reason else " (no reason given)"}</div>'


def review_columns(versions: list[tuple[str, str, dict]]) -> str:
    """Annotators' versions side by side: (name, status, doc) each, with a flag's reason."""
    cols = []
    for name, status, doc in versions:
        rows = "".join(
            f'<li class="d-{esc(r[DECISION])}"><span class="t t-{esc(r[TYPE])}">{esc(r[TYPE][:3])}</span>'
            f'{esc(r[PHRASE])}<span class="d">{esc(DECISION_LABEL.get(r[DECISION], r[DECISION]))}</span></li>'
            for r in doc.get(ROWS, [])
        )
        cols.append(f'<div class="rv-col"><h4>{esc(name)} <span class="ann-badge st-{esc(status)}">{esc(status)}</span>'
                    f'</h4>{_flag_note(doc)}<ul>{rows}</ul></div>')
    return f'<div class="rv-cols">{"".join(cols) or "<p>No annotations yet.</p>"}</div>'


def _candidate_list(found: list[tuple[str, str, list[str]]], annotators: int) -> str:
    items = "".join(f'<li><span class="t t-{esc(kind)}">{esc(kind[:3])}</span>{esc(phrase)}'
                    f'<span class="d">{len(names)}/{annotators} ({esc(", ".join(names))})</span></li>'
                    for phrase, kind, names in found)
    return f'<div class="rv-cands"><h4>Kept by the annotators</h4><ul>{items}</ul></div>' if items else ""


def review_screen(key: str, record: dict, state: str, review: tuple[str, str] | None,
                  versions: list[tuple[str, str, dict]], found: list[tuple[str, str, list[str]]]) -> str:
    """The reviewer's view of an item: state, input, the annotators' versions, what they kept, the teacher's reasoning.

    `review` is (reviewer, reason); `found` is (phrase, type, who kept it) per distinct kept phrase.
    """
    reviewed = f" · reviewed by {esc(review[0])}: {esc(review[1])}" if review else ""
    submitted = sum(1 for _, status, _ in versions if status == "submitted")
    return (f'<div class="rv-head" data-key="{esc(key)}" data-state="{esc(state)}"><b>{esc(key)}</b> · '
            f'<span class="rv-state">{esc(state)}</span>{reviewed}{answer_badge(record)}</div>'
            f'<div class="ann-text">{esc(record.get(R.INPUT, ""))}</div>{review_columns(versions)}'
            f'{_candidate_list(found, submitted)}'
            f'<details class="rv-raw" open><summary>Teacher\'s reasoning</summary>{reasoning(record)}</details>')


def review_top(user: str) -> str:
    """The reviewer's header: who is logged in, log-out, the keys."""
    return (f'<div class="rv-top"><span class="rv-keys"><kbd>Ctrl+Enter</kbd> save gold · <kbd>]</kbd> / <kbd>[</kbd> '
            f'next / previous item · <kbd>r</kbd> refresh the list (keys outside text boxes)</span>'
            f'<span class="ann-user">{esc(user)} · <a href="/logout">log out</a></span></div>')


def review_summary(counts: dict[str, int]) -> str:
    """Items per review state."""
    return '<div class="rv-summary">' + " · ".join(f"{esc(k)}: <b>{v}</b>" for k, v in counts.items()) + "</div>"
