"""TTP Impersonation Protect logs: messages that looked like someone they are not."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from collector.logtypes.base import (
    FilterSpec,
    JsonDict,
    LogType,
    address,
    email_fields,
    ip_or_none,
    related,
    text,
    truthy,
)


def normalize(record: Mapping[str, Any]) -> JsonDict:
    """ECS fields of one impersonation log (pure). Built sparse: only the fields the record has."""
    action = text(record, "action")
    malicious = truthy(record.get("taggedMalicious"))
    event: JsonDict = {"action": action} if action is not None else {}
    event["category"] = ["email", "threat"]
    event["type"] = ["indicator"] if malicious else ["info"]
    sender = address(record, "senderAddress")
    recipient = address(record, "recipientAddress")
    email = email_fields(record, sender, recipient, "inbound")
    out: JsonDict = {"event": event, "email": email}
    ip = ip_or_none(record.get("senderIpAddress"))
    if ip is not None:
        out["source"] = {"ip": ip}
    rule = text(record, "definition")
    if rule is not None:
        out["rule"] = {"name": rule}
    if malicious:
        indicator: JsonDict = {"type": "email-addr"}
        if sender is not None:
            indicator["email"] = {"address": sender}
        out["threat"] = {"indicator": indicator}
    links = related((sender, recipient), (ip,))
    if links:
        out["related"] = links
    return out


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
