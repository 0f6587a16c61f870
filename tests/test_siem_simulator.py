"""The simulator's get-siem-logs endpoint, driven over loopback with signed requests.

It is the fake every SIEM collection test runs against, so its token chain, answer shapes, auth,
metering and faults are pinned here with the reader the collector uses.
"""

from __future__ import annotations

import time
from typing import Any

import aiohttp
import orjson
import pytest
from multidict import CIMultiDict

from collector.api.auth import HmacAuth, OAuth2Auth
from collector.api.siem_files import SiemAnswerError, SiemLimits, disposition_name, read_files
from collector.simulator import FakeMimecast, SimSettings
from collector.simulator.siem import SIEM_PATH, SIEM_TYPES, generate_siem_files

SIM = SimSettings()
LIMITS = SiemLimits(max_inflated_bytes=64 << 20)


def hmac_auth() -> HmacAuth:
    return HmacAuth(SIM.access_key, SIM.secret_key, SIM.app_id, SIM.app_key)


async def post(
    session: aiohttp.ClientSession,
    sim: FakeMimecast,
    token: str | None = None,
    *,
    compress: bool = True,
    file_format: str = "json",
    auth: Any = None,
) -> tuple[int, CIMultiDict[str], bytes]:
    request: dict[str, Any] = {"type": "MTA", "fileFormat": file_format, "compress": compress}
    if token is not None:
        request["token"] = token
    headers = await (auth or hmac_auth()).headers(SIEM_PATH)
    async with session.post(f"{sim.base_url}{SIEM_PATH}", data=orjson.dumps({"data": [request]}), headers=headers) as r:
        return r.status, CIMultiDict(r.headers), await r.read()


def records_of(headers: CIMultiDict[str], body: bytes, file_format: str = "json") -> list[tuple[str, int]]:
    name = disposition_name(headers.get("Content-Disposition"))
    return [
        (f.name, len(list(f.records()))) for f in read_files(body, name=name, file_format=file_format, limits=LIMITS)
    ]


async def test_token_chain_walks_every_file_then_answers_caught_up(make_sim: Any, session: Any) -> None:
    """No token: the first file; each mc-siem-token: the next; past the last: JSON, no file."""
    sim = await make_sim()
    sim.siem.add(generate_siem_files(3, start=int(time.time()) - 3600, records_per_file=4))
    token, seen = None, []
    for _ in range(3):
        status, headers, body = await post(session, sim, token)
        assert status == 200
        assert headers["Content-Type"] == "application/octet-stream"
        seen += records_of(headers, body)
        token = headers["mc-siem-token"]
    assert [count for _, count in seen] == [4, 4, 4]
    assert [name.split("_")[0] for name, _ in seen] == ["receipt", "process", "delivery"]
    status, headers, body = await post(session, sim, token)
    assert (status, headers["Content-Type"]) == (200, "application/json")
    assert orjson.loads(body) == {"meta": {"status": 200, "isLastToken": True}, "data": [], "fail": []}
    assert "mc-siem-token" not in headers


async def test_files_added_later_follow_the_last_token(make_sim: Any, session: Any) -> None:
    """A caught-up token gets the next file once Mimecast has written it."""
    sim = await make_sim()
    sim.siem.add(generate_siem_files(1, start=0, records_per_file=2))
    _, headers, _ = await post(session, sim)
    token = headers["mc-siem-token"]
    assert (await post(session, sim, token))[1]["Content-Type"] == "application/json"
    sim.siem.add(generate_siem_files(1, start=60, records_per_file=3, seed=1))
    _, headers, body = await post(session, sim, token)
    assert [count for _, count in records_of(headers, body)] == [3]


async def test_one_zip_may_hold_several_files(make_sim: Any, session: Any) -> None:
    """files_per_answer > 1: one answer, several members, one token past them all."""
    sim = await make_sim()
    sim.siem.files_per_answer = 3
    sim.siem.add(generate_siem_files(4, start=0, records_per_file=2))
    _, headers, body = await post(session, sim)
    assert len(records_of(headers, body)) == 3
    _, headers, body = await post(session, sim, headers["mc-siem-token"])
    assert len(records_of(headers, body)) == 1


async def test_uncompressed_and_key_value_answers(make_sim: Any, session: Any) -> None:
    """compress=false serves the file itself; key_value serves pipe-delimited lines."""
    sim = await make_sim()
    sim.siem.add(generate_siem_files(1, start=0, records_per_file=5))
    _, headers, body = await post(session, sim, compress=False, file_format="key_value")
    assert not body.startswith(b"PK")
    assert body.startswith(b"acc=C0A0|datetime=")
    assert records_of(headers, body, "key_value")[0][1] == 5


