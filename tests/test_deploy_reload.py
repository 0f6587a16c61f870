"""The deploy files for log rotation: the unit's reload sends SIGHUP, the logrotate example triggers it."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LOGROTATE = ROOT / "deploy" / "logrotate" / "mimecast-collector"


def directives(text: str) -> list[str]:
    """The logrotate file's lines without comments, blank lines or indentation."""
    return [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]


def test_unit_reload_sends_sighup_to_the_main_process() -> None:
    """`systemctl reload` runs ExecReload, which signals the collector (not the whole cgroup) with SIGHUP."""
    unit = (ROOT / "deploy" / "systemd" / "mimecast-collector.service").read_text()
    assert [line for line in unit.splitlines() if line.startswith("ExecReload=")] == [
        "ExecReload=/bin/kill -HUP $MAINPID"
    ]


def test_logrotate_example_rotates_the_systemd_configs_file_sink() -> None:
    """The example's pattern is the path the systemd config's file sink writes to."""
    config = tomllib.loads((ROOT / "deploy" / "systemd" / "collector.toml").read_text())
    assert directives(LOGROTATE.read_text())[0] == f"{config['sinks']['local']['path']} {{"


def test_logrotate_example_reloads_and_never_copies_and_truncates() -> None:
    """postrotate reloads the unit (or signals the process); the file is moved, never copied and truncated."""
    lines = directives(LOGROTATE.read_text())
    script = lines[lines.index("postrotate") + 1 : lines.index("endscript")]
    assert script == [
        "systemctl reload mimecast-collector.service >/dev/null 2>&1 || "
        "pkill -HUP -f '/opt/mimecast-collector/bin/mimecast-collector run' || true"
    ]
    assert "nocreate" in lines
    assert "copytruncate" not in lines
