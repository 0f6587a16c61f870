"""Payload encodings a sink may choose with ``format``: spool JSON in, one line of bytes out."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import orjson

from collector.encodings.cef import encode_cef
from collector.encodings.leef import encode_leef

Encoder = Callable[[bytes], bytes]


def encode_json(doc: bytes) -> bytes:
    """The ECS event exactly as spooled (already compact JSON: no work to do)."""
    return doc


def encode_raw(doc: bytes) -> bytes:
    """The original Mimecast record, plus the account and log type it came from."""
    event: dict[str, Any] = orjson.loads(doc)
    labels = event.get("labels", {})
    record = event.get("mimecast", {})
    out = {
        "mimecast_account": labels.get("mimecast_account"),
        "mimecast_log_type": labels.get("mimecast_log_type"),
        **(record if isinstance(record, dict) else {"raw": record}),
    }
    return orjson.dumps(out)


ENCODERS: Mapping[str, Encoder] = {"json": encode_json, "raw": encode_raw, "cef": encode_cef, "leef": encode_leef}
