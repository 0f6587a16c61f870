"""SIEM batch files (API 2.0) end to end: the real simulator and its file host, a real state file.

Every stream is one batch type; files are gzip NDJSON behind expiring pre-signed links. The tests
check the guarantees of collector/collect/batch.py: nothing lost or duplicated, refreshed links never
skipped, no credentials to the file host, hostile files never stop collection.
"""

from __future__ import annotations

import asyncio
import gzip
import random
import signal
import sqlite3
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import orjson
import pytest

from collector.cli import main
from collector.collect import batch as batch_cursor
from collector.collect import stream_labels
from collector.config import load_config
from collector.config.errors import ConfigError
from collector.logtypes import LOG_TYPES, dedup_key
from collector.service.app import Collector
from collector.service.telemetry import Telemetry
from collector.simulator import FakeMimecast
from collector.simulator.siem_batch import SimBatchFile
from collector.simulator.siem_data import siem_records
from collector.state.store import Store
from tests.helpers import delivered_ids, read_events, start_collector, table, write_config
from tests.receivers import FakeElasticsearch, FakeHec, FakeHttpCollector
from tests.test_end_to_end import run_once

DAY = 86_400
FAMILY_LOG_TYPE = {"cg": "siem_cg", "ci": "siem_ci"}


def today(offset_days: int = 0) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(time.time() + offset_days * DAY))


def siem_config(
    tmp_path: Path,
    sim: FakeMimecast,
    types: dict[str, list[str]],
    *,
    page_size: int = 3,
    sink: dict[str, Any] | None = None,
    **account: Any,
) -> Path:
    """An oauth2 account collecting ``types`` ({"siem_cg": [...], ...}) with listing pages of ``page_size``."""
    tables = "".join(
        f"[accounts.acme.{name}]\ntypes = {orjson.dumps(t).decode()}\npage_size = {page_size}\n"
        for name, t in types.items()
    )
    options = {"streams": list(types), "start": time.strftime("%Y-%m-%dT00:00:00Z", time.gmtime(time.time() - 2 * DAY))}
    options.update(account)
    return write_config(tmp_path, sim.base_url, auth="oauth2", account=options, sink=sink, extra_tables=tables)


def add_files(
    sim: FakeMimecast, family: str, kind: str, files: int, lines: int, *, days_ago: int = 1
) -> list[SimBatchFile]:
    now = int(time.time())
    added = []
    for i in range(files):
        start = now - days_ago * DAY + i * 600
        added.append(sim.batch.add_generated(family, kind, today(-days_ago), lines, start=start, end=start + 600))
    return added


def expected(files: Iterable[SimBatchFile]) -> list[tuple[str, str]]:
    """(dataset, event.id) of every record of ``files``: what the sink must hold, once each."""
    out: list[tuple[str, str]] = []
    for batch_file in files:
        log_type = LOG_TYPES[FAMILY_LOG_TYPE[batch_file.family]]
        out.extend((log_type.dataset, dedup_key(r, log_type.dedup_fields)) for r in batch_file.records)
    return out


def assert_no_credentials_sent(sim: FakeMimecast) -> None:
    stats = sim.batch.stats
    assert stats.file_requests > 0
    assert (stats.with_authorization, stats.with_cookie, stats.with_proxy_authorization) == (0, 0, 0)


