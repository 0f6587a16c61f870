"""Local HTTP endpoint: /healthz (alive), /readyz (every stream polled recently), /metrics (Prometheus).

Off unless ``[service] listen`` is set; meant for loopback or a pod network, never the internet.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import orjson
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from collector.collect.poller import Poller
from collector.service.telemetry import Telemetry
from collector.timeutil import iso


def parse_listen(value: str) -> tuple[str, int]:
    """``host:port`` or ``[v6]:port`` -> (host, port); ValueError when it is neither."""
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ValueError(value)
    return host.strip("[]"), int(port)


def stale_after_secs(poller: Poller) -> float:
    """How long a stream may go without a good answer before it counts as not ready."""
    account = poller.spec.account
    return 2 * account.poll_interval_secs + account.request_timeout_secs + account.retry_max_secs


def readiness(
    pollers: Sequence[Poller], telemetry: Telemetry, now: float, *, standby_ok: bool = False
) -> dict[str, Any]:
    """Ready when every stream is; with ``standby_ok`` (replicas: ``pollers`` are the ones this one
    owns) also when it owns none. Never while the state database does not answer."""
    streams = {}
    for poller in pollers:
        health = telemetry.health(poller.spec.account.name, poller.spec.log_type.name)
        age = None if health.last_success is None else now - health.last_success
        ready = not health.fatal and age is not None and age <= stale_after_secs(poller)
        entry: dict[str, Any] = {"ready": ready, "last_success_age_secs": None if age is None else round(age, 1)}
        waiting = health.waiting_until is not None and health.waiting_until > now and not health.fatal
        if waiting:
            assert health.waiting_until is not None
            entry["waiting"] = {"until": iso(health.waiting_until), "why": health.waiting_why}
        if not ready:
            entry["why"] = (
                f"waiting until {iso(health.waiting_until)}: {health.waiting_why}"
                if waiting and health.waiting_until is not None
                else health.last_error
                or ("no successful API call yet" if age is None else "no successful API call recently")
            )
        streams[poller.spec.name] = entry
    state_up = telemetry.state_available
    ready = (bool(streams) or standby_ok) and all(s["ready"] for s in streams.values()) and state_up
    report: dict[str, Any] = {"ready": ready, "streams": streams}
    if not state_up:
        report["state"] = "unavailable"
    return report


class HealthServer:
    def __init__(
        self,
        listen: str,
        telemetry: Telemetry,
        pollers: Callable[[], Sequence[Poller]],
        clock: Callable[[], float] = time.time,
        *,
        standby_ok: bool = False,
    ) -> None:
        self._standby_ok = standby_ok
        self._host, self._port = parse_listen(listen)
        self._telemetry = telemetry
        self._pollers = pollers
        self._clock = clock
        self._runner: web.AppRunner | None = None
        self.address = ""

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/metrics", self._metrics)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, self._host, self._port).start()
        host, port = self._runner.addresses[0][:2]
        self.address = f"{host}:{port}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _healthz(self, _: web.Request) -> web.Response:
        return _json(200, {"status": "ok"})

    async def _readyz(self, _: web.Request) -> web.Response:
        report = readiness(self._pollers(), self._telemetry, self._clock(), standby_ok=self._standby_ok)
        return _json(200 if report["ready"] else 503, report)

    async def _metrics(self, _: web.Request) -> web.Response:
        body = generate_latest(self._telemetry.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def _json(status: int, body: dict[str, Any]) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(body), content_type="application/json")
