"""TTP Impersonation Protect logs: messages that looked like someone they are not."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from collector.logtypes.base import FilterSpec, JsonDict, LogType, address, compact, ip_or_none, related, text, truthy


def normalize(record: Mapping[str, Any]) -> JsonDict:
    """ECS fields of one impersonation log (pure)."""
    sender = address(record, "senderAddress")
    recipient = address(record, "recipientAddress")
    malicious = truthy(record.get("taggedMalicious"))
    ip = ip_or_none(record.get("senderIpAddress"))
    return compact(
        {
            "event": {
                "action": text(record, "action"),
                "category": ["email", "threat"],
                "type": ["indicator"] if malicious else ["info"],
            },
            "email": {
                "from": {"address": [sender] if sender else None},
                "to": {"address": [recipient] if recipient else None},
                "subject": text(record, "subject"),
                "message_id": text(record, "messageId"),
                "direction": "inbound",
            },
            "source": {"ip": ip},
            "rule": {"name": text(record, "definition")},
            "threat": {
                "indicator": {"type": "email-addr", "email": {"address": sender}} if malicious else None,
            },
        },
        related=related((sender, recipient), (ip,)),
    )


LOG_TYPE = LogType(
    name="ttp_impersonation",
    path="/api/ttp/impersonation/get-logs",
    array_key="impersonationLogs",
    from_field="from",
    to_field="to",
    time_field="eventTime",
    # ``id`` is not promised unique in every data set: pair it with the event time.
    dedup_fields=("id", "eventTime"),
    normalize=normalize,
    filters={
        "tagged_malicious": FilterSpec("taggedMalicious", "bool", doc="only logs tagged malicious"),
        "search_field": FilterSpec(
            "searchField",
            "str",
            ("senderAddress", "recipientAddress", "subject", "policy", "all"),
            "field that `query` searches",
        ),
        "query": FilterSpec("query", "str", doc="text to search in `search_field`"),
        "identifiers": FilterSpec("identifiers", "str_list", doc="only these identifiers"),
        "actions": FilterSpec("actions", "str_list", doc="only these actions"),
    },
)
