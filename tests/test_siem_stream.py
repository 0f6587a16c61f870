"""The API 1.0 SIEM token stream end to end: simulator, real SQLite state, file sink.

What is proven here: every record arrives once; the token is committed with the last events of the
answer it follows and never before; a crash mid-answer re-reads that answer and duplicates nothing;
broken answers are retried, then kept raw and passed; token loops fail the stream alone.
"""

from __future__ import annotations

import io
import sqlite3
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import aiohttp
import anyio.to_thread
import orjson
import pytest

from collector.api import MimecastClient, PacerRegistry, make_authenticator
from collector.cli import main
from collector.collect.poller import Poller, StreamSpec
from collector.config import load_config
from collector.config.errors import ConfigError
from collector.logtypes import SpoolEvent, dedup_key
from collector.logtypes.base import NORMALIZE_ERROR_TAG
from collector.service.app import Collector
from collector.service.status import status_report
from collector.service.telemetry import Telemetry
from collector.simulator import FakeMimecast
from collector.simulator.siem import SiemFile, generate_siem_files
from collector.state.db import StoreError
from collector.state.store import PageResult, Store, StreamState
from tests.helpers import delivered_ids, read_events, table, write_config
from tests.receivers import FakeElasticsearch, FakeHec, FakeHttpCollector
from tests.test_end_to_end import assert_clean_traffic, run_once
from tests.test_siem_batch import LineReceiver  # the syslog receiver siem's batch tests use

SIEM = {"streams": ["siem"]}


def expected(files: list[SiemFile], file_format: str = "json") -> set[tuple[str, str]]:
    """The (dataset, key) of every record; key_value files carry every value as text."""
    if file_format == "key_value":
        return {
            ("mimecast.siem", dedup_key({k: "" if v is None else f"{v}" for k, v in record.items()}, None))
            for f in files
            for record in f.records
        }
    return {("mimecast.siem", dedup_key(record, None)) for f in files for record in f.records}


def saved_cursor(tmp_path: Path) -> Any:
    with sqlite3.connect(tmp_path / "state" / "collector.db") as db:
        row = db.execute("SELECT cursor FROM streams WHERE log_type='siem'").fetchone()
    return None if row is None or row[0] is None else orjson.loads(row[0])


def spooled(tmp_path: Path) -> int:
    with sqlite3.connect(tmp_path / "state" / "collector.db") as db:
        return int(db.execute("SELECT count(*) FROM dedup").fetchone()[0])


def log_events(buffer: io.StringIO, name: str) -> list[dict[str, Any]]:
    lines = [orjson.loads(line) for line in buffer.getvalue().splitlines() if line.startswith("{")]
    return [line for line in lines if line.get("event") == name]


@pytest.mark.parametrize(
    ("auth", "options"),
    [
        ("hmac", {}),
        ("oauth2", {}),
        ("hmac", {"file_format": "key_value", "compress": False}),
    ],
)
async def test_clean_run_delivers_every_record_once_and_saves_the_last_token(
    make_sim: Callable[..., Any], tmp_path: Path, auth: str, options: dict[str, Any]
) -> None:
    """12 files of 5 types (2 per zip): every record once, the cursor at the last file's token."""
    sim: FakeMimecast = await make_sim()
    sim.siem.files_per_answer = 2
    files = generate_siem_files(12, start=1_796_000_000, records_per_file=150)
    sim.siem.add(files)
    siem_table = "".join(f"{k} = {orjson.dumps(v).decode()}\n" for k, v in options.items())
    config = write_config(
        tmp_path, sim.base_url, auth=auth, account=SIEM, extra_tables=f"[accounts.acme.siem]\n{siem_table}"
    )

    result = await run_once(config)

    assert result.exit_code == 0
    delivered = delivered_ids(tmp_path / "out")
    assert len(delivered) == 12 * 150
    assert set(delivered) == expected(files, options.get("file_format", "json"))
    assert_clean_traffic(sim)
    answers = 12 if options.get("compress") is False else 6
    assert sim.stats.calls_to("/api/audit/get-siem-logs") == answers + 1  # + the caught-up answer
    assert sim.siem.index_of(saved_cursor(tmp_path)["token"]) == 12
    assert all(not e.get("tags") for e in read_events(tmp_path / "out"))


