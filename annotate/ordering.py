"""The commands of one page: each runs once, in the order it was typed.

The page numbers its commands (`seq`, from 0 at each page load) and keeps one
request in flight: what is typed meanwhile waits on the page and goes with the
next request. Two requests in flight could be answered in either order, and
the page would then draw the older answer over the newer (seen in the browser
tests: "accept all" then "submit" ran, but the page showed the item before the
submit). A request whose answer never comes is sent again with all it held;
the commands it repeats are dropped here. Every answer carries `ack`, the last
command run for the page, so the page knows what it may forget, and `answer`,
a number that grows with every answer, across pages and server restarts (it
starts from the clock), so the page can tell an old answer from a new one.
"""

from __future__ import annotations

import threading
import time


def _seq(command: dict) -> int | None:
    seq = command.get("seq")
    return seq if isinstance(seq, int) and not isinstance(seq, bool) and seq >= 0 else None


def fresh_commands(commands: list[dict], ack: int) -> tuple[list[dict], int]:
    """(the commands after `ack` not run yet, in typed order; the page's ack after them).

    Unnumbered commands are dropped: the page numbers every command it sends. A page the server
    does not know (a restart under an open page) comes with ack -1 and is taken where it is.
    """
    fresh = []
    for command in sorted((c for c in commands if _seq(c) is not None), key=_seq):
        if command["seq"] > ack:
            fresh.append(command)
            ack = command["seq"]
    return fresh, ack


class AnswerNumbers:
    """Numbers for the answers, growing across pages and server restarts: they start from the clock."""

    def __init__(self):
        self._last = 0
        self._lock = threading.Lock()

    def next(self) -> int:
        """A number above every one given before (microseconds: exact in a JS number)."""
        with self._lock:
            self._last = max(self._last + 1, time.time_ns() // 1000)
            return self._last
