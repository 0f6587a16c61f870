"""The command line on PostgreSQL state: config checks, validate, status with owners, reset guarded by
leases, and migrate from a SQLite file carrying positions, dedup keys, spool and offsets over."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest

from collector.cli import main
from collector.config import load_config
from collector.config.errors import ConfigError
from collector.config.model import StateConfig
from collector.logtypes.base import Event
from collector.state.pg_store import PostgresStore
from collector.state.store import Store
from tests.helpers import delivered_ids, expected_ids, seed, table, write_config
from tests.test_end_to_end import run_once


async def cli(*args: str) -> int:
    return await anyio.to_thread.run_sync(main, list(args))


def pg_config(tmp_path: Path, base_url: str, options: dict[str, Any], **extra: Any) -> Path:
    """write_config's config with [state] on PostgreSQL."""
    config = write_config(tmp_path, base_url)
    sqlite_state = table("state", {"path": str(tmp_path / "state" / "collector.db")})
    config.write_text(config.read_text().replace(sqlite_state, table("state", {**options, **extra})))
    return config


@pytest.mark.parametrize(
    ("state", "key", "words"),
    [
        ({"backend": "postgresql"}, "state.url", "needs a url"),
        ({"backend": "postgresql", "url": "postgresql://u:hunter2@db/x"}, "state.url", "password is not allowed"),
        (
            {"backend": "postgresql", "url": "postgresql://u@db/x?password=hunter2"},
            "state.url",
            "password is not allowed",
        ),
        ({"backend": "postgresql", "url": "mysql://db/x"}, "state.url", "is not a postgresql:// URL"),
        ({"backend": "postgresql", "url": "postgresql://db"}, "state.url", "names no database"),
        ({"backend": "postgresql", "url": "postgresql://db/x", "schema": "a-b"}, "state.schema", "plain identifier"),
        ({"backend": "postgresql", "url": "postgresql://db/x", "node": "a b"}, "state.node", "not a node name"),
        ({"backend": "postgres"}, "state.backend", ""),
    ],
)
def test_postgresql_settings_are_checked_at_load(tmp_path: Path, state: dict[str, Any], key: str, words: str) -> None:
    config = pg_config(tmp_path, "http://127.0.0.1:9", state)
    with pytest.raises(ConfigError) as caught:
        load_config(config)
    assert caught.value.key == key
    assert words in str(caught.value)
    assert "hunter2" not in str(caught.value)


