"""``mimecast-collector demo``: the built-in API simulator, the real collector, a file of events.

No account, no config file, no network beyond loopback: a newcomer sees every part work in one
command, and can open the config it wrote to see what a real one looks like.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import TextIO

import anyio

from collector.config import load_config
from collector.logtypes import DEFAULT_STREAMS
from collector.service.app import Collector
from collector.service.telemetry import Telemetry
from collector.simulator import FakeMimecast, SimSettings, generate
from collector.simulator.siem import generate_siem_files
from collector.simulator.siem_data import siem_records
from collector.timeutil import iso

DEMO_DAYS = 3
DEMO_CG_TYPES = ("receipt", "process", "delivery", "av", "url protect")
DEMO_CI_TYPES = ("entities",)
SIEM_LINES_PER_FILE = 250
SIEM_V1_RECORDS_PER_FILE = 100


def _toml_list(values: tuple[str, ...]) -> str:
    return "[" + ", ".join(f'"{v}"' for v in values) + "]"


def siem_events_per_type(events_per_type: int) -> int:
    """Lines per SIEM batch type in the demo: a fifth of the other log types' count (at least one)."""
    return max(1, events_per_type // 5)


def _add_siem_files(sim: FakeMimecast, count: int, now: int, seed: int) -> None:
    """``count`` lines per type in files of SIEM_LINES_PER_FILE, one file after another over the demo days."""
    for family, types in (("cg", DEMO_CG_TYPES), ("ci", DEMO_CI_TYPES)):
        for kind in types:
            files = -(-count // SIEM_LINES_PER_FILE)
            span = DEMO_DAYS * 86400 // files
            for i in range(files):
                lines = min(SIEM_LINES_PER_FILE, count - i * SIEM_LINES_PER_FILE)
                start = now - DEMO_DAYS * 86400 + i * span
                day = time.strftime("%Y-%m-%d", time.gmtime(start))
                records = siem_records(kind, lines, start=start, end=start + span, seed=seed + i)
                sim.batch.add_records(family, kind, day, records)


def _add_siem_v1_files(sim: FakeMimecast, count: int, now: int, seed: int) -> None:
    """``count`` API 1.0 SIEM records in files of every type, two files to a zip, over the demo days."""
    per_file = min(SIEM_V1_RECORDS_PER_FILE, count)
    files = max(1, count // per_file)
    sim.siem.files_per_answer = 2
    spacing = (DEMO_DAYS * 86400 - 180) // files
    start = now - 180 - spacing * (files - 1)  # the last file a few minutes old, the first DEMO_DAYS back
    sim.siem.add(generate_siem_files(files, start=start, records_per_file=per_file, seed=seed, spacing_secs=spacing))


def demo_config(out_dir: Path, base_url: str, sim: SimSettings, start: float) -> str:
    return f"""# Written by `mimecast-collector demo`: the same shape as a real config, aimed at the simulator.
[state]
path = "{out_dir / "state.db"}"

[accounts.demo]
base_url = "{base_url}"          # a real account sets region = "eu" (or another) instead
auth = "hmac"
access_key = "{sim.access_key}"
secret_key = "{sim.secret_key}"
app_id = "{sim.app_id}"
app_key = "{sim.app_key}"
start = "{iso(start)}"
page_size = 250
streams = {_toml_list((*DEFAULT_STREAMS, "siem"))}   # "siem": API 1.0 SIEM logs (a token stream, opt-in)

# SIEM logs (API 2.0 batch files) need an OAuth2 account: a second one, on the same simulator.
[accounts.demo-siem]
base_url = "{base_url}"
auth = "oauth2"
client_id = "{sim.client_id}"
client_secret = "{sim.client_secret}"
start = "{iso(start)}"
streams = ["siem_cg", "siem_ci"]

[accounts.demo-siem.siem_cg]
types = {_toml_list(DEMO_CG_TYPES)}
page_size = 10

[accounts.demo-siem.siem_ci]
types = {_toml_list(DEMO_CI_TYPES)}
page_size = 10

[sinks.demo]
type = "file"
path = "{out_dir / "events.jsonl"}"
"""


def _clean(out_dir: Path) -> None:
    """Remove what an earlier demo left, and only that."""
    for pattern in ("state.db*", "events.jsonl*", "demo.toml"):
        for path in out_dir.glob(pattern):
            path.unlink()


def prepare(out_dir: Path) -> Path:
    """Create the output directory and clear an earlier demo's files; the absolute directory."""
    out_dir.mkdir(parents=True, exist_ok=True)
    _clean(out_dir)
    return out_dir.resolve()


async def run_demo(out_dir: Path, *, events_per_type: int = 5000, seed: int = 7, out: TextIO = sys.stdout) -> int:
    """Run the demo into ``out_dir`` (absolute, prepared with :func:`prepare`); the exit code."""
    # A tight limit on purpose: the pacing and the progress are part of what the demo shows.
    settings = SimSettings(rate_limit=8, rate_window_ms=1000, seed=seed)
    sim = FakeMimecast(settings)
    now = int(time.time())
    for name in DEFAULT_STREAMS:
        sim.add(name, generate(name, events_per_type, start=now - DEMO_DAYS * 86400, end=now - 120, seed=seed))
    _add_siem_files(sim, siem_events_per_type(events_per_type), now, seed)
    _add_siem_v1_files(sim, siem_events_per_type(events_per_type), now, seed)
    base_url = await sim.start()
    config_path = out_dir / "demo.toml"
    await anyio.Path(config_path).write_text(demo_config(out_dir, base_url, settings, now - DEMO_DAYS * 86400 - 60))
    print(
        f"Mimecast API simulator on {base_url}: {events_per_type} events per log type over {DEMO_DAYS} days,",
        f"and {siem_events_per_type(events_per_type)} SIEM events per batch type in gzip files on {sim.batch.base_url}",
        file=out,
    )
    print(f"Collecting with {config_path} ...\n", file=out)
    telemetry = Telemetry()
    collector = Collector(load_config(config_path), once=True, handle_signals=False, telemetry=telemetry)
    began = time.monotonic()
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(_progress, collector, out)
            result = await collector.run()
            tg.cancel_scope.cancel()
    finally:
        await sim.stop()
    _render(collector, out, final=True)
    delivered = sum(d.delivered for d in collector.dispatchers)
    print(f"\nDone in {time.monotonic() - began:.1f} s: {delivered} events in {out_dir / 'events.jsonl'}", file=out)
    print(f"API calls: {sum(sim.stats.calls.values())}, throttled (429): {sim.stats.throttled}", file=out)
    files = sim.batch.stats
    print(
        f"SIEM batch files fetched: {files.file_requests}, with an Authorization header: {files.with_authorization}",
        file=out,
    )
    print(f"Look at one:   head -n 1 {out_dir / 'events.jsonl'}", file=out)
    print(f"Where it is:   mimecast-collector status --config {config_path}", file=out)
    return result.exit_code


async def _progress(collector: Collector, out: TextIO) -> None:
    await collector.ready.wait()
    tick = 0
    while True:
        if out.isatty() or tick % 4 == 0:  # redraw in place on a terminal; a block every 2 s otherwise
            _render(collector, out, final=False)
        tick += 1
        await anyio.sleep(0.5)


def _render(collector: Collector, out: TextIO, *, final: bool) -> None:
    t = collector.telemetry
    lines = []
    for poller in collector.pollers:
        account, log_type = poller.spec.account.name, poller.spec.log_type.name
        fetched = int(t.sample("mimecast_events_spooled_total", account=account, log_type=log_type))
        position = iso(poller.state.window_start) if poller.state else "-"
        lines.append(f"  {account + '/' + log_type:<30} {fetched:>7} events   collected up to {position}")
    delivered = sum(d.delivered for d in collector.dispatchers)
    lines.append(f"  {'delivered':<30} {delivered:>7} events")
    if out.isatty() and not final:
        out.write("\n".join(lines) + f"\x1b[{len(lines) - 1}F")  # back to the first line, to redraw
    else:
        out.write("\n".join(lines) + "\n\n")
    out.flush()