async def test_clean_run_delivers_every_line_once_without_credentials_at_the_file_host(
    make_sim: Callable[..., Any], tmp_path: Path
) -> None:
    """cg (3 types) and ci (1 type), 4 files each of 700 lines over listing pages of 3: each event once."""
    sim = await make_sim()
    files = []
    for family, kind in (("cg", "receipt"), ("cg", "av"), ("cg", "internal email protect"), ("ci", "entities")):
        files += add_files(sim, family, kind, 4, 700)
    config = siem_config(
        tmp_path, sim, {"siem_cg": ["receipt", "av", "internal email protect"], "siem_ci": ["entities"]}
    )

    result = await run_once(config)

    assert result.exit_code == 0
    delivered = delivered_ids(tmp_path / "out")
    assert sorted(delivered) == sorted(expected(files))
    assert_no_credentials_sent(sim)
    assert (sim.stats.bad_auth.total(), sim.stats.bad_request.total()) == (0, 0)
    events = read_events(tmp_path / "out")
    assert {e["labels"]["mimecast_log_type"] for e in events} == {
        "siem_cg.receipt",
        "siem_cg.av",
        "siem_cg.internal_email_protect",
        "siem_ci.entities",
    }
    assert all("mimecast_normalize_error" not in e.get("tags", ()) for e in events)


async def test_truncated_files_cut_downloads_expired_links_and_empty_pages_lose_nothing(
    make_sim: Callable[..., Any], tmp_path: Path, log_buffer: Any
) -> None:
    """Every fault the file host and the listing can throw, in one run: still each event exactly once."""
    sim = await make_sim(rate_limit=30, rate_window_ms=1000)
    sim.batch.settings.truncate_every = 3  # every 3rd first download: a complete body, half a gzip stream
    sim.batch.settings.cut_every = 4  # every 4th: cut mid-body, and its link expires at that moment
    sim.batch.settings.empty_page_every = 2  # every 2nd listing with a token: empty, a fresh token, not caught up
    files = add_files(sim, "cg", "receipt", 9, 900) + add_files(sim, "cg", "process", 6, 400)
    config = siem_config(tmp_path, sim, {"siem_cg": ["receipt", "process"]}, retry_max_secs=1)
    results = []

    async def collect() -> None:
        results.append(await run_once(config))

    async with asyncio.TaskGroup() as tg:
        tg.create_task(collect())
        while not sim.batch.stats.served:  # noqa: ASYNC110 - polling another party's counter
            await asyncio.sleep(0.01)
        sim.batch.expire_links()  # every link listed so far dies while the run goes on

    assert results[0].exit_code == 0
    assert sorted(delivered_ids(tmp_path / "out")) == sorted(expected(files))
    stats = sim.batch.stats
    faults = (stats.truncated >= 2, stats.cut >= 2, stats.empty_pages >= 1, stats.expired >= 3)
    assert faults == (True, True, True, True), stats
    assert_no_credentials_sent(sim)
    retries = [line for line in log_lines(log_buffer) if line["event"] == "batch_file_retry"]
    assert {line["relist"] for line in retries} == {True, False}  # retried in place, and listed again


def log_lines(buffer: Any) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in buffer.getvalue().splitlines() if line.startswith("{")]


def gz(lines: Iterable[bytes]) -> bytes:
    return gzip.compress(b"".join(line + b"\n" for line in lines), mtime=0)


