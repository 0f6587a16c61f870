"""Small pure helpers the log type modules share: a raw field as clean text, an address, an IP, a URL,
ECS ``user.*`` and ``related.*``. Re-exported by :mod:`collector.logtypes.base`.

They run a dozen times per event, so the windowed normalizers build their documents sparse with
them (only the fields present) instead of building one with nulls and running :func:`compact`.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

JsonDict = dict[str, Any]


def text(record: Mapping[str, Any], name: str) -> str | None:
    """A field as non-empty text, or None."""
    value = record.get(name)
    if value.__class__ is str:  # the common case, first (this runs a dozen times per event)
        return value.strip() or None
    if value is None or isinstance(value, dict | list):
        return None
    return str(value).strip() or None


_IPV4 = re.compile(r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(?:\.(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}")


def ip_or_none(value: Any) -> str | None:
    """An IP address in canonical form, or None (Mimecast writes e.g. "Internal IP" here)."""
    if not isinstance(value, str):
        return None
    candidate = value.strip()
    if _IPV4.fullmatch(candidate):  # already canonical: what ipaddress would return, 20x faster
        return candidate
    if ":" not in candidate:
        return None
    try:
        return str(ipaddress.ip_address(candidate))
    except ValueError:
        return None


def truthy(value: Any) -> bool | None:
    """Booleans that arrive as booleans or as the strings "true"/"false"."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    return None


# scheme://host[:port]/path?query#fragment without userinfo, IPv6 literals or odd characters; anything
# else goes through urlsplit. Same results as urlsplit for what it matches, several times faster.
_SIMPLE_URL = re.compile(
    r"([A-Za-z][A-Za-z0-9+.-]*)://([A-Za-z0-9._~%!$&'()*+,;=-]+)(?::\d*)?(/[^?#\s]*)?(?:\?([^#\s]*))?(?:#\S*)?"
)


def url_fields(original: str) -> JsonDict:
    """ECS ``url.*`` from a URL string; only what parses cleanly."""
    out: JsonDict = {"original": original}
    match = _SIMPLE_URL.fullmatch(original)
    if match:
        scheme, domain, path, query = match.groups()
        scheme, domain = scheme.lower(), domain.lower()
    else:
        try:
            parts = urlsplit(original)
            scheme, domain, path, query = parts.scheme, parts.hostname, parts.path, parts.query
        except ValueError:
            return out
    if scheme:
        out["scheme"] = scheme
    if domain:
        out["domain"] = domain
    if path:
        out["path"] = path
        extension = file_extension(path)  # ECS: without the dot ("exe", "html")
        if extension:
            out["extension"] = extension
    if query:
        out["query"] = query
    return out


def file_extension(name: str) -> str | None:
    """ECS ``*.extension`` of a file name or URL path: without the dot, lower case, short and plain."""
    dot = name.rfind(".")
    if dot < 0 or name.rfind("/") > dot:
        return None
    extension = name[dot + 1 :].strip().lower()
    return extension if 0 < len(extension) <= 10 and extension.isalnum() else None


def address(record: Mapping[str, Any], name: str) -> str | None:
    """An email address field; ``<>`` (the null sender of bounces) is no address."""
    value = record.get(name)
    # text()'s common case inline: two or three addresses per event
    found = (value.strip() or None) if value.__class__ is str else text(record, name)
    return None if found is None or found == "<>" else found


_EMAIL_DIRECTIONS = {"inbound": "inbound", "outbound": "outbound", "internal": "internal"}


def email_direction(route: str | None) -> str | None:
    """ECS ``email.direction`` from a windowed log's ``route`` (the same three words), or None."""
    return _EMAIL_DIRECTIONS.get(route or "")


def email_fields(
    record: Mapping[str, Any], sender: str | None, recipient: str | None, direction: str | None
) -> JsonDict:
    """ECS ``email.*`` the windowed logs share: from, to, subject, message id, direction; only what is there."""
    email: JsonDict = {}
    if sender is not None:
        email["from"] = {"address": [sender]}
    if recipient is not None:
        email["to"] = {"address": [recipient]}
    subject = text(record, "subject")
    if subject is not None:
        email["subject"] = subject
    message_id = text(record, "messageId")
    if message_id is not None:
        email["message_id"] = message_id
    if direction is not None:
        email["direction"] = direction
    return email


def user_of(email: str) -> JsonDict:
    """ECS ``user.*`` of a user known by address: ``email``, and ``name``/``domain`` split from it
    (each only when not empty)."""
    name, at, domain = email.rpartition("@")
    if not at:
        return {"name": email}
    out: JsonDict = {"email": email}
    if name:
        out["name"] = name
    domain = domain.lower()
    if domain:
        out["domain"] = domain
    return out


def related(
    addresses: Iterable[str | None], ips: Iterable[str | None] = (), hosts: Iterable[str | None] = ()
) -> JsonDict:
    """ECS ``related.*``: the users (addresses), IPs and hosts (address and URL domains) an event
    touches, each once, in order; SIEM correlation searches key on these. Only non-empty lists."""
    # Plain loops, no comprehensions: this runs once per event with two or three values.
    users: list[str] = []
    domains: list[str] = []
    for value in addresses:
        if value and value not in users:
            users.append(value)
            at = value.rfind("@")
            if at >= 0:
                domain = value[at + 1 :].lower()
                if domain and domain not in domains:
                    domains.append(domain)
    for host in hosts:
        if host and host not in domains:
            domains.append(host)
    out: JsonDict = {"user": users} if users else {}
    found_ips: list[str] = []
    for ip in ips:
        if ip and ip not in found_ips:
            found_ips.append(ip)
    if found_ips:
        out["ip"] = found_ips
    if domains:
        out["hosts"] = domains
    return out


_SHA256 = re.compile(r"[0-9a-fA-F]{64}")


def sha256_or_none(value: Any) -> str | None:
    """A SHA-256 digest in lower-case hex, or None."""
    return value.lower() if isinstance(value, str) and _SHA256.fullmatch(value) else None


def nested_text(record: Mapping[str, Any], outer: str, inner: str) -> str | None:
    """``record[outer][inner]`` as text, or None when either level is missing or not what it should be."""
    value = record.get(outer)
    return text(value, inner) if isinstance(value, dict) else None


def compact(doc: JsonDict, **ready: JsonDict) -> JsonDict:
    """Drop None values and empty containers, recursively (ECS documents carry no nulls). ``ready``
    values are compact already (e.g. :func:`related`'s): added when non-empty, not walked again."""
    out: JsonDict = {}
    for name, value in doc.items():
        if value.__class__ is dict:
            inner = compact(value)
            if inner:
                out[name] = inner
        elif value is not None and (value.__class__ is not list or value):
            out[name] = value
    for name, value in ready.items():
        if value:
            out[name] = value
    return out
