"""The state file's bad days: a full disk, an unwritable directory, corruption, a second collector."""

from __future__ import annotations

import asyncio
import os
import resource
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from tests.helpers import delivered_ids, expected_ids, run_cli, seed, start_collector, write_config

FILE_SIZE_LIMIT = 3 * 2**20


def limit_file_size() -> None:
    """In the child: its "disk" fills up at FILE_SIZE_LIMIT bytes per file."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # so writes fail with EFBIG instead of killing it
    resource.setrlimit(resource.RLIMIT_FSIZE, (FILE_SIZE_LIMIT, FILE_SIZE_LIMIT))


async def test_disk_full_stops_with_a_clear_error_and_loses_nothing(
    make_sim: Callable[..., Any], tmp_path: Path
) -> None:
    """The state file cannot grow: exit 74 saying so; with room again, the next run delivers everything."""
    sim = await make_sim()
    records = seed(sim, 3000, days=2)
    config = write_config(tmp_path, sim.base_url, account={"page_size": 500})

    full = await run_cli("run", "--once", "--config", str(config), "--log-format", "json", preexec_fn=limit_file_size)

    assert full.returncode == 74, full.stderr[-2000:]
    last = full.stderr.strip().splitlines()[-1]
    assert last.startswith("mimecast-collector: state error: cannot write state file")
    assert "the disk may be full or failing" in last
    assert "nothing committed was lost" in last
    assert "Traceback" not in full.stderr

    after = await run_cli("run", "--once", "--config", str(config))
    assert after.returncode == 0, after.stderr[-2000:]
    assert set(delivered_ids(tmp_path / "out")) == expected_ids(records)


async def test_unwritable_state_directory(tmp_path: Path) -> None:
    """A state directory that cannot be created (sysfs refuses even root): exit 74, one clear line."""
    config = write_config(tmp_path, "http://127.0.0.1:9")
    config.write_text(config.read_text().replace(str(tmp_path / "state"), "/sys/mimecast-collector-test"))
    done = await run_cli("run", "--once", "--config", str(config))
    assert done.returncode == 74
    assert done.stderr.splitlines() == [done.stderr.strip()]
    assert done.stderr.startswith("mimecast-collector: state error: cannot create lock file /sys/")
    assert "check that the state directory exists and is writable" in done.stderr


async def test_corrupt_state_file(tmp_path: Path) -> None:
    """Garbage where the state file should be: run and status exit 74 and say what to do."""
    config = write_config(tmp_path, "http://127.0.0.1:9")
    state = tmp_path / "state" / "collector.db"
    state.parent.mkdir()
    state.write_bytes(b"this is not a database, it is " + bytes(range(256)) * 64)
    for command in (("run", "--once"), ("status",)):
        done = await run_cli(*command, "--config", str(config))
        assert done.returncode == 74, command
        assert "is corrupt" in done.stderr
        assert "move the file aside" in done.stderr
        assert "Traceback" not in done.stderr


async def test_second_collector_on_the_same_state(make_sim: Callable[..., Any], tmp_path: Path) -> None:
    """While one collector runs, a second on the same state file exits 74 instead of sharing it."""
    sim = await make_sim()
    seed(sim, 100, days=1)
    config = write_config(tmp_path, sim.base_url)
    first = await start_collector(config, tmp_path / "first.log")
    try:
        for _ in range(100):  # until the first one holds the state
            if (tmp_path / "out" / "events.jsonl").exists():
                break
            await asyncio.sleep(0.1)
        second = await run_cli("run", "--once", "--config", str(config))
    finally:
        first.send_signal(signal.SIGTERM)
        await first.wait()
    assert second.returncode == 74
    assert "another collector is using" in second.stderr


async def logged(log: Path, event: str) -> dict[str, Any]:
    """The first JSON log line of ``event`` in ``log``, waiting (bounded) for it to be written."""
    for _ in range(300):
        for line in log.read_bytes().splitlines() if log.exists() else []:
            entry: dict[str, Any] = orjson.loads(line) if line.startswith(b"{") else {}
            if entry.get("event") == event:
                return entry
        await asyncio.sleep(0.1)
    raise AssertionError(f"no {event} in {log}: {log.read_text()[-2000:]}")


async def second_run_beside_a_running_first(
    make_sim: Callable[..., Any], tmp_path: Path, state_link: str, link_target: str, cwd: Path
) -> subprocess.CompletedProcess[str]:
    """Start one collector, then `run --once` a second whose config names the same state through
    ``state_link`` (a symlink to ``link_target``, relative to its config), from ``cwd``. Checks that the
    first one was unaffected and delivered everything; returns the second's outcome."""
    sim = await make_sim()
    records = seed(sim, 100, days=1)
    first_config = write_config(tmp_path, sim.base_url)
    other = tmp_path / "other"
    other.mkdir()
    second_config = write_config(other, sim.base_url)
    second_config.write_text(
        second_config.read_text().replace(f'"{other / "state" / "collector.db"}"', f'"{state_link}"')
    )
    (other / state_link).parent.mkdir(parents=True, exist_ok=True)
    (other / state_link).symlink_to(link_target)
    cwd.mkdir(exist_ok=True)
    first = await start_collector(first_config, tmp_path / "first.log")
    try:
        await logged(tmp_path / "first.log", "collector_started")
        child = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "collector", "run", "--once", "--config", os.path.relpath(second_config, cwd),
            cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip
        out, err = await asyncio.wait_for(child.communicate(), timeout=60)
        assert first.returncode is None  # still collecting
        for _ in range(600):  # the first one finishes its work
            if len(delivered_ids(tmp_path / "out")) >= 300:
                break
            await asyncio.sleep(0.1)
    finally:
        first.send_signal(signal.SIGTERM)
        await first.wait()
    assert first.returncode == 0
    assert sorted(delivered_ids(tmp_path / "out")) == sorted(expected_ids(records))
    assert not (other / "out").exists()  # the second one delivered nothing
    assert child.returncode is not None
    return subprocess.CompletedProcess([], child.returncode, out.decode(), err.decode())


async def test_second_collector_through_a_symlink_is_refused(make_sim: Callable[..., Any], tmp_path: Path) -> None:
    """A second collector whose state path is a symlink to the running one's state file exits 74."""
    real_state = tmp_path / "state" / "collector.db"
    second = await second_run_beside_a_running_first(
        make_sim, tmp_path, str(tmp_path / "other" / "link.db"), str(real_state), tmp_path
    )
    assert second.returncode == 74
    assert second.stderr == (
        f"mimecast-collector: state error: another collector is using {real_state}; stop it first (state lock held)\n"
    )


async def test_second_collector_by_a_relative_path_from_another_cwd_is_refused(
    make_sim: Callable[..., Any], tmp_path: Path
) -> None:
    """Relative config and state paths (a relative symlink) from another working directory: exit 74."""
    real_state = tmp_path / "state" / "collector.db"
    second = await second_run_beside_a_running_first(
        make_sim, tmp_path, "var/collector.db", "../../state/collector.db", tmp_path / "elsewhere"
    )
    assert second.returncode == 74
    assert second.stderr == (
        f"mimecast-collector: state error: another collector is using {real_state}; stop it first (state lock held)\n"
    )
