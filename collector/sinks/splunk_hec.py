"""``type = "splunk_hec"``: Splunk HTTP Event Collector, ``/services/collector/event``.

Each event goes as ``{"time", "host", "source", "sourcetype", "index", "event"}``; a batch is the
events one after another in one POST (HEC's batch format). With ``format = "json"`` (or ``raw``)
the event is embedded as a JSON object, with ``cef``/``leef`` as a string.

HEC's HTTP 200 means "received", not "indexed". With ``use_ack = true`` the sink sends on a channel
and a batch counts as delivered only once HEC's indexer acknowledgement confirms it
(:mod:`collector.sinks.hec_ack`); without, the 200 is all there is.
"""

from __future__ import annotations

import socket
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import orjson

from collector.config.errors import ConfigError
from collector.config.options import Secret, option
from collector.service.telemetry import Telemetry
from collector.sinks.base import OutEvent, SinkContext, SinkError, SinkPlugin, SinkSettings
from collector.sinks.hec_ack import AckWindow, default_channel, explained
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
    use_ack: bool = option(False, doc="count a batch delivered only once HEC's indexer acknowledgement confirms it")
    channel: str | None = option(None, doc="X-Splunk-Request-Channel GUID; default one derived from sink and host")
    ack_timeout_secs: float = option(300.0, min=1, max=86_400, doc="send a batch again if unconfirmed this long")
    ack_poll_interval_secs: float = option(5.0, min=0.1, max=600, doc="how often to ask HEC for acks")
    max_unacked_batches: int = option(10, min=1, max=1000, doc="batches sent but unconfirmed at most")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.token is None and self.url_username is None:  # HEC also takes Basic auth, token as password
            raise ConfigError(
                f"sinks.{self.name}.token", "required for splunk_hec", "set token or token_file to the HEC token"
            )

        if self.use_ack and self.ack_timeout_secs <= 2 * self.ack_poll_interval_secs:
            raise ConfigError(  # else batches are resent before HEC was even asked about them
                f"sinks.{self.name}.ack_timeout_secs",
                f"{self.ack_timeout_secs:g} is not more than twice ack_poll_interval_secs",
                "raise ack_timeout_secs or lower ack_poll_interval_secs",
            )
        if self.channel is not None:
            try:
                uuid.UUID(self.channel)
            except ValueError:
                raise ConfigError(
                    f"sinks.{self.name}.channel", f"{self.channel!r} is not a GUID", "use e.g. the output of uuidgen"
                ) from None

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
            try:
                await self._http.request("POST", join_url(self.settings.url, EVENT_PATH), self._body(events))
            except SinkError as error:  # e.g. code 10: the token wants acks, so a channel
                raise explained(error) from None

    def _body(self, events: Sequence[OutEvent]) -> bytes:
        return b"\n".join(self._envelope(e) for e in events)

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


class AckingSplunkHecSink(SplunkHecSink):
    """``use_ack = true``: each batch waits in an :class:`AckWindow` until HEC confirms it (see
    :class:`collector.sinks.base.Acknowledging`)."""

    def __init__(self, settings: SplunkHecSettings, telemetry: Telemetry | None = None) -> None:
        super().__init__(settings)
        channel = settings.channel or default_channel(settings.name, self._host)
        resent = telemetry.sink_resent_events.labels(settings.name) if telemetry is not None else None
        self._window = AckWindow(
            self._http,
            join_url(settings.url, EVENT_PATH),
            channel,
            max_batches=settings.max_unacked_batches,
            timeout_secs=settings.ack_timeout_secs,
            poll_secs=settings.ack_poll_interval_secs,
            on_resend=resent.inc if resent is not None else lambda events: None,
        )
        self.ack_poll_secs = settings.ack_poll_interval_secs

    async def send_batch(self, events: Sequence[OutEvent]) -> None:
        if events:
            await self._window.send(self._body(events), len(events))

    def window_full(self) -> bool:
        return self._window.full()

    async def acknowledged(self, *, wait: bool) -> int:
        return await self._window.acknowledged(wait=wait)

    async def health_check(self) -> None:
        """HEC's health endpoint, then one ack query: refused (code 14) if the token has acks off."""
        await super().health_check()
        await self._window.probe()


def _create(settings: SinkSettings, context: SinkContext) -> SplunkHecSink:
    assert isinstance(settings, SplunkHecSettings)
    return AckingSplunkHecSink(settings, context.telemetry) if settings.use_ack else SplunkHecSink(settings)


PLUGIN = SinkPlugin("splunk_hec", SplunkHecSettings, _create)
