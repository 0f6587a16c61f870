"""Loopback stand-ins for SIEM endpoints: Splunk HEC, Elasticsearch _bulk, and a plain HTTP collector.

Each checks the wire format strictly (a malformed request is a test failure, recorded in
``problems``), keeps what it accepted, and can be told to misbehave: answer 503 or 429, or be
stopped entirely (connection refused) and started again on the same port.
"""

from __future__ import annotations

import socket
from collections import Counter
from dataclasses import dataclass
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


class FakeHec(Receiver):
    """Splunk HEC: ``POST /services/collector/event`` with ``Authorization: Splunk <token>``."""

    def __init__(self, token: str = "hec-token-0000-1111") -> None:
        super().__init__()
        self.token = token
        self.events: list[HecEvent] = []
        self.healthy = True

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/services/collector/event", self._event)
        app.router.add_get("/services/collector/health", self._health)

    async def _health(self, _: web.Request) -> web.Response:
        if self.healthy:
            return web.json_response({"text": "HEC is healthy", "code": 17})
        return web.json_response({"text": "HEC is unhealthy", "code": 18}, status=503)

    async def _event(self, request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != f"Splunk {self.token}":
            return web.json_response({"text": "Invalid token", "code": 4}, status=403)
        refused = self.refusal()
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
        self.events.extend(batch)
        return web.json_response({"text": "Success", "code": 0})


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
