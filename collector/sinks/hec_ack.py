"""Splunk HEC indexer acknowledgement (``use_ack = true``): one channel, ackIds, polling, resending.

With acknowledgement on, HEC answers a POST with ``{"text": "Success", "code": 0, "ackId": N}``
once it has *received* the batch; only ``POST /services/collector/ack`` with ``{"acks": [N, ...]}``
answering ``{"acks": {"N": true}}`` says its indexers *indexed* it. Splunk reports an id true once
and forgets it afterwards, and forgets every pending id when it restarts: an id it does not know
answers false, exactly like one still being indexed. Hence:

- an id seen true is remembered here and never asked again;
- a batch whose ack has not come within ``ack_timeout_secs`` is sent again (and gets a new id);
- ackIds count up per channel, so a new id at or below one still pending means HEC restarted and
  reused ids: every batch sent before it is sent again at once, since a ``true`` for its old id
  might now describe somebody else's batch.

Duplicates come only from resent batches (an ack lost or late, a restart) and from batches still
unconfirmed when the collector stopped, at most ``max_unacked_batches`` batches at a time;
``mimecast_sink_resent_events_total`` counts the first kind.
"""

from __future__ import annotations

import re
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import anyio
import orjson

from collector.sinks.base import SinkError
from collector.sinks.httpbase import HttpClient, join_url

CHANNEL_HEADER = "X-Splunk-Request-Channel"
ACK_PATH = "/services/collector/ack"
_CODE = re.compile(r'"code"\s*:\s*(\d+)')
_CHANNEL_NAMESPACE = uuid.UUID("6f1d3c2a-9b7e-4d51-8a40-3c2f0e9d7b11")  # fixed: the same sink gets the same GUID

#: HEC's error codes about channels and acknowledgement, with what the operator should do.
CHANNEL_HINTS = {
    10: "HEC wants a channel because indexer acknowledgement is on for the token: set use_ack = true",
    11: "HEC refuses the channel id: set channel to a GUID, or remove it to use the default",
    14: "indexer acknowledgement is disabled for this token: enable it on the token, or set use_ack = false",
}


def default_channel(sink_name: str, host: str) -> str:
    """A GUID that stays the same for this sink on this host across restarts."""
    return str(uuid.uuid5(_CHANNEL_NAMESPACE, f"{host}/{sink_name}"))


def hec_code(body: bytes) -> int | None:
    """The ``code`` of an HEC answer such as ``{"text": "Invalid data channel", "code": 11}``."""
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    code = parsed.get("code") if isinstance(parsed, dict) else None
    return code if isinstance(code, int) and not isinstance(code, bool) else None


def explained(error: SinkError) -> SinkError:
    """``error`` with the operator's fix appended when HEC named a channel or ack problem."""
    text = str(error)
    match = _CODE.search(text)
    hint = CHANNEL_HINTS.get(int(match.group(1))) if match and error.status == 400 else None
    return SinkError(f"{text} ({hint})", retryable=False, status=error.status) if hint else error


@dataclass
class _Unconfirmed:
    body: bytes
    events: int
    ack_id: int | None  # None: void (HEC restarted), send again at once
    sent_at: float
    confirmed: bool = False


class AckWindow:
    """The batches one channel has sent and HEC has not yet confirmed, oldest first."""

    def __init__(
        self,
        http: HttpClient,
        base_url: str,
        channel: str,
        *,
        max_batches: int,
        timeout_secs: float,
        poll_secs: float,
        on_resend: Callable[[int], None] = lambda events: None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
    ) -> None:
        self._http = http
        self._event_url = base_url
        self._ack_url = join_url(base_url.rsplit("/services/", 1)[0], ACK_PATH)
        self._headers = {CHANNEL_HEADER: channel}
        self._max_batches = max_batches
        self._timeout_secs = timeout_secs
        self.poll_secs = poll_secs
        self._on_resend = on_resend
        self._clock = clock
        self._sleep = sleep
        self._batches: deque[_Unconfirmed] = deque()
        self._last_poll = float("-inf")

    def __len__(self) -> int:
        return len(self._batches)

    def full(self) -> bool:
        return len(self._batches) >= self._max_batches

    async def send(self, body: bytes, events: int) -> None:
        """POST one batch on the channel and keep it until its ack comes."""
        batch = _Unconfirmed(body, events, None, 0.0)
        await self._post(batch)
        self._batches.append(batch)

    async def acknowledged(self, *, wait: bool) -> int:
        """See :meth:`collector.sinks.base.Acknowledging.acknowledged`."""
        while True:
            if wait or self._clock() - self._last_poll >= self.poll_secs:
                await self._poll()
            await self._resend_overdue()
            confirmed = 0
            while self._batches and self._batches[0].confirmed:
                self._batches.popleft()
                confirmed += 1
            if confirmed or not wait or not self._batches:
                return confirmed
            await self._sleep(self.poll_secs)

    async def probe(self) -> None:
        """Ask for one ack status (sends no event): HEC answers code 14 if acks are off for the token."""
        try:
            await self._http.request("POST", self._ack_url, orjson.dumps({"acks": [0]}), self._headers)
        except SinkError as error:
            raise explained(error) from None

    async def _post(self, batch: _Unconfirmed) -> None:
        try:
            answer = await self._http.request("POST", self._event_url, batch.body, self._headers)
        except SinkError as error:
            raise explained(error) from None
        ack_id = _ack_id(answer.body)
        if ack_id is None:
            raise SinkError(
                f"HEC accepted the batch but gave no ackId ({CHANNEL_HINTS[14]}); it will be sent again",
                retryable=False,
            )
        earlier = [b for b in self._batches if b is not batch and not b.confirmed]
        if any(b.ack_id is not None and b.ack_id >= ack_id for b in earlier):
            for other in earlier:  # ids start again after an HEC restart: the old ones mean nothing now
                other.ack_id = None
        batch.ack_id, batch.sent_at = ack_id, self._clock()

    async def _poll(self) -> None:
        self._last_poll = self._clock()
        pending = {b.ack_id: b for b in self._batches if not b.confirmed and b.ack_id is not None}
        if not pending:
            return
        try:
            answer = await self._http.request(
                "POST", self._ack_url, orjson.dumps({"acks": sorted(pending)}), self._headers
            )
        except SinkError as error:
            raise explained(error) from None
        for ack_id in _confirmed_ids(answer.body):
            if ack_id in pending:
                pending[ack_id].confirmed = True

    async def _resend_overdue(self) -> None:
        now = self._clock()
        for batch in list(self._batches):
            if batch.confirmed or (batch.ack_id is not None and now - batch.sent_at < self._timeout_secs):
                continue
            await self._post(batch)
            self._on_resend(batch.events)


def _ack_id(body: bytes) -> int | None:
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    ack_id = parsed.get("ackId") if isinstance(parsed, dict) else None
    return ack_id if isinstance(ack_id, int) and not isinstance(ack_id, bool) and ack_id >= 0 else None


def _confirmed_ids(body: bytes) -> list[int]:
    """The ids an ack answer reports true; SinkError (retryable) when it is not one."""
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        parsed = None
    acks = parsed.get("acks") if isinstance(parsed, dict) else None
    if not isinstance(acks, dict):
        raise SinkError(f"HEC ack answer is not {{'acks': {{...}}}}: {body[:200]!r}")
    return [int(key) for key, value in acks.items() if value is True and key.isdigit()]