async def test_hostile_files_are_kept_raw_and_tagged_and_collection_goes_on(
    make_sim: Callable[..., Any], tmp_path: Path
) -> None:
    """A huge line, lines that are no JSON object, a file that is no gzip, an endless body: the good
    lines around them all arrive, the bad ones arrive raw and tagged, and only the endless stream fails."""
    sim = await make_sim()
    before = add_files(sim, "cg", "receipt", 1, 50)
    extra = list(siem_records("receipt", 2, start=int(time.time()) - DAY, end=int(time.time()), seed=99))
    good = [orjson.dumps(r) for r in extra]
    sim.batch.add_raw("cg", "receipt", today(-1), gz([good[0], b"x" * 5000, b"not json", b"[1,2]", good[1]]))
    sim.batch.add_raw("cg", "receipt", today(-1), b"\x1f\x8b\x08\x00" + bytes(range(256)) * 40)  # gzip magic, then junk
    after = add_files(sim, "cg", "receipt", 1, 50)
    sim.batch.add_endless("cg", "spam", today(-1))
    config = siem_config(
        tmp_path,
        sim,
        {"siem_cg": ["receipt", "spam"]},
        siem_max_line_bytes=1024,
        siem_max_file_bytes=1 << 20,
        retry_max_secs=1,
    )

    result = await run_once(config)

    assert (result.exit_code, result.failed_streams) == (1, ["acme/siem_cg.spam"])
    events = read_events(tmp_path / "out")
    receipts = [e for e in events if e["labels"]["mimecast_log_type"] == "siem_cg.receipt"]
    normal = [(e["event"]["dataset"], e["event"]["id"]) for e in receipts if "tags" not in e]
    assert sorted(normal) == sorted(expected(before + after) + expected([_holding(extra)]))
    kept = [e for e in receipts if "mimecast_normalize_error" in e.get("tags", ())]
    cut = [e for e in kept if "mimecast_line_cut" in e["tags"]]
    assert [len(e["mimecast"]["line"]) for e in cut] == [1024]
    assert sorted(e["mimecast"]["line"] for e in kept if e not in cut and "line" in e["mimecast"]) == [
        "[1,2]",
        "not json",
    ]
    [undecodable] = [e for e in kept if "mimecast_file_undecodable" in e["tags"]]
    assert "X-Amz-Signature" not in orjson.dumps(undecodable).decode()  # the link's signature is never kept
    store = await Store.open(tmp_path / "state" / "collector.db", read_only=True)
    try:
        rows = {row["log_type"]: row for row in await store.streams()}
    finally:
        await store.close()
    assert "siem_max_file_bytes" in rows["siem_cg.spam"]["last_error"]


def _holding(records: list[dict[str, Any]]) -> SimBatchFile:
    """A stand-in cg receipt file holding ``records`` (the good lines written into a raw file)."""
    return SimBatchFile(id="copy", family="cg", kind="receipt", day="", records=records)


# --- config: validate refuses what the run could not do ---------------------------------------------


def test_validate_names_the_key_for_a_siem_batch_stream_on_an_hmac_account(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """siem_cg on auth = "hmac": exit 78 naming accounts.acme.streams and what to do."""
    config = write_config(tmp_path, "http://127.0.0.1:9", account={"streams": ["ttp_url", "siem_cg"]})

    assert main(["validate", "--offline", "--config", str(config)]) == 78

    error = capsys.readouterr().err
    assert "accounts.acme.streams" in error
    assert "oauth2" in error


@pytest.mark.parametrize(
    ("types", "key"),
    [(["receipt", "recieve"], "accounts.acme.siem_cg.types[1]"), ([], "accounts.acme.siem_cg.types")],
)
def test_validate_refuses_an_unknown_batch_type_and_lists_the_valid_ones(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], types: list[str], key: str
) -> None:
    config = write_config(
        tmp_path,
        "http://127.0.0.1:9",
        auth="oauth2",
        account={"streams": ["siem_cg"]},
        extra_tables=f"[accounts.acme.siem_cg]\ntypes = {orjson.dumps(types).decode()}\n",
    )

    assert main(["validate", "--offline", "--config", str(config)]) == 78

    error = capsys.readouterr().err
    assert key in error
    assert "'internal email protect'" in error  # the valid list, spelled as the API takes it


def test_types_is_refused_for_a_log_type_without_batch_types(tmp_path: Path) -> None:
    config = write_config(tmp_path, "http://127.0.0.1:9", extra_tables='[accounts.acme.ttp_url]\ntypes = ["x"]\n')
    with pytest.raises(ConfigError, match=r"accounts\.acme\.ttp_url\.types"):
        load_config(config)


def test_each_batch_type_is_its_own_stream_with_its_own_status_row(tmp_path: Path) -> None:
    """Default types: all ten cg types, each a stream; status shows one row per type."""
    config = load_config(
        write_config(tmp_path, "http://127.0.0.1:9", auth="oauth2", account={"streams": ["siem_cg", "ttp_url"]})
    )
    labels = stream_labels(config.accounts[0])
    assert labels == ["siem_cg." + t.replace(" ", "_") for t in LOG_TYPES["siem_cg"].batch_types] + ["ttp_url"]


