"""``type = "elasticsearch"``: the ``_bulk`` API with ``create`` actions, so re-delivery is harmless.

Each event's ``_id`` is derived from its account, log type and dedup key: sending a batch again
after a crash or a partial failure makes Elasticsearch answer 409 for the events it already has,
which counts as delivered. Per-item answers decide the rest:

======================  =====================================================================
item status             what happens
======================  =====================================================================
200, 201                delivered
409                     already there (an earlier attempt got through): delivered
429, 5xx                the whole batch is sent again after a backoff (already-created items
                        then answer 409)
other 4xx (mapping)     written to the dead-letter file with the error, counted, logged;
                        never silently dropped, never retried forever
======================  =====================================================================

Note: with a data stream the ``_id`` is unique per backing index, so a re-delivery that spans a
rollover can still duplicate.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import orjson

from collector.config.errors import ConfigError
from collector.config.options import WRITE_FILE, Secret, option
from collector.logs import get_logger
from collector.sinks.base import OutEvent, SinkContext, SinkError, SinkPlugin, SinkSettings
from collector.sinks.file import write_all
from collector.sinks.httpbase import (
    RETRYABLE_STATUSES,
    HttpClient,
    HttpSettings,
    HttpSinkBase,
    basic_authorization,
    join_url,
)


@dataclass(frozen=True, kw_only=True)
class ElasticsearchSettings(HttpSettings):
    index: str = option("logs-{dataset}-default", doc="index or data stream; {dataset} = mimecast.<log type>")
    api_key: Secret | None = option(None, secret=True, doc="API key, base64 id:key as Kibana shows it")
    username: str | None = option(None, doc="basic auth user (with password)")
    password: Secret | None = option(None, secret=True)
    pipeline: str | None = option(None, doc="ingest pipeline")
    dead_letter_path: Path | None = option(
        None, doc="rejected events; default dead-letter-<sink>.jsonl by the state", path_kind=WRITE_FILE
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.format != "json":  # the sink indexes the ECS document; another encoding would be made for nothing
            raise ConfigError(
                f"sinks.{self.name}.format",
                f'"{self.format}" is not what Elasticsearch indexes',
                'remove format (Elasticsearch always gets the ECS document, "json")',
            )
        if self.api_key is not None and (self.username or self.password):
            raise ConfigError(
                f"sinks.{self.name}.api_key",
                "api_key and username/password are both set",
                "keep one way of authenticating",
            )
        if (self.username is None) != (self.password is None):
            raise ConfigError(f"sinks.{self.name}.username", "username and password go together", "set both")

    def explicit_auth(self) -> str | None:
        return next((k for k in ("api_key", "username", "password") if getattr(self, k) is not None), None)


def document_id(event: OutEvent) -> str:
    """Stable across re-deliveries and unique across accounts and log types."""
    return f"{event.account}:{event.log_type}:{event.key}"


class ElasticsearchSink(HttpSinkBase):
    def __init__(self, settings: ElasticsearchSettings, context: SinkContext) -> None:
        self.settings = settings
        headers = {"Content-Type": "application/x-ndjson"}
        if settings.api_key is not None:
            headers["Authorization"] = f"ApiKey {settings.api_key.reveal()}"
        elif settings.username is not None and settings.password is not None:
            headers["Authorization"] = basic_authorization(settings.username, settings.password.reveal())
        self._http = HttpClient(settings, headers)
        self.dead_letter_path = settings.dead_letter_path or context.state_dir / f"dead-letter-{settings.name}.jsonl"
        self.dead_lettered = 0
        self._telemetry = context.telemetry
        self._log = get_logger(sink=settings.name)

    async def send_batch(self, events: Sequence[OutEvent]) -> None:
        if not events:
            return
        url = join_url(self.settings.url, "/_bulk") + (
            f"?pipeline={self.settings.pipeline}" if self.settings.pipeline else ""
        )
        answer = await self._http.request("POST", url, self._body(events))
        try:
            result = orjson.loads(answer.body)
            items = [next(iter(item.values())) for item in result["items"]] if result.get("errors") else []
        except (ValueError, KeyError, TypeError, AttributeError, StopIteration):
            raise SinkError(f"_bulk answer is not the expected JSON: {answer.body[:200]!r}") from None
        if not items:
            return  # "errors": false: every item created
        if len(items) != len(events):
            raise SinkError(f"_bulk answered {len(items)} items for {len(events)} events")
        rejected = self._rejected(events, items)
        if rejected:
            await anyio.to_thread.run_sync(self._dead_letter, rejected)

    def _body(self, events: Sequence[OutEvent]) -> bytes:
        lines = []
        for event in events:
            index = self.settings.index.replace("{dataset}", f"mimecast.{event.log_type or 'event'}")
            lines.append(orjson.dumps({"create": {"_index": index, "_id": document_id(event)}}))
            lines.append(event.line)  # the ECS document: format can only be "json"
        return b"\n".join(lines) + b"\n"

    def _rejected(self, events: Sequence[OutEvent], items: list[dict[str, Any]]) -> list[tuple[OutEvent, int, Any]]:
        """Items refused for good; raises a retryable SinkError if any item may succeed later."""
        rejected = []
        retry = None
        for event, item in zip(events, items, strict=True):
            status = int(item.get("status", 500))
            if status < 300 or status == 409:
                continue
            if status in RETRYABLE_STATUSES:
                retry = retry or f"item {document_id(event)} answered {status}: {_reason(item)}"
            else:
                rejected.append((event, status, item.get("error")))
        if retry is not None:  # resend everything; what was created answers 409 next time
            raise SinkError(f"_bulk partly failed, retrying the batch: {retry}")
        return rejected

    def _dead_letter(self, rejected: list[tuple[OutEvent, int, Any]]) -> None:
        lines = [
            orjson.dumps({"_id": document_id(e), "status": s, "error": err, "event": orjson.Fragment(e.doc)})
            for e, s, err in rejected
        ]
        try:
            self.dead_letter_path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.dead_letter_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
            try:
                write_all(fd, b"\n".join(lines) + b"\n")
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:  # cannot park them: keep the batch in the spool instead
            raise SinkError(f"cannot write dead-letter file {self.dead_letter_path}: {exc.strerror}") from None
        self.dead_lettered += len(rejected)
        if self._telemetry is not None:
            self._telemetry.events_dead_lettered.labels(self.settings.name).inc(len(rejected))
        self._log.warning(
            "events_dead_lettered",
            count=len(rejected),
            path=str(self.dead_letter_path),
            first_error=_reason({"error": rejected[0][2]}),
            status=rejected[0][1],
        )

    async def health_check(self) -> None:
        """The cluster answers GET / with its name (authentication included; no event sent)."""
        answer = await self._http.request("GET", join_url(self.settings.url, "/"))
        if b"cluster_name" not in answer.body:
            raise SinkError("the URL answers, but not like Elasticsearch (no cluster_name)", retryable=False)


def _reason(item: dict[str, Any]) -> str:
    error = item.get("error")
    if isinstance(error, dict):
        return f"{error.get('type')}: {error.get('reason')}"[:300]
    return str(error)[:300]


def _create(settings: SinkSettings, context: SinkContext) -> ElasticsearchSink:
    assert isinstance(settings, ElasticsearchSettings)
    return ElasticsearchSink(settings, context)


PLUGIN = SinkPlugin("elasticsearch", ElasticsearchSettings, _create)
