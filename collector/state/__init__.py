"""State: stream positions, dedup keys, the durable event spool and each sink's offset, in one
SQLite file written one transaction at a time."""

from collector.state.spool import PageSlice, SpoolRow, SpoolUsage
from collector.state.store import PageResult, Store, StreamState

__all__ = ["PageResult", "PageSlice", "SpoolRow", "SpoolUsage", "Store", "StreamState"]