async def test_every_type_has_realistic_records(make_sim: Any, session: Any) -> None:
    """One file per type, each record with a datetime and an account code."""
    sim = await make_sim()
    sim.siem.files_per_answer = len(SIEM_TYPES)
    files = generate_siem_files(len(SIEM_TYPES), start=0, records_per_file=2)
    sim.siem.add(files)
    body = (await post(session, sim))[2]
    found = list(read_files(body, name=None, file_format="json", limits=LIMITS))
    assert len(found) == len(SIEM_TYPES)
    assert all(r["acc"] == "C0A0" and r["datetime"].endswith("+0000") for f in found for r in f.records())


async def test_oauth2_bearer_is_accepted(make_sim: Any, session: Any) -> None:
    """API 2.0 credentials reach the same endpoint."""
    sim = await make_sim()
    sim.siem.add(generate_siem_files(1, start=0, records_per_file=1))
    timeout = aiohttp.ClientTimeout(total=10)
    auth = OAuth2Auth(sim.base_url, SIM.client_id, SIM.client_secret, session, timeout=timeout, ssl=False, proxy=None)
    status, _, _ = await post(session, sim, auth=auth)
    assert status == 200


async def test_bad_signature_is_refused(make_sim: Any, session: Any) -> None:
    """A wrong secret: 401 with the signature error code."""
    sim = await make_sim()
    wrong = HmacAuth(SIM.access_key, "d3Jvbmc=", SIM.app_id, SIM.app_key)
    status, _, body = await post(session, sim, auth=wrong)
    assert status == 401
    assert orjson.loads(body)["fail"][0]["errors"][0]["code"] == "err_xdk_invalid_signature"


@pytest.mark.parametrize(
    ("request_data", "code"),
    [
        ({"type": "MTA", "token": "not-a-token"}, "err_siem_token_invalid"),
        ({"type": "AUDIT"}, "err_validation_failed"),
        ({"type": "MTA", "fileFormat": "csv"}, "err_validation_failed"),
        ({"type": "MTA", "compress": "yes"}, "err_validation_failed"),
        ({"type": "MTA", "pageSize": 5}, "err_validation_failed"),
    ],
)
async def test_invalid_requests_get_400_with_a_code(make_sim: Any, session: Any, request_data: Any, code: str) -> None:
    """Strict validation, as the real API might be."""
    sim = await make_sim()
    headers = await hmac_auth().headers(SIEM_PATH)
    body = orjson.dumps({"data": [request_data]})
    async with session.post(f"{sim.base_url}{SIEM_PATH}", data=body, headers=headers) as response:
        assert response.status == 400
        assert orjson.loads(await response.read())["fail"][0]["errors"][0]["code"] == code


async def test_rate_limit_answers_429_with_reset(make_sim: Any, session: Any) -> None:
    """Metered per credentials and endpoint like the other endpoints."""
    sim = await make_sim(rate_limit=1)
    sim.siem.add(generate_siem_files(2, start=0, records_per_file=1))
    assert (await post(session, sim))[0] == 200
    status, headers, _ = await post(session, sim)
    assert status == 429
    assert int(headers["x-ratelimit-reset"]) > 0


async def test_truncated_fault_then_the_same_token_serves_the_whole_file(make_sim: Any, session: Any) -> None:
    """fault "truncated" on file 0: the first answer is cut (a classified error), the retry is whole."""
    sim = await make_sim()
    sim.siem.add(generate_siem_files(1, start=0, records_per_file=20))
    sim.siem.faults = {0: "truncated"}
    _, headers, body = await post(session, sim)
    with pytest.raises(SiemAnswerError):
        records_of(headers, body)
    _, headers, body = await post(session, sim)
    assert records_of(headers, body)[0][1] == 20


async def test_bad_file_fault_adds_a_member_that_is_not_json(make_sim: Any, session: Any) -> None:
    """fault "bad_file": a second member of junk beside the real file."""
    sim = await make_sim()
    sim.siem.add(generate_siem_files(1, start=0, records_per_file=2))
    sim.siem.faults = {0: "bad_file"}
    body = (await post(session, sim))[2]
    found = list(read_files(body, name=None, file_format="json", limits=LIMITS))
    assert [len(list(f.records())) for f in found] == [2, 1]
    assert found[1].unparsed == 1


async def test_repeat_token_fault_hands_the_same_token_back(make_sim: Any, session: Any) -> None:
    """fault "repeat_token" on file 1: the answer's token is the one sent (a loop the collector must catch)."""
    sim = await make_sim()
    sim.siem.add(generate_siem_files(3, start=0, records_per_file=1))
    sim.siem.faults = {1: "repeat_token"}
    _, headers, _ = await post(session, sim)
    token = headers["mc-siem-token"]
    _, headers, _ = await post(session, sim, token)
    assert headers["mc-siem-token"] == token
    _, headers, _ = await post(session, sim, token)
    assert headers["mc-siem-token"] != token
