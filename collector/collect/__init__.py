"""Collecting: one generic poller per stream (account x log type, or x batch type for SIEM batch files)
that fetches events and commits them with the stream's next position in one transaction.

Cursor kinds. A log type declares ``cursor_kind`` (:class:`collector.logtypes.CursorKind`); the poller
runs the strategy :data:`STRATEGIES` maps it to:

- ``WINDOWED`` -> :class:`~collector.collect.windowed.WindowedPages`: ``[window_start, window_end]`` +
  page token, in the streams table's own columns (TTP, archive search, ...).
- ``SIEM_TOKEN``: API 1.0 ``get-siem-logs``, the ``mc-siem-token`` of the last file committed.
- ``SIEM_BATCH``: API 2.0 batch files, per type: the listing's ``nextPage``, the files of it done,
  the lines of the current file committed.

Non-windowed kinds keep their position as JSON text in ``StreamState.cursor`` (the streams table's
``cursor`` column), which only their strategy reads; they also move ``window_start`` to the newest
event time committed, so ``status`` shows a position and a lag for every kind.

The interface (:mod:`collector.collect.strategy`). Shared, once, in :class:`Poller` (which is the
strategy's :class:`StreamContext`): error handling and the retry-later path (``stream_failed``,
``stream_crashed``, ``fatal_retry_secs``), telemetry and status, backpressure (``ctx.before_fetch()``
before each fetch), ``on_commit``, once-mode (``ctx.caught_up()``), and the commit itself
(``ctx.commit(events, next_state, seen_until=..., prune_before=...)``: events + dedup keys + the whole
next position in ONE store transaction). A strategy is ``factory(ctx) -> CursorStrategy`` with:

- ``async collect() -> bool``: fetch and commit until cancelled, or True once caught up in once-mode;
  raise ``ApiError`` (fatal) and let the poller report it and retry later from the last commit;
- ``describe(state) -> dict``: where the stream resumes, for the ``stream_started`` log line.

Adding a kind: a member of ``CursorKind``, a module here with its strategy, a line in
:data:`STRATEGIES`.
"""

from collector.collect.poller import STRATEGIES, Poller
from collector.collect.spec import StreamSpec, stream_labels
from collector.collect.strategy import CursorStrategy, StreamContext

__all__ = ["STRATEGIES", "CursorStrategy", "Poller", "StreamContext", "StreamSpec", "stream_labels"]
