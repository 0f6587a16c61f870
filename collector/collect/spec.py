"""What one stream is: an account, a log type (one batch ``type`` of it, for SIEM batch files), where
to ask and how much per page. Built from the config; the poller and its strategies only read it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from collector.config.model import AccountConfig
from collector.logtypes import LOG_TYPES, LogType


@dataclass(frozen=True)
class StreamSpec:
    account: AccountConfig
    log_type: LogType
    path: str
    page_size: int
    filters: dict[str, Any] = field(default_factory=dict)
    path_configured: bool = False  # a configured path is always used, never swapped for another

    @property
    def name(self) -> str:
        return f"{self.account.name}/{self.log_type.name}"

    @classmethod
    def for_account(cls, account: AccountConfig) -> list[StreamSpec]:
        """One spec per stream: per configured log type, or per batch ``type`` of a SIEM batch log type."""
        specs = []
        for name in account.streams:
            log_type = LOG_TYPES[name]
            options = account.stream_options.get(name)
            if log_type.batch_types:
                chosen = options.types if options and options.types else log_type.batch_types
                variants = [log_type.for_batch_type(batch_type) for batch_type in chosen]
            else:
                variants = [log_type]
            for variant in variants:
                specs.append(
                    cls(
                        account=account,
                        log_type=variant,
                        path=(options.path if options and options.path else log_type.path),
                        page_size=(options.page_size if options and options.page_size else account.page_size),
                        filters=dict(options.filters) if options else {},
                        path_configured=bool(options and options.path),
                    )
                )
        return specs


def stream_labels(account: AccountConfig) -> list[str]:
    """The ``log_type`` label of each of the account's streams, as the state file and metrics name them."""
    return [spec.log_type.name for spec in StreamSpec.for_account(account)]
