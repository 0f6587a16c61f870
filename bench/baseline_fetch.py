"""The minimal baseline for bench/throughput.py: fetch every page and write raw lines, nothing else.

No normalization, no dedup, no spool, no pacing, no retries: one signed POST per page, each record
written as one JSON line. What the collector adds on top of this is its cost.

Usage: python bench/baseline_fetch.py BASE_URL OUT_FILE START_EPOCH (credentials: the simulator's)
"""

from __future__ import annotations

import asyncio
import sys
import time

import aiohttp
import orjson

from collector.api.auth import HmacAuth
from collector.simulator import SimSettings
from collector.timeutil import api_date

ENDPOINTS = {
    "/api/ttp/url/get-logs": ("clickLogs", "from", "to"),
    "/api/ttp/impersonation/get-logs": ("impersonationLogs", "from", "to"),
    "/api/archive/get-search-logs": ("logs", "start", "end"),
}


async def drain(session: aiohttp.ClientSession, base: str, path: str, start: int, out: list[bytes]) -> None:
    s = SimSettings()
    auth = HmacAuth(s.access_key, s.secret_key, s.app_id, s.app_key)
    key, from_field, to_field = ENDPOINTS[path]
    data = {from_field: api_date(start), to_field: api_date(int(time.time()) - 60)}
    token = None
    while True:
        pagination: dict[str, object] = {"pageSize": 500, **({"pageToken": token} if token else {})}
        body = orjson.dumps({"meta": {"pagination": pagination}, "data": [data]})
        headers = {"Content-Type": "application/json", **await auth.headers(path)}
        async with session.post(base + path, data=body, headers=headers) as response:
            answer = orjson.loads(await response.read())
        records = answer["data"][0][key] if answer["data"] else []
        out.append(b"".join(orjson.dumps(r) + b"\n" for r in records))
        token = answer["meta"]["pagination"].get("next")
        if not token or not records:
            return


async def main(base: str, out_path: str, start: int) -> None:
    chunks: list[bytes] = []
    async with aiohttp.ClientSession() as session:
        await asyncio.gather(*(drain(session, base, path, start, chunks) for path in ENDPOINTS))
    with open(out_path, "wb") as handle:  # noqa: ASYNC230 - once, after all fetching is done
        for chunk in chunks:
            handle.write(chunk)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
