"""One ``get-siem-logs`` call (API 1.0 SIEM, HMAC or OAuth2): the request, and what its answer means.

Mimecast's reference: the answer is ``application/octet-stream``, one log file per request (a zip
when ``compress`` is true; public collectors find one or more JSON files inside), its name in
``Content-Disposition`` and the next token in the ``mc-siem-token`` header. An ``application/json``
answer carries no file: an error when ``fail[]`` is not empty, else "caught up" (Mimecast's sample
code stops on any JSON answer; some describe ``meta.isLastToken: true`` in it: both read as caught
up here, and the token sent stays the position).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from collector.api.answers import parse_object
from collector.api.client import MimecastClient
from collector.api.errors import Action, ApiError
from collector.api.siem_files import disposition_name, is_zip

#: What the request accepts: the file, or the JSON status answer.
ACCEPT = "application/octet-stream, application/json"


@dataclass(frozen=True)
class SiemAnswer:
    body: bytes | None  # the file (zip or plain); None: no file, caught up
    name: str | None  # the file name from Content-Disposition (it names the log type)
    next_token: str | None  # mc-siem-token: where the next request starts

    @property
    def caught_up(self) -> bool:
        return self.body is None


def request_data(token: str | None, options: Mapping[str, Any]) -> dict[str, Any]:
    """The one ``data[]`` element: ``type`` MTA, the stream's options, and the token (none at first)."""
    data: dict[str, Any] = {"type": "MTA", "fileFormat": "json", "compress": True, **options}
    if token:
        data["token"] = token
    return data


def parse_siem_answer(status: int, headers: Mapping[str, str], raw: bytes, *, oauth2: bool) -> SiemAnswer:
    """A file, caught up, or a classified :class:`ApiError` (by the same table as every endpoint)."""
    content_type = headers.get("Content-Type", "").split(";")[0].strip().lower()
    name = disposition_name(headers.get("Content-Disposition"))
    token = headers.get("mc-siem-token") or None
    if status == 200 and (is_zip(raw) or name is not None or content_type == "application/octet-stream"):
        if token is None:  # without it the same file would come back forever: ask again later
            raise ApiError(Action.RETRY, "SIEM answer holds a file but no mc-siem-token header", status=status)
        return SiemAnswer(raw, name, token)
    # No file: an error (any status but 200, or fail[] inside a 200; classified as for every endpoint,
    # a body that is no JSON object is retried), else caught up.
    parse_object(status, raw, oauth2=oauth2)
    return SiemAnswer(None, None, token)


async def fetch_siem(
    client: MimecastClient,
    stream: str,
    path: str,
    data: Mapping[str, Any],
    *,
    on_retry: Callable[[ApiError], Awaitable[None]] | None = None,
) -> SiemAnswer:
    """One answer, retried until it is a file or caught up; raises :class:`ApiError` (fatal only).

    An answer over ``max_response_bytes`` is fatal with a hint: a file cannot be asked for in halves.
    """
    oauth2 = client.oauth2
    return await client.post_for_file(
        stream,
        path,
        orjson.dumps({"data": [dict(data)]}),
        lambda status, headers, raw: parse_siem_answer(status, headers, raw, oauth2=oauth2),
        accept=ACCEPT,
        on_retry=on_retry,
    )