async def test_second_run_resumes_at_the_saved_token(make_sim: Callable[..., Any], tmp_path: Path) -> None:
    """A second run asks with the saved token: only the files written since, nothing twice."""
    sim: FakeMimecast = await make_sim()
    first_files = generate_siem_files(3, start=1_796_000_000, records_per_file=40)
    sim.siem.add(first_files)
    config = write_config(tmp_path, sim.base_url, account=SIEM)
    assert (await run_once(config)).exit_code == 0
    later = generate_siem_files(2, start=1_796_100_000, records_per_file=40, seed=7)
    sim.siem.add(later)
    calls_before = sim.stats.calls_to("/api/audit/get-siem-logs")

    assert (await run_once(config)).exit_code == 0

    delivered = delivered_ids(tmp_path / "out")
    assert sorted(delivered) == sorted(expected(first_files + later))
    assert sim.stats.calls_to("/api/audit/get-siem-logs") - calls_before == 3


class CrashingStore(Store):
    """A store whose process 'dies' (StoreError ends the run) at the Nth SIEM commit."""

    crash_at = 0
    commits = 0

    async def commit_page(
        self,
        events: Sequence[SpoolEvent],
        next_state: StreamState,
        *,
        seen_until: int,
        prune_before: int | None = None,
        now: float,
    ) -> PageResult:
        CrashingStore.commits += 1
        if CrashingStore.commits == CrashingStore.crash_at:
            raise StoreError("simulated crash before this commit")
        return await super().commit_page(events, next_state, seen_until=seen_until, prune_before=prune_before, now=now)


