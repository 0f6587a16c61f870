"""The minimal baseline for bench/siem.py: list, download, gunzip and write lines, nothing else.

No normalization, no dedup, no spool, no state: one OAuth2 token, one listing call per page, each
file streamed through zlib and its lines written out as they come. What the collector adds on top
of this is its cost.

Usage: python bench/baseline_siem.py BASE_URL OUT_FILE TYPE DAY (credentials: the simulator's)
"""

from __future__ import annotations

import asyncio
import sys
import zlib

import aiohttp
import orjson

from collector.simulator import SimSettings


async def main(base: str, out_path: str, kind: str, day: str) -> None:
    s = SimSettings()
    async with aiohttp.ClientSession() as session:
        form = {"grant_type": "client_credentials", "client_id": s.client_id, "client_secret": s.client_secret}
        async with session.post(f"{base}/oauth/token", data=form) as response:
            token = orjson.loads(await response.read())["access_token"]
        headers = {"Authorization": f"Bearer {token}"}
        params = {"type": kind, "dateRangeStartsAt": day, "pageSize": "100"}
        with open(out_path, "wb") as out:  # noqa: ASYNC230 - the baseline is deliberately naive
            while True:
                async with session.get(f"{base}/siem/v1/batch/events/cg", params=params, headers=headers) as response:
                    listing = orjson.loads(await response.read())
                for entry in listing["value"]:
                    async with (
                        aiohttp.ClientSession() as files,
                        files.get(entry["url"], auto_decompress=False) as response,
                    ):
                        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
                        async for chunk in response.content.iter_chunked(1 << 16):
                            out.write(inflater.decompress(chunk))
                        out.write(inflater.flush())
                if not listing["value"] or listing.get("isCaughtUp"):
                    return
                params["nextPage"] = listing["@nextPage"]


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]))