# --- SIGKILL mid-file: resumes at the last committed line ---------------------------------------------

KILLS = 6
SINK_BATCH = 100


async def test_sigkills_mid_file_lose_nothing_and_resume_at_the_committed_line(
    make_sim: Callable[..., Any], tmp_path: Path
) -> None:
    """Killed 6 times while files stream in slowly, then finished with --once: every line delivered,
    at most one sink batch repeated per kill, and the final run reads only the lines not yet committed."""
    sim = await make_sim()
    # ~2 s per file: kills land inside files, and the receipt files outlast the six kills' ~11 s.
    sim.batch.settings.chunk_delay_secs = 0.06
    files = add_files(sim, "cg", "receipt", 8, 4000) + add_files(sim, "cg", "av", 3, 3000)
    config = siem_config(
        tmp_path, sim, {"siem_cg": ["receipt", "av"]}, page_size=2, sink={"batch_max_events": SINK_BATCH}
    )
    out, log, state = tmp_path / "out", tmp_path / "collector.log", tmp_path / "state" / "collector.db"
    rng = random.Random(20261202)
    for _ in range(KILLS):
        process = await start_collector(config, log)
        await asyncio.sleep(rng.uniform(1.0, 2.5))
        process.send_signal(signal.SIGKILL)
        assert await process.wait() == -signal.SIGKILL
    resumed_mid_file = [
        line for line in log_file_lines(log) if line["event"] == "stream_started" and line.get("line", 0) > 0
    ]
    assert resumed_mid_file  # the kills really landed inside files, not between them

    store = await Store.open(state, read_only=True)
    try:
        committed = {row["log_type"]: row["events_total"] for row in await store.streams()}
    finally:
        await store.close()
    telemetry = Telemetry()
    final = await Collector(load_config(config), once=True, handle_signals=False, telemetry=telemetry).run()

    assert final.exit_code == 0
    delivered = delivered_ids(out)
    want = expected(files)
    assert set(delivered) == set(want)
    assert len(delivered) - len(want) <= KILLS * SINK_BATCH
    lines = {"siem_cg.receipt": 8 * 4000, "siem_cg.av": 3 * 3000}
    assert any(0 < committed.get(label, 0) < total for label, total in lines.items()), committed  # work was left
    for label, total in lines.items():
        fetched = telemetry.sample("mimecast_events_fetched_total", account="acme", log_type=label)
        duplicates = telemetry.sample("mimecast_events_duplicate_total", account="acme", log_type=label)
        # Not one line before the committed position is read again, and none after it is missing.
        assert (fetched, duplicates) == (total - committed.get(label, 0), 0), label
    assert_no_credentials_sent(sim)


def log_file_lines(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line.startswith(b"{")]


# --- every sink ---------------------------------------------------------------------------------------


