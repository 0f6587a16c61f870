"""``status``: where each stream is, how far behind, its last error; each sink's backlog. No secrets."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from collector.collect import stream_labels
from collector.collect.strategy import CURSOR_TOKEN_KEYS
from collector.config.model import Config
from collector.state.base import StateStore
from collector.timeutil import iso


async def status_report(config: Config, store: StateStore, *, now: float) -> dict[str, Any]:
    saved = {(s["account"], s["log_type"]): s for s in await store.streams()}
    owners = await store.owners()  # replicas on PostgreSQL: who runs each stream and sink, and how fresh
    streams = []
    for account in config.accounts:
        for log_type in stream_labels(account):  # a SIEM batch log type: one stream per type
            row = saved.get((account.name, log_type))
            if row is None:
                name = f"{account.name}/{log_type}"
                streams.append({"stream": name, "state": "not started", **_owner(owners, "stream", name)})
                continue
            waiting = not row["fatal"] and row["waiting_until"] is not None and row["waiting_until"] > now
            entry: dict[str, Any] = {
                "stream": f"{account.name}/{log_type}",
                "state": _state(row, waiting=waiting),
                "position": iso(row["window_start"]),
                "lag_secs": max(0, int(now - row["window_start"])),
                "events_total": row["events_total"],
                "last_success": iso(row["last_success_at"]) if row["last_success_at"] else None,
                "last_error": row["last_error"],
                "last_error_at": iso(row["last_error_at"]) if row["last_error_at"] else None,
            }
            if row["cursor"] is not None:  # a non-windowed kind: where in its files or tokens it is
                entry["cursor"] = _cursor(row["cursor"])
            if waiting:  # the server's rate limit holds it back: until when, and why
                entry["waiting_until"] = iso(row["waiting_until"])
                entry["waiting_reason"] = row["waiting_reason"]
            streams.append({**entry, **_owner(owners, "stream", f"{account.name}/{log_type}")})
    saved_sinks = {s["name"]: s for s in await store.sinks()}
    sinks = []
    for settings in config.sinks:
        row = saved_sinks.get(settings.name)
        sinks.append(
            {
                "sink": settings.name,
                "type": settings.type,
                "backlog": row["backlog"] if row else await store.backlog(0),
                "delivered_total": row["delivered_total"] if row else 0,
                "last_delivery": iso(row["last_delivery_at"]) if row and row["last_delivery_at"] else None,
                "last_error": row["last_error"] if row else None,
                **_owner(owners, "sink", settings.name),
            }
        )
    return {"streams": streams, "sinks": sinks}


def _owner(owners: dict[tuple[str, str], tuple[str | None, float | None]], kind: str, name: str) -> dict[str, Any]:
    """``owner`` (the node holding the lease, None when free) and ``lease_age_secs``; nothing with one process."""
    if not owners:
        return {}
    node, age = owners.get((kind, name), (None, None))
    return {"owner": node, "lease_age_secs": None if node is None or age is None else round(age, 1)}


def _lease(entry: dict[str, Any]) -> tuple[str, ...]:
    if "owner" not in entry:
        return ()
    age = entry["lease_age_secs"]
    return (entry["owner"] or "-", "-" if age is None else f"{age:.0f}s")


def _cursor(text: str) -> Any:
    """The saved cursor for ``status --json``, without its tokens (as a page token is never shown).
    A cursor that is not a JSON object (a damaged file) shows as "unreadable"."""
    try:
        cursor = orjson.loads(text)
    except orjson.JSONDecodeError:
        return "unreadable"
    if not isinstance(cursor, dict):
        return "unreadable"
    return {k: ("(held)" if v is not None else None) if k in CURSOR_TOKEN_KEYS else v for k, v in cursor.items()}


def render_status(report: dict[str, Any], *, as_json: bool) -> str:
    if as_json:
        return orjson.dumps(report, option=orjson.OPT_INDENT_2).decode()
    streams = [
        (
            s["stream"],
            s["state"],
            s.get("position", "-"),
            _duration(s.get("lag_secs")),
            str(s.get("events_total", 0)),
            *_lease(s),
            _note(s),
        )
        for s in report["streams"]
    ]
    sinks = [
        (
            k["sink"],
            k["type"],
            str(k["backlog"]),
            str(k["delivered_total"]),
            k["last_delivery"] or "-",
            *_lease(k),
            k["last_error"] or "-",
        )
        for k in report["sinks"]
    ]
    shared = any("owner" in entry for entry in (*report["streams"], *report["sinks"]))
    lease = ("OWNER", "LEASE AGE") if shared else ()
    return "\n".join(
        [
            *_table(("STREAM", "STATE", "POSITION", "LAG", "EVENTS", *lease, "LAST ERROR / WAITING"), streams),
            "",
            *_table(("SINK", "TYPE", "BACKLOG", "DELIVERED", "LAST DELIVERY", *lease, "LAST ERROR"), sinks),
        ]
    )


COLUMN_GAP = 2


def _table(header: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> list[str]:
    """Columns as wide as their longest cell plus a gap, so long names never run into the next column."""
    widths = [max(len(row[i]) for row in (header, *rows)) + COLUMN_GAP for i in range(len(header) - 1)]
    return [
        "".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False)) + row[-1]
        for row in (header, *rows)
    ]


def _state(row: dict[str, Any], *, waiting: bool) -> str:
    if row["fatal"]:
        return "failed"
    if waiting:
        return "waiting"
    return "paging" if row["paging"] else "ok"


def _note(stream: dict[str, Any]) -> str:
    """The last column of a stream's row: its wait, if it is waiting, before its last error."""
    parts = []
    if stream.get("waiting_until"):
        parts.append(f"until {stream['waiting_until']}: {stream.get('waiting_reason') or 'rate limited'}")
    if stream.get("last_error"):
        parts.append(str(stream["last_error"]))
    return "; ".join(parts) or "-"


def _duration(secs: int | None) -> str:
    if secs is None:
        return "-"
    hours, rest = divmod(secs, 3600)
    minutes, seconds = divmod(rest, 60)
    if hours >= 48:
        return f"{hours // 24}d{hours % 24}h"
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{seconds:02d}s"
