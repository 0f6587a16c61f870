"""``type = "splunk_hec"``: Splunk HTTP Event Collector, ``/services/collector/event``.

Each event goes as ``{"time", "host", "source", "sourcetype", "index", "event"}``; a batch is the
events one after another in one POST (HEC's batch format). With ``format = "json"`` (or ``raw``)
the event is embedded as a JSON object, with ``cef``/``leef`` as a string. HEC acknowledges with
HTTP 200 once its indexers took the batch; indexer acknowledgement (useACK channels) is not used.
"""

from __future__ import annotations

import socket
from collections.abc import Sequence
from dataclasses import dataclass

import orjson

from collector.config.errors import ConfigError
from collector.config.options import Secret, option
from collector.sinks.base import OutEvent, SinkContext, SinkError, SinkPlugin, SinkSettings
from collector.sinks.httpbase import HttpClient, HttpSettings, HttpSinkBase, join_url

EVENT_PATH = "/services/collector/event"
HEALTH_PATH = "/services/collector/health"


@dataclass(frozen=True, kw_only=True)
class SplunkHecSettings(HttpSettings):
    token: Secret | None = option(None, secret=True, doc="HEC token (or token_file)")
    index: str | None = option(None, doc="Splunk index; the token's default when unset")
    source: str = option("mimecast-collector")
    sourcetype: str | None = option(None, doc='default "mimecast:<log type>", e.g. mimecast:ttp_url')
    host: str | None = option(None, doc="host field; default this machine's name")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.token is None and self.url_username is None:  # HEC also takes Basic auth, token as password
            raise ConfigError(
                f"sinks.{self.name}.token", "required for splunk_hec", "set token or token_file to the HEC token"
            )

    def explicit_auth(self) -> str | None:
        return "token" if self.token is not None else None


class SplunkHecSink(HttpSinkBase):
    def __init__(self, settings: SplunkHecSettings) -> None:
        self.settings = settings
        headers = {"Content-Type": "application/json"}
        if settings.token is not None:  # else the URL's user:password@ authenticates (Basic, set by HttpClient)
            headers["Authorization"] = f"Splunk {settings.token.reveal()}"
        self._http = HttpClient(settings, headers)
        self._host = settings.host or socket.gethostname()

    async def send_batch(self, events: Sequence[OutEvent]) -> None:
        if events:
            body = b"\n".join(self._envelope(e) for e in events)
            await self._http.request("POST", join_url(self.settings.url, EVENT_PATH), body)

    def _envelope(self, event: OutEvent) -> bytes:
        payload: object
        if self.settings.format in ("json", "raw"):
            payload = orjson.Fragment(event.line)  # already JSON: embed without parsing it again
        else:
            payload = event.line.decode("utf-8", "replace")
        envelope: dict[str, object] = {
            "time": event.time,
            "host": self._host,
            "source": self.settings.source,
            "sourcetype": self.settings.sourcetype or f"mimecast:{event.log_type or 'event'}",
            "event": payload,
        }
        if self.settings.index:
            envelope["index"] = self.settings.index
        return orjson.dumps(envelope)

    async def health_check(self) -> None:
        """HEC's own health endpoint: 200 when it can take events (sends none)."""
        status = await self._http.probe("GET", join_url(self.settings.url, HEALTH_PATH))
        if status != 200:
            raise SinkError(f"HEC health endpoint answered {status}", retryable=True, status=status)


def _create(settings: SinkSettings, context: SinkContext) -> SplunkHecSink:
    assert isinstance(settings, SplunkHecSettings)
    return SplunkHecSink(settings)


PLUGIN = SinkPlugin("splunk_hec", SplunkHecSettings, _create)