class LineReceiver:
    """A syslog receiver on TCP with newline framing: keeps each message's JSON payload."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self.port = 0
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while line := await reader.readline():
            self.messages.append(orjson.loads(line[line.index(b"{") :]))
        writer.close()

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


async def test_every_sink_gets_every_siem_event_exactly_once(make_sim: Callable[..., Any], tmp_path: Path) -> None:
    """File, HTTP, Splunk HEC, Elasticsearch and syslog each hold each SIEM event once after a clean run."""
    sim = await make_sim()
    files = add_files(sim, "cg", "receipt", 2, 600) + add_files(sim, "ci", "entities", 2, 400)
    http, hec, es, syslog = FakeHttpCollector(), FakeHec(), FakeElasticsearch(), LineReceiver()
    for receiver in (http, hec, es, syslog):
        await receiver.start()
    common = {"batch_max_events": 250, "retry_max_secs": 1}
    sinks = (
        table("sinks.http", {"type": "http", "url": f"{http.url}/ingest", "body_format": "ndjson", **common})
        + table("sinks.splunk", {"type": "splunk_hec", "url": hec.url, "token": hec.token, **common})
        + table("sinks.elastic", {"type": "elasticsearch", "url": es.url, "api_key": es.api_key, **common})
        + table(
            "sinks.syslog",
            {"type": "syslog", "host": "127.0.0.1", "port": syslog.port, "transport": "tcp", "framing": "newline"}
            | {"format": "json", "max_message_bytes": 1 << 20, **common},
        )
    )
    config = siem_config(tmp_path, sim, {"siem_cg": ["receipt"], "siem_ci": ["entities"]})
    config.write_text(config.read_text() + sinks)
    try:
        result = await run_once(config)
    finally:
        for receiver in (http, hec, es, syslog):
            await receiver.stop()

    assert result.exit_code == 0
    want = sorted(key for _, key in expected(files))
    got = {
        "file": sorted(key for _, key in delivered_ids(tmp_path / "out")),
        "http": sorted(orjson.loads(line)["event"]["id"] for _, body in http.received for line in body.splitlines()),
        "splunk": sorted(e.event_id for e in hec.events),
        "elastic": sorted(doc["event"]["id"] for doc in es.docs.values()),
        "syslog": sorted(m["event"]["id"] for m in syslog.messages),
    }
    assert got == dict.fromkeys(got, want)
    assert (es.conflicts, max(es.created.values())) == (0, 1)


# --- tokens rejected, reset, status -------------------------------------------------------------------


def state_rows(tmp_path: Path) -> dict[str, dict[str, Any]]:
    conn = sqlite3.connect(tmp_path / "state" / "collector.db")
    conn.row_factory = sqlite3.Row
    try:
        return {row["log_type"]: dict(row) for row in conn.execute("SELECT * FROM streams")}
    finally:
        conn.close()


async def test_a_rejected_listing_token_restarts_the_chain_at_its_day_and_loses_nothing(
    make_sim: Callable[..., Any], tmp_path: Path, log_buffer: Any
) -> None:
    """The saved nextPage is refused (400): the type lists its day again without a token; dedup drops
    what was already delivered, the new files arrive."""
    sim = await make_sim()
    first = add_files(sim, "cg", "receipt", 3, 200)
    config = siem_config(tmp_path, sim, {"siem_cg": ["receipt"]})
    assert (await run_once(config)).exit_code == 0
    later = add_files(sim, "cg", "receipt", 2, 200)
    conn = sqlite3.connect(tmp_path / "state" / "collector.db")
    cursor = orjson.loads(conn.execute("SELECT cursor FROM streams").fetchone()[0])
    assert cursor["page"] is not None  # a continuation token was saved
    conn.execute("UPDATE streams SET cursor = ?", (orjson.dumps({**cursor, "page": "bm90LWEtdG9rZW4="}).decode(),))
    conn.commit()
    conn.close()

    assert (await run_once(config)).exit_code == 0

    assert sorted(delivered_ids(tmp_path / "out")) == sorted(expected(first + later))
    assert [line["event"] for line in log_lines(log_buffer) if line["event"] == "batch_page_token_rejected"] == [
        "batch_page_token_rejected"
    ]


async def test_reset_start_rewinds_every_type_of_a_batch_log_type(
    make_sim: Callable[..., Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """reset --stream siem_cg clears each type's cursor and sets its start; the re-read sends nothing twice."""
    sim = await make_sim()
    files = add_files(sim, "cg", "receipt", 2, 300) + add_files(sim, "cg", "av", 1, 300)
    config = siem_config(tmp_path, sim, {"siem_cg": ["receipt", "av"]})
    assert (await run_once(config)).exit_code == 0
    start = time.strftime("%Y-%m-%dT00:00:00Z", time.gmtime(time.time() - 3 * DAY))

    reset = ["reset", "--config", str(config), "--stream", "siem_cg", "--start", start]
    assert await asyncio.to_thread(main, reset) == 0  # main() runs its own event loop

    printed = capsys.readouterr().out
    assert "acme/siem_cg.receipt: next run starts at" in printed
    assert "acme/siem_cg.av: next run starts at" in printed
    rows = state_rows(tmp_path)
    assert [rows[label]["cursor"] for label in ("siem_cg.receipt", "siem_cg.av")] == [None, None]
    assert (await run_once(config)).exit_code == 0
    assert sorted(delivered_ids(tmp_path / "out")) == sorted(expected(files))  # re-listed, nothing twice
    assert sim.batch.stats.served == {f.id: 2 for f in files}  # every file really was read again


