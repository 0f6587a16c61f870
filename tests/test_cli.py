"""The CLI around a real state file: status, reset, locking, store errors, and secrets kept out."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import orjson
import pytest

from collector.cli import main
from collector.config import load_config
from collector.logtypes import DEFAULT_STREAMS
from collector.simulator import FakeMimecast
from collector.state.lock import StateLock
from tests.helpers import SIM, account_options, delivered_ids, expected_ids, run_cli, seed, table, write_config
from tests.test_end_to_end import run_once


async def cli(*args: str) -> int:
    """The CLI's main() from an async test (it runs its own event loop, so in a worker thread)."""
    return await anyio.to_thread.run_sync(main, list(args))


async def test_status_reports_positions_and_backlog(
    make_sim: Callable[..., Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """After a run: every stream ok with its count and position, every sink with backlog 0."""
    sim = await make_sim()
    seed(sim, 100, days=1)
    config = write_config(tmp_path, sim.base_url)
    await run_once(config)

    assert await cli("status", "--config", str(config), "--json") == 0
    report = orjson.loads(capsys.readouterr().out)
    assert [(s["stream"], s["state"], s["events_total"], s["last_error"]) for s in report["streams"]] == [
        (f"acme/{name}", "ok", 100, None) for name in DEFAULT_STREAMS
    ]
    assert all(55 <= s["lag_secs"] <= 600 for s in report["streams"])
    assert [(k["sink"], k["backlog"], k["delivered_total"]) for k in report["sinks"]] == [
        ("local", 0, 100 * len(DEFAULT_STREAMS))
    ]

    assert await cli("status", "--config", str(config)) == 0
    text = capsys.readouterr().out
    assert "acme/archive_search" in text
    assert "local" in text


def test_status_before_the_first_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """No state file yet: exit 74 and say so."""
    config = write_config(tmp_path, "http://127.0.0.1:9")
    assert main(["status", "--config", str(config)]) == 74
    assert "does not exist yet" in capsys.readouterr().err


async def test_reset_rewinds_without_duplicates(
    make_sim: Callable[..., Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """reset --start moves the position back; the re-read events are dropped by their dedup keys."""
    sim = await make_sim()
    records = seed(sim, 200, days=1 / 24)
    config = write_config(tmp_path, sim.base_url)
    await run_once(config)
    calls = sim.stats.calls_to("/api/ttp/url/get-logs")

    start = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 1800))
    assert await cli("reset", "--config", str(config), "--stream", "ttp_url", "--start", start) == 0
    assert capsys.readouterr().out == f"acme/ttp_url: next run starts at {start}\n"
    await run_once(config)

    assert sim.stats.calls_to("/api/ttp/url/get-logs") > calls  # it did read the half hour again
    assert sorted(delivered_ids(tmp_path / "out")) == sorted(expected_ids(records))


def test_reset_refuses_while_a_collector_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The state lock is held by a running collector: reset exits 74 and says to stop it first."""
    config = write_config(tmp_path, "http://127.0.0.1:9")
    lock = StateLock(load_config(config, resolve_secrets=False).state.path)
    lock.acquire()
    try:
        assert main(["reset", "--config", str(config), "--stream", "ttp_url"]) == 74
    finally:
        lock.release()
    assert "another collector is using" in capsys.readouterr().err


def test_reset_through_a_symlink_refuses_while_a_collector_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A config naming the running collector's state file by a symlink: reset still meets its lock, exit 74."""
    real_state = tmp_path / "state" / "collector.db"
    real_state.parent.mkdir()
    real_state.touch()
    config = write_config(tmp_path, "http://127.0.0.1:9")
    config.write_text(config.read_text().replace(str(real_state), str(tmp_path / "link.db")))
    (tmp_path / "link.db").symlink_to(real_state)
    lock = StateLock(real_state)
    lock.acquire()
    try:
        assert main(["reset", "--config", str(config), "--stream", "ttp_url"]) == 74
    finally:
        lock.release()
    assert capsys.readouterr().err == (
        f"mimecast-collector: state error: another collector is using {real_state}; stop it first (state lock held)\n"
    )


def test_reset_unknown_account(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An account that does not collect the stream is a usage mistake: exit 78 naming --account."""
    config = write_config(tmp_path, "http://127.0.0.1:9")
    assert main(["reset", "--config", str(config), "--stream", "ttp_url", "--account", "nobody"]) == 78
    assert "--account" in capsys.readouterr().err


def test_run_with_an_unusable_state_path(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """State under a path that is a regular file: caught at load, exit 78 with one line, no traceback."""
    (tmp_path / "blocker").write_text("")
    config = write_config(tmp_path, "http://127.0.0.1:9")
    config.write_text(config.read_text().replace(str(tmp_path / "state"), str(tmp_path / "blocker")))
    assert main(["run", "--once", "--config", str(config)]) == 78
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1
    assert err[0].startswith("mimecast-collector: config error: state.path: ")


async def test_secrets_never_reach_logs_or_status(make_sim: Callable[..., Any], tmp_path: Path) -> None:
    """Debug logs of a faulty run with HMAC and OAuth2 accounts, and `status`, hold no secret at all."""
    sim: FakeMimecast = await make_sim(fault_rate=0.2, token_lifetime_secs=1.0, rate_limit=8, rate_window_ms=1000)
    seed(sim, 400, days=1)
    oauth = table("accounts.second", account_options(sim.base_url, "oauth2", page_size=50))
    broken = table(
        "accounts.broken", account_options(sim.base_url, "hmac", app_key="wrong-app-key-value", streams=["ttp_url"])
    )
    config = write_config(tmp_path, sim.base_url, account={"page_size": 50}, extra_tables=oauth + broken)

    run = await run_cli("run", "--once", "--config", str(config), "--log-level", "debug", "--log-format", "json")
    status = await run_cli("status", "--config", str(config), "--json")

    assert run.returncode == 1  # the account with the wrong app key failed, fatally, by design
    assert "stream_failed" in run.stderr
    assert "page_committed" in run.stderr
    assert status.returncode == 0
    assert "signature" in status.stdout  # the failure is reported ...
    secrets = [
        SIM.secret_key,
        SIM.app_key,
        SIM.access_key,
        SIM.client_secret,
        "wrong-app-key-value",
        *sim.issued_tokens,
        *(h.split(" ", 1)[1] for h in sim.seen_authorizations if " " in h),
    ]
    assert len(sim.issued_tokens) >= 2
    leaked = [s for s in secrets if s in run.stderr or s in status.stdout]
    assert leaked == []  # ... and nothing secret is
