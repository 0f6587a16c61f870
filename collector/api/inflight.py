"""How many fetched pages the whole process holds at once, across every account and stream.

Each stream fetches one page at a time, but hundreds of streams fetch side by side and every page
then waits its turn for the one state file's commit: unbounded, 500 accounts x 3 streams held 1,500
parsed pages (bench/scale.py: 926 MiB peak). A stream takes a permit once the pacer has granted its
call (so a stream waiting on its own account's rate limit blocks no other account) and gives it back
when its page is committed, when it finds nothing more to fetch, when the call fails, or when it
makes its next call. So a permit's holder waits on nothing but the commit and the CPU: no deadlock
between permits and the pacers' slots.
"""

from __future__ import annotations

import anyio

PAGES_IN_FLIGHT = 16  # x a page of 500 records (about 1.5 MiB parsed): tens of MiB, not hundreds


class PageGate:
    def __init__(self, limit: int = PAGES_IN_FLIGHT) -> None:
        self.limit = limit
        self._permits = anyio.Semaphore(limit)
        self._holders: set[str] = set()

    @property
    def held(self) -> int:
        return len(self._holders)

    async def enter(self, stream: str) -> None:
        """Wait for a permit, unless ``stream`` holds one already."""
        if stream in self._holders:
            return
        await self._permits.acquire()  # cancelled while waiting: no permit taken
        self._holders.add(stream)

    def leave(self, stream: str) -> None:
        """Give ``stream``'s permit back; nothing happens if it holds none."""
        if stream in self._holders:
            self._holders.discard(stream)
            self._permits.release()
