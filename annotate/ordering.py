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
from collections import OrderedDict


def _seq(command: dict) -> int | None:
    seq = command.get("seq")
    return seq if isinstance(seq, int) and not isinstance(seq, bool) and seq >= 0 else None


class PageCommands:
    """Per page: the last command run, least recently used pages forgotten first; and the answers' numbers."""

    def __init__(self, capacity: int = 10_000):
        self.capacity = capacity
        self._pages: OrderedDict[str, int] = OrderedDict()
        self._answer = 0
        self._lock = threading.Lock()

    def take(self, page: str, commands: list[dict]) -> tuple[list[dict], int, int]:
        """(the commands not run yet, in typed order; the page's ack after them; this answer's number).

        Unnumbered commands are dropped: the page numbers every command it sends.
        A page this server does not know (a restart under an open page) is taken where it is.
        """
        numbered = sorted((c for c in commands if _seq(c) is not None), key=_seq)
        with self._lock:
            ack = self._pages.pop(page, -1)
            fresh = []
            for command in numbered:
                if command["seq"] > ack:
                    fresh.append(command)
                    ack = command["seq"]
            self._answer = answer = max(self._answer + 1, time.time_ns() // 1000)  # microseconds: exact in JS
            self._pages[page] = ack
            while len(self._pages) > self.capacity:
                self._pages.popitem(last=False)
        return fresh, ack, answer
