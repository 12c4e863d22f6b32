"""Undo from the store's action log, so it survives a reload and a server restart.

Every save of an annotation is a version in the log. An undo saves the document (and status) of
an earlier version again and records which one in its payload (`to`; 0 is the teacher's original,
status pending). A version's *effective* version is itself for an ordinary save and its `to` for an
undo: the state it holds. Undoing goes from the effective version `e` of the latest save to the
effective version of `e - 1`, so a run of undos steps back through the saves like an editor's undo
stack, skipping changes that were themselves undone.
"""

from __future__ import annotations

UNDO, TO = "undo", "to"


def _effective(history: list[dict]) -> dict[int, int]:
    """Version -> the version whose state it holds, for every version in the log."""
    effective = {0: 0}
    for action in history:
        to = action["payload"].get(TO) if action["action"] == UNDO else None
        version = action["version"]
        effective[version] = to if isinstance(to, int) and not isinstance(to, bool) and 0 <= to < version else version
    return effective


def undo_target(history: list[dict], current: int) -> int | None:
    """The version an undo at `current` goes back to (0: the original), or None when nothing is left to undo.

    `history` is the item's log for one annotator, in order (dicts with version, action, payload).
    """
    effective = _effective(history)
    state = effective.get(current, current)
    if state == 0:
        return None
    return effective.get(state - 1, state - 1)
