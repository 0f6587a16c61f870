"""Loopback stand-ins for SIEM endpoints: Splunk HEC, Elasticsearch _bulk, and a plain HTTP collector.

Each checks the wire format strictly (a malformed request is a test failure, recorded in
``problems``), keeps what it accepted, and can be told to misbehave: answer 503 or 429, or be
stopped entirely (connection refused) and started again on the same port.
"""

from __future__ import annotations

import random
import socket
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Misbehave:
    """Answer the next ``times`` requests with ``status`` (and Retry-After, if set)."""

    status: int = 503
    times: int = 0
    retry_after: str | None = None


class Receiver:
    """Start/stop on a fixed port, record problems, misbehave on demand."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.problems: list[str] = []
        self.requests = 0
        self.gzipped = 0  # requests that arrived gzip-compressed
        self.refused = 0  # requests answered with a scripted failure
        self.misbehave = Misbehave()
        self._runner: web.AppRunner | None = None

    def routes(self, app: web.Application) -> None:
        raise NotImplementedError

    async def start(self) -> Receiver:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        self.routes(app)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def body(self, request: web.Request) -> bytes:
        """The request body; aiohttp has already undone a ``Content-Encoding: gzip``."""
        if request.headers.get("Content-Encoding") == "gzip":
            self.gzipped += 1
        return await request.read()

    def refusal(self) -> web.Response | None:
        """The scripted failure for this request, if one is due."""
        self.requests += 1
        if self.misbehave.times > 0:
            self.misbehave.times -= 1
            self.refused += 1
            headers = {"Retry-After": self.misbehave.retry_after} if self.misbehave.retry_after else {}
            return web.Response(status=self.misbehave.status, text="try later", headers=headers)
        return None


@dataclass
class HecEvent:
    envelope: dict[str, Any]

    @property
    def event_id(self) -> str:
        event = self.envelope["event"]
        return str(event["event"]["id"]) if isinstance(event, dict) else str(event)


@dataclass
class PendingBatch:
    """A batch HEC received on an acknowledging token: indexed once its ack status is first due."""

    batch: list[HecEvent]
    queries_left: int  # ack queries answered false before it is indexed (a late ack)
    ack_lost: bool  # indexed, but its ack never reads true (the answer got lost)
    indexed: bool = False


@dataclass
class AckBehaviour:
    """How an acknowledging HEC behaves: late acks, lost acks (seeded), refused channels."""

    late_queries: int = 0
    lost_rate: float = 0.0
    seed: int = 0
    channel_code: int | None = None  # answer every event POST with this HEC error code (10, 11)
    rng: random.Random = field(init=False)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)


class FakeHec(Receiver):
    """Splunk HEC: ``POST /services/collector/event`` with ``Authorization: Splunk <token>``.

    With ``ack_enabled`` (the token's "indexer acknowledgement"), it behaves as Splunk documents:
    an event POST needs a channel (``X-Splunk-Request-Channel`` or ``?channel=``; code 10 when
    missing, 11 when not a GUID) and answers an ``ackId`` counting up per channel from 0; the batch
    is only *received*. ``POST /services/collector/ack`` with ``{"acks": [ids]}`` answers
    ``{"acks": {"id": bool}}``; a batch is indexed (appears in ``events``) when its status is first
    due, reported true once and then forgotten. :meth:`restart_indexer` forgets every pending id
    and loses every batch not indexed yet. With acks off, a channel is accepted and ignored, and the
    ack endpoint answers code 14.
    """

    def __init__(self, token: str = "hec-token-0000-1111", *, ack_enabled: bool = False) -> None:
        super().__init__()
        self.token = token
        self.events: list[HecEvent] = []
        self.healthy = True
        self.ack_enabled = ack_enabled
        self.acks = AckBehaviour()
        self.pending: dict[tuple[str, int], PendingBatch] = {}
        self.next_ack_id: Counter[str] = Counter()
        self.ack_queries = 0
        self.lost_batches = 0  # batches a restart dropped before they were indexed
        self.channels: set[str] = set()

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/services/collector/event", self._event)
        app.router.add_post("/services/collector/ack", self._ack)
        app.router.add_get("/services/collector/health", self._health)

    def restart_indexer(self) -> None:
        """What a Splunk restart does to acknowledgement: pending ids forgotten, unindexed batches gone."""
        self.lost_batches += sum(1 for p in self.pending.values() if not p.indexed)
        self.pending.clear()
        self.next_ack_id.clear()

    async def _health(self, _: web.Request) -> web.Response:
        if self.healthy:
            return web.json_response({"text": "HEC is healthy", "code": 17})
        return web.json_response({"text": "HEC is unhealthy", "code": 18}, status=503)

    def _channel(self, request: web.Request) -> tuple[str | None, web.Response | None]:
        channel = request.headers.get("X-Splunk-Request-Channel") or request.query.get("channel")
        if channel is None:
            return None, web.json_response({"text": "Data channel is missing", "code": 10}, status=400)
        try:
            uuid.UUID(channel)
        except ValueError:
            return None, web.json_response({"text": "Invalid data channel", "code": 11}, status=400)
        self.channels.add(channel)
        return channel, None

    async def _event(self, request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != f"Splunk {self.token}":
            return web.json_response({"text": "Invalid token", "code": 4}, status=403)
        refused = self.refusal()
        if refused is not None:
            return refused
        channel: str | None = None
        if self.ack_enabled:
            if self.acks.channel_code is not None:
                text = {10: "Data channel is missing", 11: "Invalid data channel"}.get(self.acks.channel_code, "?")
                return web.json_response({"text": text, "code": self.acks.channel_code}, status=400)
            channel, refused = self._channel(request)
            if refused is not None:
                return refused
        batch = []
        for line in (await self.body(request)).splitlines():
            envelope = orjson.loads(line)
            missing = {"time", "host", "source", "sourcetype", "event"} - set(envelope)
            if missing:
                self.problems.append(f"envelope without {sorted(missing)}")
                return web.json_response({"text": "Event field is required", "code": 12}, status=400)
            batch.append(HecEvent(envelope))
        if channel is None:
            self.events.extend(batch)
            return web.json_response({"text": "Success", "code": 0})
        ack_id = self.next_ack_id[channel]
        self.next_ack_id[channel] += 1
        lost = self.acks.rng.random() < self.acks.lost_rate
        self.pending[(channel, ack_id)] = PendingBatch(batch, self.acks.late_queries, lost)
        return web.json_response({"text": "Success", "code": 0, "ackId": ack_id})

    async def _ack(self, request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != f"Splunk {self.token}":
            return web.json_response({"text": "Invalid token", "code": 4}, status=403)
        if not self.ack_enabled:
            return web.json_response({"text": "ACK is disabled", "code": 14}, status=400)
        channel, refused = self._channel(request)
        if refused is not None or channel is None:
            return refused or web.Response(status=500)
        self.ack_queries += 1
        body = orjson.loads(await self.body(request))
        if not isinstance(body, dict) or not isinstance(body.get("acks"), list):
            self.problems.append(f"ack query {body!r}")
            return web.json_response({"text": "Invalid data format", "code": 6}, status=400)
        return web.json_response({"acks": {str(i): self._status(channel, i) for i in body["acks"]}})

    def _status(self, channel: str, ack_id: int) -> bool:
        pending = self.pending.get((channel, ack_id))
        if pending is None:  # unknown, already reported, or forgotten by a restart: Splunk says false
            return False
        if pending.queries_left > 0:
            pending.queries_left -= 1
            return False
        if not pending.indexed:
            pending.indexed = True
            self.events.extend(pending.batch)
        if pending.ack_lost:
            return False
        del self.pending[(channel, ack_id)]
        return True


@dataclass
class BulkItem:
    index: str
    doc_id: str
    doc: dict[str, Any]


class FakeElasticsearch(Receiver):
    """Elasticsearch ``_bulk`` with ``create`` actions: 201 once per ``_id``, 409 after that."""

    def __init__(self, api_key: str = "ZXMta2V5LWlkOmVzLWtleS1zZWNyZXQ=") -> None:
        super().__init__()
        self.api_key = api_key
        self.docs: dict[tuple[str, str], dict[str, Any]] = {}
        self.created: Counter[str] = Counter()  # _id -> 201 answers given
        self.conflicts = 0
        self.reject_ids: set[str] = set()  # event.ids answered with a mapping error
        self.throttle_items = 0  # the next N items answer 429 (es_rejected_execution_exception)

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/_bulk", self._bulk)
        app.router.add_get("/", self._root)

    def _authorized(self, request: web.Request) -> bool:
        return request.headers.get("Authorization") == f"ApiKey {self.api_key}"

    async def _root(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return web.json_response({"error": "unauthorized"}, status=401)
        return web.json_response({"name": "fake-node", "cluster_name": "fake-cluster", "version": {"number": "8.15.0"}})

    async def _bulk(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return web.json_response({"error": "unauthorized"}, status=401)
        if request.headers.get("Content-Type") != "application/x-ndjson":
            self.problems.append(f"Content-Type {request.headers.get('Content-Type')}")
        refused = self.refusal()
        if refused is not None:
            return refused
        lines = (await self.body(request)).splitlines()
        if len(lines) % 2:
            self.problems.append("odd number of NDJSON lines")
            return web.json_response({"error": "bad bulk"}, status=400)
        items = [self._item(orjson.loads(a), orjson.loads(d)) for a, d in zip(lines[::2], lines[1::2], strict=True)]
        errors = any(next(iter(item.values()))["status"] >= 300 for item in items)
        return web.json_response({"took": 1, "errors": errors, "items": items})

    def _item(self, action: dict[str, Any], doc: dict[str, Any]) -> dict[str, Any]:
        if set(action) != {"create"} or set(action["create"]) < {"_index", "_id"}:
            self.problems.append(f"unexpected action {action}")
            return {"create": {"status": 400, "error": {"type": "illegal_argument_exception", "reason": "action"}}}
        index, doc_id = action["create"]["_index"], action["create"]["_id"]
        if self.throttle_items > 0:
            self.throttle_items -= 1
            return {
                "create": {
                    "_index": index,
                    "_id": doc_id,
                    "status": 429,
                    "error": {"type": "es_rejected_execution_exception", "reason": "queue full"},
                }
            }
        if doc.get("event", {}).get("id") in self.reject_ids:
            return {
                "create": {
                    "_index": index,
                    "_id": doc_id,
                    "status": 400,
                    "error": {"type": "document_parsing_exception", "reason": "failed to parse field"},
                }
            }
        if (index, doc_id) in self.docs:
            self.conflicts += 1
            return {
                "create": {
                    "_index": index,
                    "_id": doc_id,
                    "status": 409,
                    "error": {"type": "version_conflict_engine_exception", "reason": "exists"},
                }
            }
        self.docs[(index, doc_id)] = doc
        self.created[doc_id] += 1
        return {"create": {"_index": index, "_id": doc_id, "status": 201, "result": "created"}}


class FakeHttpCollector(Receiver):
    """A plain HTTP ingest endpoint: records each request's headers and decoded body."""

    def __init__(self) -> None:
        super().__init__()
        self.received: list[tuple[dict[str, str], bytes]] = []

    def routes(self, app: web.Application) -> None:
        app.router.add_route("*", "/ingest", self._ingest)

    async def _ingest(self, request: web.Request) -> web.Response:
        if request.method == "OPTIONS":
            return web.Response(status=204)
        refused = self.refusal()
        if refused is not None:
            return refused
        self.received.append((dict(request.headers), await self.body(request)))
        return web.Response(status=202)
