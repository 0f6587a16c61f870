"""``type = "http"``: POST batches to any HTTP endpoint as NDJSON or a JSON array, gzip by default."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import orjson

from collector.config.options import option
from collector.sinks.base import OutEvent, SinkContext, SinkPlugin, SinkSettings
from collector.sinks.httpbase import HttpClient, HttpSettings, HttpSinkBase

_CONTENT_TYPES = {"ndjson": "application/x-ndjson", "json_array": "application/json"}


@dataclass(frozen=True, kw_only=True)
class HttpSinkSettings(HttpSettings):
    body_format: str = option("ndjson", choices=tuple(_CONTENT_TYPES), doc="ndjson or json_array")
    method: str = option("POST", choices=("POST", "PUT"))
    # Sent with every request, e.g. { Authorization = "Bearer ${SIEM_TOKEN}" }; values are masked in logs.
    headers: dict[str, str] = option(factory=dict)

    def explicit_auth(self) -> str | None:
        names = [name for name in self.headers if name.lower() == "authorization"]
        return f"headers.{names[0]}" if names else None


class HttpSink(HttpSinkBase):
    def __init__(self, settings: HttpSinkSettings) -> None:
        self.settings = settings
        headers = dict(settings.headers)
        if not any(name.lower() == "content-type" for name in headers):  # header names ignore case
            headers["Content-Type"] = _CONTENT_TYPES[settings.body_format]
        self._http = HttpClient(settings, headers)

    async def send_batch(self, events: Sequence[OutEvent]) -> None:
        if not events:
            return
        if self.settings.body_format == "ndjson":
            body = b"\n".join(e.line for e in events) + b"\n"
        else:  # a JSON array; lines that are not JSON (cef, leef) are sent as JSON strings
            body = b"[" + b",".join(_as_json(e, self.settings.format) for e in events) + b"]"
        await self._http.request(self.settings.method, self.settings.url, body)

    async def send_lines(self, payload: bytes, count: int) -> None:
        """Lines as they are (NDJSON), or one JSON array of them."""
        if not count:
            return
        if self.settings.body_format == "ndjson":
            body = payload
        elif self.settings.format in ("json", "raw"):  # JSON never holds a raw newline: each one ends a document
            body = b"[" + payload.rstrip(b"\n").replace(b"\n", b",") + b"]"
        else:  # cef, leef: each line becomes a JSON string
            lines = payload.rstrip(b"\n").split(b"\n")
            body = b"[" + b",".join(orjson.dumps(line.decode("utf-8", "replace")) for line in lines) + b"]"
        await self._http.request(self.settings.method, self.settings.url, body)

    async def health_check(self) -> None:
        """An OPTIONS request: reachable, TLS verified, answering below 500 (no event is sent)."""
        await self._http.probe("OPTIONS", self.settings.url)


def _as_json(event: OutEvent, format_: str) -> bytes:
    if format_ in ("json", "raw"):
        return event.line
    return orjson.dumps(event.line.decode("utf-8", "replace"))


def _create(settings: SinkSettings, context: SinkContext) -> HttpSink:
    assert isinstance(settings, HttpSinkSettings)
    return HttpSink(settings)


PLUGIN = SinkPlugin("http", HttpSinkSettings, _create)
