"""The newcomer's first command: `mimecast-collector demo` leaves readable events of every log type."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson


def test_demo_collects_every_log_type(tmp_path: Path) -> None:
    """The demo exits 0 and writes JSON lines for all seven windowed log types, API 1.0 SIEM and the
    SIEM batch files into ./demo-out."""
    done = subprocess.run(
        [sys.executable, "-m", "collector", "demo", "--events", "1500"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    events = [orjson.loads(line) for line in (tmp_path / "demo-out" / "events.jsonl").read_bytes().splitlines()]
    datasets = sorted({e["event"]["dataset"] for e in events})
    assert datasets == [
        "mimecast.archive_search",
        "mimecast.audit",
        "mimecast.dlp",
        "mimecast.held_release",
        "mimecast.siem",
        "mimecast.siem_cg",
        "mimecast.siem_ci",
        "mimecast.ttp_attachment",
        "mimecast.ttp_impersonation",
        "mimecast.ttp_url",
    ]
    siem = 6 * 300 + 300  # six batch types and API 1.0 SIEM, a fifth of --events each
    assert len(events) == 7 * 1500 + siem
    assert f"{7 * 1500 + siem} events in" in done.stdout
    assert "throttled (429): 0" in done.stdout
    assert "with an Authorization header: 0" in done.stdout
    assert done.stderr == ""  # nothing went wrong worth a log line


def test_demo_twice_starts_afresh(tmp_path: Path) -> None:
    """Running the demo again replaces the earlier run's files instead of appending to them."""
    for _ in range(2):
        subprocess.run(
            [sys.executable, "-m", "collector", "demo", "--events", "100"],
            cwd=tmp_path,
            capture_output=True,
            check=True,
            timeout=60,
        )
    assert len((tmp_path / "demo-out" / "events.jsonl").read_bytes().splitlines()) == 7 * 100 + 6 * 20 + 20