HOSTILE_LISTINGS = {
    "spam": b'{"value": "not a list"}',
    "journal": b'{"value": [{"size": 10}]}',  # an entry without a url
    "av": b'{"value": [{"url": "file:///etc/shadow"}], "@nextPage": "x"}',  # a link we never fetch
    "delivery": b'{"value": [{"url": "http://files.example/a.gz?sig=1"}]}',  # plain http off loopback
}  # an answer that is no JSON object is retried by the client without limit, like every malformed answer


async def test_hostile_listings_fail_only_their_stream_and_a_throttled_listing_is_paced(
    make_sim: Callable[..., Any], tmp_path: Path
) -> None:
    """Listings that are not what the API sends each fail their own stream with a clear error (nothing
    fetched from a link it names); receipt, behind a listing limit of 3 calls a second, arrives whole."""
    sim = await make_sim(rate_limit=3, rate_window_ms=1000)
    sim.batch.settings.listing_bodies = dict(HOSTILE_LISTINGS)
    files = add_files(sim, "cg", "receipt", 12, 50)
    config = siem_config(tmp_path, sim, {"siem_cg": ["receipt", *HOSTILE_LISTINGS]}, page_size=1)

    result = await run_once(config)

    assert result.exit_code == 1
    assert sorted(result.failed_streams) == sorted(f"acme/siem_cg.{kind}" for kind in HOSTILE_LISTINGS)
    assert sorted(delivered_ids(tmp_path / "out")) == sorted(expected(files))
    assert sim.batch.stats.file_requests == 12  # only receipt's files were fetched
    rows = state_rows(tmp_path)
    assert "malformed batch listing" in rows["siem_cg.spam"]["last_error"]
    assert "only https links" in rows["siem_cg.av"]["last_error"]
    assert "only https links" in rows["siem_cg.delivery"]["last_error"]


async def test_pages_of_long_lines_are_committed_by_bytes_not_only_by_line_count(
    make_sim: Callable[..., Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Lines of ~20 KB under a 60 KB page budget: no committed page holds more than the budget plus
    one line, so a file of long lines is never held whole before its commit; every line arrives once."""
    monkeypatch.setattr(batch_cursor, "COMMIT_BYTES", 60_000)
    sim = await make_sim()
    records = list(siem_records("receipt", 40, start=int(time.time()) - DAY, end=int(time.time()), seed=5))
    for record in records:
        record["subject"] = "s" * 20_000
    sim.batch.add_raw("cg", "receipt", today(-1), gz(orjson.dumps(r) for r in records))
    pages: list[int] = []
    commit_page = Store.commit_page

    async def spy(self: Store, events: Any, *args: Any, **kwargs: Any) -> Any:
        if events:
            pages.append(len(events))
        return await commit_page(self, events, *args, **kwargs)

    monkeypatch.setattr(Store, "commit_page", spy)
    config = siem_config(tmp_path, sim, {"siem_cg": ["receipt"]})

    result = await run_once(config)

    assert result.exit_code == 0
    assert sorted(delivered_ids(tmp_path / "out")) == sorted(expected([_holding(records)]))
    assert pages == [3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 1]  # 20 KB lines: the third one reaches 60 KB
