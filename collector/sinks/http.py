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
        if events:
            await self._http.request(self.settings.method, self.settings.url, self._body([e.line for e in events]))

    async def send_lines(self, payload: bytes, count: int) -> None:
        """Lines as they are (NDJSON), or one JSON array of them: the body send_batch sends."""
        if not count:
            return
        ndjson = self.settings.body_format == "ndjson"
        body = payload if ndjson else self._body(payload.rstrip(b"\n").split(b"\n"))
        await self._http.request(self.settings.method, self.settings.url, body)

    def _body(self, lines: list[bytes]) -> bytes:
        if self.settings.body_format == "ndjson":
            return b"\n".join(lines) + b"\n"
        if self.settings.format in ("json", "raw"):
            return b"[" + b",".join(lines) + b"]"
        # A JSON array of lines that are not JSON (cef, leef): each one as a JSON string.
        return b"[" + b",".join(orjson.dumps(line.decode("utf-8", "replace")) for line in lines) + b"]"

    async def health_check(self) -> None:
        """An OPTIONS request: reachable, TLS verified, answering below 500 (no event is sent)."""
        await self._http.probe("OPTIONS", self.settings.url)


def _create(settings: SinkSettings, context: SinkContext) -> HttpSink:
    assert isinstance(settings, HttpSinkSettings)
    return HttpSink(settings)


PLUGIN = SinkPlugin("http", HttpSinkSettings, _create)