def test_validate_reaches_the_database_and_names_a_wrong_password(
    tmp_path: Path, pg_state_options: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    good = pg_config(tmp_path, "http://127.0.0.1:9", pg_state_options)
    assert main(["validate", "--config", str(good)]) == 0
    assert "state database: reachable" in capsys.readouterr().out

    bad = pg_config(tmp_path, "http://127.0.0.1:9", {**pg_state_options, "password": "wrong-password"})
    assert main(["validate", "--config", str(bad)]) == 74
    err = capsys.readouterr().err
    assert "refused the login" in err
    assert "wrong-password" not in err


async def test_status_shows_owners_and_reset_respects_a_live_owner(
    make_sim: Callable[..., Any], tmp_path: Path, pg_state_options: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    """After a run, status lists an OWNER column; reset is refused while a node holds the stream's
    lease, and --force rewinds it anyway (the owner is fenced by the new epoch)."""
    sim = await make_sim()
    seed(sim, 20, days=1 / 24)
    config = pg_config(tmp_path, sim.base_url, pg_state_options, node="replica-a")
    assert (await run_once(config)).exit_code == 0
    assert await cli("status", "--config", str(config)) == 0
    out = capsys.readouterr().out
    assert "OWNER" in out.splitlines()[0]
    assert "LEASE AGE" in out

    state = load_config(config).state
    owner = await PostgresStore.connect(state)
    try:
        owner.fencing = True
        got = await owner.claim("stream", ["acme/ttp_url"], 1, state.lease_secs)
        assert got
        assert await cli("reset", "--config", str(config), "--stream", "ttp_url") == 1
        assert "is owned by node replica-a" in capsys.readouterr().err
        assert await cli("reset", "--config", str(config), "--stream", "ttp_url", "--force") == 0
        assert "acme/ttp_url: next run starts at" in capsys.readouterr().out
        assert await owner.claim("stream", ["acme/ttp_url"], 1, state.lease_secs) == {
            "acme/ttp_url": got["acme/ttp_url"] + 2
        }
    finally:
        await owner.close()


async def test_migrate_carries_positions_dedup_spool_and_offsets(
    make_sim: Callable[..., Any], tmp_path: Path, pg_state_options: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    """A SQLite state with everything delivered plus a spooled page a second sink still owes: after
    migrate, a run on PostgreSQL sends no event again, and the owed page is still owed there."""
    sim = await make_sim()
    records = seed(sim, 50, days=1 / 24)
    config = write_config(tmp_path, sim.base_url)
    assert (await run_once(config)).exit_code == 0
    state_file = tmp_path / "state" / "collector.db"
    sqlite = await Store.open(state_file)
    stream = await sqlite.stream("acme", "ttp_url", start=0)
    owed_doc = {"event": {"dataset": "mimecast.ttp_url", "id": "owed-1"}}
    await sqlite.commit_page([Event("owed-1", 5, owed_doc)], stream, seen_until=stream.window_start, now=1.0)
    before = await sqlite.usage()
    positions = {(s["account"], s["log_type"]): s["window_start"] for s in await sqlite.streams()}
    await sqlite.close()

    pg = pg_config(tmp_path, sim.base_url, pg_state_options)
    assert await cli("migrate", "--config", str(pg), "--from", str(state_file)) == 0
    assert "spooled events" in capsys.readouterr().out
    assert await cli("migrate", "--config", str(pg), "--from", str(state_file)) == 74  # not into a used schema
    assert "already holds state" in capsys.readouterr().err

    store = await PostgresStore.connect(load_config(pg).state)
    try:
        assert {(s["account"], s["log_type"]): s["window_start"] for s in await store.streams()} == positions
        assert await store.usage() == before
        [owed] = await store.read_spool(await store.sink_offset("local"), 10)
        assert owed.key == "owed-1"
        again = await store.stream("acme", "ttp_url", start=0)
        dup = await store.commit_page([Event("owed-1", 5, owed_doc)], again, seen_until=again.window_start, now=2.0)
        assert (dup.new, dup.duplicates) == (0, 1)  # its dedup key came along
    finally:
        await store.close()

    assert (await run_once(pg)).exit_code == 0
    delivered = delivered_ids(tmp_path / "out")
    # Nothing sent twice (positions and dedup keys came along); the owed page was delivered from there.
    assert sorted(delivered) == sorted(expected_ids(records) | {("mimecast.ttp_url", "owed-1")})


def test_status_of_a_schema_never_used_says_so(
    tmp_path: Path, pg_state_options: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    config = pg_config(tmp_path, "http://127.0.0.1:9", pg_state_options)
    assert main(["status", "--config", str(config)]) == 74
    assert "has no collector state yet" in capsys.readouterr().err


def test_status_with_the_database_unreachable_fails_at_once(
    tmp_path: Path, pg_state_options: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    """status, unlike run, does not wait for a database that does not answer."""
    unreachable = {**pg_state_options, "url": "postgresql://collector@127.0.0.1:9/x"}
    config = pg_config(tmp_path, "http://127.0.0.1:9", unreachable)
    assert main(["status", "--config", str(config)]) == 74
    assert "cannot reach the state database" in capsys.readouterr().err


async def test_once_beside_a_replica_holding_the_sink_collects_every_stream_to_the_end(
    make_sim: Callable[..., Any], tmp_path: Path, pg_state_options: dict[str, Any]
) -> None:
    """`run --once` next to a live replica that holds the sink: the sink is that replica's to deliver,
    yet this run still collects every stream to the end (it does not stop when its delivery does)."""
    sim = await make_sim()
    records = seed(sim, 100, days=1 / 24)
    config = pg_config(tmp_path, sim.base_url, pg_state_options, node="once-run")
    state = load_config(config).state
    daemon = await PostgresStore.connect(StateConfig(**{**state.__dict__, "node": "daemon"}))
    try:
        await daemon.heartbeat(state.lease_secs)
        await daemon.add_items("sink", ["local"])
        assert await daemon.claim("sink", ["local"], 1, state.lease_secs) == {"local": 1}
        assert (await run_once(config)).exit_code == 0
        assert (await daemon.usage()).events == len(expected_ids(records))  # all spooled, none delivered
        assert not (tmp_path / "out").exists() or delivered_ids(tmp_path / "out") == []
        positions = {s["log_type"]: s["window_start"] for s in await daemon.streams()}
        assert len(positions) == len(load_config(config).accounts[0].streams)
    finally:
        await daemon.close()
