"""Worker processes: pages of records normalized and serialized beside the event loop, on other cores.

The pool a collector starts (``[service] workers``) and what runs in it. A package of its own so a
worker process imports only it and the log types (0.12 s and 25 MiB, not the whole collector's 0.35 s
and 42 MiB); the collecting stage hands it whole pages (:class:`PageBuilder`).
"""

from collector.workers.pool import MIN_POOLED_RECORDS, PageBuilder, tune_gc

__all__ = ["MIN_POOLED_RECORDS", "PageBuilder", "tune_gc"]