async def test_crash_mid_answer_keeps_the_old_token_and_the_rerun_duplicates_nothing(
    make_sim: Callable[..., Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One file of 2,500 records commits in 3 batches; dying before the third leaves 2,000 spooled and
    no token saved. The next run asks for the same answer again and spools only the other 500; the
    sink repeats at most the batch it had in flight."""
    sim: FakeMimecast = await make_sim()
    files = generate_siem_files(1, start=1_796_000_000, records_per_file=2500)
    sim.siem.add(files)
    config = write_config(tmp_path, sim.base_url, account=SIEM, sink={"batch_max_events": 100})
    CrashingStore.crash_at, CrashingStore.commits = 3, 0
    monkeypatch.setattr("collector.service.app.Store", CrashingStore)

    with pytest.raises(BaseExceptionGroup) as raised:  # the run ends as a dead store ends it
        await Collector(load_config(config), once=True, handle_signals=False).run()
    assert raised.value.subgroup(StoreError) is not None

    assert spooled(tmp_path) == 2000
    assert saved_cursor(tmp_path) is None  # the token of that answer was never committed
    monkeypatch.setattr("collector.service.app.Store", Store)
    assert (await run_once(config)).exit_code == 0
    delivered = delivered_ids(tmp_path / "out")
    assert set(delivered) == expected(files)
    assert spooled(tmp_path) == 2500  # the re-read answer's first 2,000 were dropped by their keys
    assert len(delivered) - 2500 <= 100  # the sink repeats at most the one batch in flight at the crash
    assert sim.siem.index_of(saved_cursor(tmp_path)["token"]) == 1


async def test_a_zip_cut_short_once_is_asked_again_and_read_whole(
    make_sim: Callable[..., Any], tmp_path: Path, log_buffer: io.StringIO
) -> None:
    """A truncated zip: a classified warning, the same token again, the whole file the second time."""
    sim: FakeMimecast = await make_sim()
    files = generate_siem_files(3, start=1_796_000_000, records_per_file=60)
    sim.siem.add(files)
    sim.siem.faults = {1: "truncated"}
    config = write_config(tmp_path, sim.base_url, account=SIEM)

    assert (await run_once(config)).exit_code == 0

    assert sorted(delivered_ids(tmp_path / "out")) == sorted(expected(files))
    assert [e["kind"] for e in log_events(log_buffer, "siem_answer_unreadable")] == ["bad_zip"]


async def test_an_answer_that_stays_broken_is_kept_raw_and_the_stream_moves_on(
    make_sim: Callable[..., Any], tmp_path: Path, log_buffer: io.StringIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Truncated every time: after the retries, one raw tagged event stands for it and later files arrive."""
    monkeypatch.setattr("collector.collect.siem_token.RETRY_SECS", 0.01)
    sim: FakeMimecast = await make_sim()
    files = generate_siem_files(3, start=1_796_000_000, records_per_file=60)
    sim.siem.add(files)
    sim.siem.faults, sim.siem.fault_times = {1: "truncated"}, 100
    config = write_config(tmp_path, sim.base_url, account=SIEM)

    assert (await run_once(config)).exit_code == 0

    events = read_events(tmp_path / "out")
    raw = [e for e in events if NORMALIZE_ERROR_TAG in e.get("tags", [])]
    assert len(raw) == 1
    assert raw[0]["mimecast"]["error"] == "bad_zip"
    assert raw[0]["mimecast"]["siem_file"].startswith("process_")
    delivered = {(e["event"]["dataset"], e["event"]["id"]) for e in events if e not in raw}
    assert delivered == expected([files[0], files[2]])
    assert len(log_events(log_buffer, "siem_answer_unreadable")) == 4  # 1 + BROKEN_RETRIES
    assert len(log_events(log_buffer, "siem_answer_kept_raw")) == 1


async def test_a_junk_member_beside_a_good_file_is_kept_raw(make_sim: Callable[..., Any], tmp_path: Path) -> None:
    """A member that is not JSON: its text is one raw tagged event; the good file's records all arrive."""
    sim: FakeMimecast = await make_sim()
    files = generate_siem_files(2, start=1_796_000_000, records_per_file=30)
    sim.siem.add(files)
    sim.siem.faults = {0: "bad_file"}
    config = write_config(tmp_path, sim.base_url, account=SIEM)

    assert (await run_once(config)).exit_code == 0

    events = read_events(tmp_path / "out")
    raw = [e for e in events if NORMALIZE_ERROR_TAG in e.get("tags", [])]
    assert len(raw) == 1
    assert raw[0]["mimecast"]["raw"].startswith('{"acc": "C0A0", "datetime": ')  # from the broken record on
    assert len(events) == 61


async def test_a_token_handed_back_once_is_asked_again(
    make_sim: Callable[..., Any], tmp_path: Path, log_buffer: io.StringIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The API answers a token with itself once: asked again, nothing lost, nothing twice."""
    monkeypatch.setattr("collector.collect.siem_token.RETRY_SECS", 0.01)
    sim: FakeMimecast = await make_sim()
    files = generate_siem_files(4, start=1_796_000_000, records_per_file=25)
    sim.siem.add(files)
    sim.siem.faults = {2: "repeat_token"}
    config = write_config(tmp_path, sim.base_url, account=SIEM)

    assert (await run_once(config)).exit_code == 0

    delivered = delivered_ids(tmp_path / "out")
    assert sorted(delivered) == sorted(expected(files))
    assert len(log_events(log_buffer, "siem_token_repeated")) == 1


async def test_a_token_loop_fails_the_siem_stream_only(
    make_sim: Callable[..., Any], tmp_path: Path, log_buffer: io.StringIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A token that always comes back: the siem stream fails with a clear error; ttp_url still completes."""
    monkeypatch.setattr("collector.collect.siem_token.RETRY_SECS", 0.01)
    sim: FakeMimecast = await make_sim()
    files = generate_siem_files(3, start=1_796_000_000, records_per_file=10)
    sim.siem.add(files)
    sim.siem.faults, sim.siem.fault_times = {1: "repeat_token"}, 100
    config = write_config(tmp_path, sim.base_url, account={"streams": ["siem", "ttp_url"]})

    result = await run_once(config)

    assert result.exit_code == 1
    assert result.failed_streams == ["acme/siem"]
    failed = log_events(log_buffer, "stream_failed")
    assert len(failed) == 1
    assert "token already followed" in failed[0]["error"]
    # Files 0 and 1 are in (1 is kept though its token came back; re-asks were dropped by their keys);
    # file 2 never came, and the saved token is still the one that asks for file 1.
    datasets = Counter(dataset for dataset, _ in delivered_ids(tmp_path / "out"))
    assert datasets["mimecast.siem"] == 20
    assert sim.siem.index_of(saved_cursor(tmp_path)["token"]) == 1


async def test_caught_up_waits_one_poll_interval_and_then_asks_with_the_same_token(
    make_sim: Callable[..., Any], tmp_path: Path
) -> None:
    """In the daemon, a caught-up answer waits poll_interval_secs, then asks again with the saved token."""
    sim: FakeMimecast = await make_sim()
    files = generate_siem_files(1, start=1_796_000_000, records_per_file=5)
    sim.siem.add(files)
    config = load_config(write_config(tmp_path, sim.base_url, account={**SIEM, "poll_interval_secs": 42}))
    waits: list[float] = []

    class Stop(BaseException):
        pass

    async def sleep(secs: float) -> None:
        waits.append(secs)
        if len(waits) == 1:
            sim.siem.add(generate_siem_files(1, start=1_796_100_000, records_per_file=5, seed=3))
            return
        raise Stop

    account = config.accounts[0]
    store = await Store.open(tmp_path / "state.db")
    telemetry = Telemetry()
    try:
        async with aiohttp.ClientSession() as session:
            auth = make_authenticator(account, session, timeout=aiohttp.ClientTimeout(total=10), ssl=False, proxy=None)
            client = MimecastClient(account, session, auth, PacerRegistry(), telemetry)
            poller = Poller(StreamSpec.for_account(account)[0], client, store, telemetry, sleep=sleep)
            with pytest.raises(Stop):
                await poller.run()
    finally:
        await store.close()
    assert waits == [42, 42]
    assert sim.siem.stats["caught_up"] == 2
    assert sim.siem.stats["files"] == 2


async def test_an_answer_over_max_response_bytes_fails_the_siem_stream_with_a_hint(
    make_sim: Callable[..., Any], tmp_path: Path, log_buffer: io.StringIO
) -> None:
    """A file larger than the cap unzipped: fatal for siem, naming the option; ttp_url is untouched."""
    sim: FakeMimecast = await make_sim()
    sim.siem.add(generate_siem_files(1, start=1_796_000_000, records_per_file=2000))
    config = write_config(tmp_path, sim.base_url, account={"streams": ["siem", "ttp_url"], "max_response_bytes": 65536})

    result = await run_once(config)

    assert result.failed_streams == ["acme/siem"]
    failed = log_events(log_buffer, "stream_failed")
    assert len(failed) == 1
    assert "raise max_response_bytes (now 65536)" in failed[0]["error"]
    assert saved_cursor(tmp_path) is None


async def test_status_shows_the_cursor_without_the_token(make_sim: Callable[..., Any], tmp_path: Path) -> None:
    """status --json: the last file committed, and only that a token is held."""
    sim: FakeMimecast = await make_sim()
    files = generate_siem_files(2, start=1_796_000_000, records_per_file=3)
    sim.siem.add(files)
    config_path = write_config(tmp_path, sim.base_url, account=SIEM)
    assert (await run_once(config_path)).exit_code == 0
    config = load_config(config_path, resolve_secrets=False)

    store = await Store.open(config.state.path)
    try:
        report = await status_report(config, store, now=1_796_000_000)
    finally:
        await store.close()

    (entry,) = report["streams"]
    assert entry["stream"] == "acme/siem"
    assert entry["cursor"]["token"] == "(held)"
    assert entry["cursor"]["file"].startswith("process_")
    assert sim.siem.index_of(saved_cursor(tmp_path)["token"]) == 2


async def test_server_faults_and_a_tight_rate_limit_lose_nothing(make_sim: Callable[..., Any], tmp_path: Path) -> None:
    """5xx, HTML pages, resets, bodies cut short and retryable fail[] on a quarter of the calls, at 3
    calls a second: every record once, no 429 (the pacer keeps under the limit)."""
    sim: FakeMimecast = await make_sim(fault_rate=0.25, rate_limit=3, rate_window_ms=1000, seed=5)
    files = generate_siem_files(16, start=1_796_000_000, records_per_file=80)
    sim.siem.add(files)
    config = write_config(tmp_path, sim.base_url, account={**SIEM, "retry_max_secs": 1})

    assert (await run_once(config)).exit_code == 0

    delivered = delivered_ids(tmp_path / "out")
    assert sorted(delivered) == sorted(expected(files))
    assert sum(sim.stats.faults.values()) >= 3
    assert sim.stats.throttled == 0


async def test_validate_refuses_an_unknown_file_format(tmp_path: Path) -> None:
    """A bad siem option is a config error naming the key and the choices."""
    config = write_config(
        tmp_path, "http://127.0.0.1:9", account=SIEM, extra_tables='[accounts.acme.siem]\nfile_format = "csv"\n'
    )
    with pytest.raises(ConfigError) as raised:
        load_config(config)
    assert raised.value.key == "accounts.acme.siem.file_format"
    assert "key_value" in str(raised.value)


async def test_a_refused_saved_token_stops_the_stream_with_the_reset_hint(
    make_sim: Callable[..., Any], tmp_path: Path, log_buffer: io.StringIO
) -> None:
    """A token the API no longer knows (kept past its 7 days): fatal, naming `reset`, token kept."""
    sim: FakeMimecast = await make_sim()
    sim.siem.add(generate_siem_files(1, start=1_796_000_000, records_per_file=5))
    config = write_config(tmp_path, sim.base_url, account=SIEM)
    assert (await run_once(config)).exit_code == 0
    with sqlite3.connect(tmp_path / "state" / "collector.db") as db:
        db.execute("""UPDATE streams SET cursor='{"token": "expired-token"}' WHERE log_type='siem'""")

    result = await run_once(config)

    assert result.failed_streams == ["acme/siem"]
    (failed,) = log_events(log_buffer, "stream_failed")
    assert "refused the saved mc-siem-token" in failed["error"]
    assert "mimecast-collector reset --stream siem" in failed["error"]
    assert saved_cursor(tmp_path) == {"token": "expired-token"}


async def test_every_sink_gets_every_siem_record_exactly_once(make_sim: Callable[..., Any], tmp_path: Path) -> None:
    """File, HTTP, Splunk HEC, Elasticsearch and syslog each hold each API 1.0 SIEM event once."""
    sim: FakeMimecast = await make_sim()
    sim.siem.files_per_answer = 3
    files = generate_siem_files(10, start=1_796_000_000, records_per_file=120)
    sim.siem.add(files)
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
    config = write_config(tmp_path, sim.base_url, account=SIEM, extra_tables=sinks)
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


async def test_reset_clears_the_token_and_a_rerun_within_the_retention_duplicates_nothing(
    make_sim: Callable[..., Any], tmp_path: Path
) -> None:
    """`reset --stream siem` forgets the token: the next run starts at the oldest file again, and the
    re-read records still within dedup_retention_secs are dropped by their keys."""
    sim: FakeMimecast = await make_sim()
    files = generate_siem_files(4, start=1_796_000_000, records_per_file=30)
    sim.siem.add(files)
    config = write_config(tmp_path, sim.base_url, account=SIEM)
    assert (await run_once(config)).exit_code == 0

    assert await anyio.to_thread.run_sync(main, ["reset", "--config", str(config), "--stream", "siem"]) == 0
    assert saved_cursor(tmp_path) is None
    assert (await run_once(config)).exit_code == 0

    assert sim.siem.stats["files"] == 8  # every file served twice
    assert sorted(delivered_ids(tmp_path / "out")) == sorted(expected(files))
