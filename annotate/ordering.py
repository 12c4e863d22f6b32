"""The commands of one page: each runs once, in the order it was typed.

The page numbers its commands (`seq`, from 0 at each page load) and keeps one
request in flight: what is typed meanwhile waits on the page and goes with the
next request. Two requests in flight could be answered in either order, and
the page would then draw the older answer over the newer (seen in the browser
tests: "accept all" then "submit" ran, but the page showed the item before the
submit). A request whose answer never comes is sent again with all it held;
the commands it repeats are dropped here. Every answer carries `ack`, the last
command run for the page, so the page knows what it may forget, and `answer`,
the answer's number, so the page can tell an old answer from a new one.
"""

from __future__ import annotations

import threading
from collections import OrderedDict


def _seq(command: dict) -> int | None:
    seq = command.get("seq")
    return seq if isinstance(seq, int) and not isinstance(seq, bool) and seq >= 0 else None


class PageCommands:
    """Per page: the last command run and the number of answers given, least recently used pages forgotten first."""

    def __init__(self, capacity: int = 10_000):
        self.capacity = capacity
        self._pages: OrderedDict[str, tuple[int, int]] = OrderedDict()
        self._lock = threading.Lock()

    def take(self, page: str, commands: list[dict]) -> tuple[list[dict], int, int]:
        """(the commands not run yet, in typed order; the page's ack after them; this answer's number).

        Unnumbered commands are dropped: the page numbers every command it sends.
        A page this server does not know (a restart under an open page) is taken where it is.
        """
        numbered = sorted((c for c in commands if _seq(c) is not None), key=_seq)
        with self._lock:
            ack, answers = self._pages.pop(page, (-1, 0))
            fresh = []
            for command in numbered:
                if command["seq"] > ack:
                    fresh.append(command)
                    ack = command["seq"]
            answers += 1
            self._pages[page] = (ack, answers)
            while len(self._pages) > self.capacity:
                self._pages.popitem(last=False)
        return fresh, ack, answers
