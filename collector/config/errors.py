"""The root of the collector's small exception family, and the config mistake every stage may raise.

Each stage defines its own errors under :class:`CollectorError`: ``ApiError`` (collector.api),
``StoreError`` (collector.state), ``SinkError`` (collector.sinks), ``StartupError`` (collector.service).
"""

from __future__ import annotations


class CollectorError(Exception):
    """Root of every error this package raises on purpose."""


class ConfigError(CollectorError):
    """A configuration mistake: names the key and the fix, in one line."""

    def __init__(self, key: str, problem: str, fix: str) -> None:
        self.key = key
        self.problem = problem
        self.fix = fix
        super().__init__(f"{key}: {problem}; fix: {fix}")
