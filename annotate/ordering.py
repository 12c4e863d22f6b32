"""Commands of one page, run in the order they were typed.

Every key press on the page is its own request, and two requests sent a
millisecond apart can reach the server in either order: "accept all" then
"submit" must never run as "submit" (refused: rows pending) then "accept all".
The page numbers its commands (`seq`, from 0 at each page load); one that
arrives early is held until those before it have run. A gap not filled within
`gap_s` seconds (a request lost with a dropped connection) is skipped when the
next command arrives, so a page never stays frozen.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict


class CommandOrder:
    """Per-page sequence numbers and the commands held until their turn."""

    def __init__(self, gap_s: float = 5.0, capacity: int = 10_000):
        self.gap_s, self.capacity = gap_s, capacity
        self._pages: OrderedDict[str, tuple[int, dict[int, tuple[float, dict]]]] = OrderedDict()
        self._lock = threading.Lock()

    def arrive(self, page: str, command: dict, now: float | None = None) -> list[dict]:
        """The commands of `page` that may run now, in order: none, this one, or this one and those it unblocked."""
        seq = command.get("seq")
        if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0:
            return [command]  # an unnumbered command (an older page script) runs as it comes
        now = time.monotonic() if now is None else now
        with self._lock:
            expected, held = self._pages.pop(page, (None, {}))
            if seq == 0 or expected is None:  # a fresh page, or a server that restarted under an open one
                expected, held = seq, {}
            if seq < expected or seq in held:
                ready = []  # a repeat of a command already run or held
            else:
                held[seq] = (now, command)
                ready = []
                while held:
                    if expected in held:
                        ready.append(held.pop(expected)[1])
                        expected += 1
                    elif now - min(t for t, _ in held.values()) > self.gap_s:
                        expected = min(held)  # give up on the missing one
                    else:
                        break
            self._pages[page] = (expected, held)
            while len(self._pages) > self.capacity:
                self._pages.popitem(last=False)
        return ready
