"""Delivery of whole spooled pages to JSON lines sinks (format json): what the file and NDJSON sinks
receive is byte for byte what event-by-event delivery sends, batches and offsets move as before, and
the cases that need events one by one (another format, batch_max_bytes, a drain limit inside a page)
still get them. On both backends, against a real store."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anyio
import orjson

from collector.delivery.dispatcher import Dispatcher, SpoolSignal
from collector.logtypes.base import Event
from collector.service.telemetry import Telemetry
from collector.sinks.base import LineSink, OutEvent, SinkError, SinkSettings
from collector.sinks.file import FileSink, FileSinkSettings
from collector.state.base import StateStore


class LinesSink:
    """A JSON lines sink in memory: keeps every payload it accepted, and the per-event batches it was
    given instead; fails the attempts numbered (from 1) in ``fail_attempts``."""

    def __init__(self, fail_attempts: Sequence[int] = ()) -> None:
        self.fail_attempts = set(fail_attempts)
        self.attempts = 0
        self.payloads: list[tuple[bytes, int]] = []
        self.batches: list[list[OutEvent]] = []
        self.sent: list[bytes] = []  # every line accepted, in order, whichever way it came

    async def open(self) -> None:
        return None

    async def send_lines(self, payload: bytes, count: int) -> None:
        self.attempts += 1
        if self.attempts in self.fail_attempts:
            raise SinkError("target down")
        self.payloads.append((payload, count))
        self.sent.extend(payload.split(b"\n")[:-1])

    async def send_batch(self, events: Sequence[OutEvent]) -> None:
        self.attempts += 1
        if self.attempts in self.fail_attempts:
            raise SinkError("target down")
        self.batches.append(list(events))
        self.sent.extend(e.line for e in events)

    async def close(self) -> None:
        return None

    async def health_check(self) -> None:
        return None

    def lines(self) -> list[bytes]:
        return self.sent


def doc(key: str) -> dict[str, Any]:
    return {"event": {"id": key}, "labels": {"mimecast_account": "acme"}, "mimecast": {"id": key, "text": "a\nb"}}


async def spool_pages(store: StateStore, pages: Sequence[Sequence[str]]) -> list[str]:
    """Commit each list of keys as one page; all keys in spool order."""
    state = await store.stream("acme", "ttp_url", start=1_000)
    for i, keys in enumerate(pages):
        events = [Event(k, 1_700_000_000 + n, doc(k)) for n, k in enumerate(keys)]
        state = state.window_done(2_000 + i)
        await store.commit_page(events, state, seen_until=2_000 + i, now=5.0)
    return [k for keys in pages for k in keys]


def drained() -> anyio.Event:
    event = anyio.Event()
    event.set()
    return event


async def deliver(
    store: StateStore,
    sink: Any,
    drain_through: int | None = None,
    name: str = "lines",
    all_sinks: Sequence[str] = (),
    **options: Any,
) -> Dispatcher:
    values: dict[str, Any] = {"batch_max_events": 4, "retry_max_secs": 0.01}
    values.update(options)
    settings = SinkSettings(name=name, type="memory", **values)

    async def no_sleep(_: float) -> None:
        return None

    worker = Dispatcher(
        settings, sink, store, Telemetry(), SpoolSignal(), all_sinks=all_sinks or [name], sleep=no_sleep
    )
    worker.drain_through = drain_through
    with anyio.fail_after(20):
        await worker.run(until_drained=drained())
    return worker


PAGES = [["a", "b", "c"], ["d", "e"], ["f", "g", "h", "i", "j", "k"], ["l"]]


async def test_json_pages_go_as_stored_in_batches_that_cut_across_pages(state_store: StateStore) -> None:
    """Pages of 3, 2, 6 and 1 events in batches of 4: payloads of 4, 4, 4 events, then 0 left, each the
    documents exactly as event-by-event delivery encodes them; the offset ends at the last event."""
    keys = await spool_pages(state_store, PAGES)
    sink = LinesSink()
    assert isinstance(sink, LineSink)

    worker = await deliver(state_store, sink)

    assert [count for _, count in sink.payloads] == [4, 4, 4]
    assert sink.batches == []  # never event by event
    assert sink.lines() == [orjson.dumps(doc(k)) for k in keys]
    assert all(payload.endswith(b"\n") and payload.count(b"\n") == n for payload, n in sink.payloads)
    assert await state_store.sink_offset("lines") == len(keys) == worker.delivered
    assert await state_store.backlog(len(keys)) == 0


async def test_another_format_is_still_encoded_event_by_event(state_store: StateStore) -> None:
    keys = await spool_pages(state_store, PAGES)
    sink = LinesSink()

    await deliver(state_store, sink, format="raw")

    assert sink.payloads == []
    assert [e.key for batch in sink.batches for e in batch] == keys
    assert orjson.loads(sink.batches[0][0].line) == {
        "mimecast_account": "acme",
        "mimecast_log_type": None,
        "id": "a",
        "text": "a\nb",
    }


async def test_a_batch_over_batch_max_bytes_is_cut_event_by_event(state_store: StateStore) -> None:
    """Four events' lines exceed batch_max_bytes: the batch goes event by event, cut before the limit,
    and the next read starts inside the page where that cut left it."""
    keys = await spool_pages(state_store, PAGES)
    line = len(orjson.dumps(doc("a"))) + 1
    sink = LinesSink()

    await deliver(state_store, sink, batch_max_bytes=3 * line)

    assert sink.lines() == [orjson.dumps(doc(k)) for k in keys]
    sent = [len(batch) for batch in sink.batches] + [count for _, count in sink.payloads]
    assert sum(sent) == len(keys)
    assert max(sent) == 3
    assert await state_store.sink_offset("lines") == len(keys)


async def test_draining_stops_inside_a_page_at_drain_through(state_store: StateStore) -> None:
    keys = await spool_pages(state_store, PAGES)
    sink = LinesSink()

    await deliver(state_store, sink, drain_through=7)

    assert sink.lines() == [orjson.dumps(doc(k)) for k in keys[:7]]
    assert [count for _, count in sink.payloads] == [4, 3]
    assert await state_store.sink_offset("lines") == 7


async def test_a_failed_payload_is_sent_again_and_nothing_is_lost_or_doubled(state_store: StateStore) -> None:
    keys = await spool_pages(state_store, PAGES)
    sink = LinesSink(fail_attempts=(2, 3))

    await deliver(state_store, sink)

    assert sink.lines() == [orjson.dumps(doc(k)) for k in keys]
    assert await state_store.sink_offset("lines") == len(keys)


async def test_a_restart_inside_a_page_resumes_at_the_saved_offset(state_store: StateStore) -> None:
    """An offset saved inside a page (a crash after an event-by-event batch) resumes at the next event."""
    keys = await spool_pages(state_store, PAGES)
    await state_store.sink_offset("lines")
    await state_store.ack("lines", 5, 5, now=1.0, sinks=["lines"])
    sink = LinesSink()

    await deliver(state_store, sink)

    assert sink.lines() == [orjson.dumps(doc(k)) for k in keys[5:]]


async def test_a_file_sink_gets_the_same_file_either_way(state_store: StateStore, tmp_path: Path) -> None:
    """The real file sink: whole pages with format json, event by event when it hides send_lines;
    both files are the same bytes, one spooled document per line."""
    keys = await spool_pages(state_store, PAGES)

    class EventByEvent:
        """The file sink without send_lines: delivery must go event by event."""

        def __init__(self, sink: FileSink) -> None:
            self.open, self.send_batch, self.close, self.health_check = (
                sink.open,
                sink.send_batch,
                sink.close,
                sink.health_check,
            )

    paths = {name: tmp_path / f"{name}.jsonl" for name in ("pages", "events")}
    sinks = {name: FileSink(FileSinkSettings(name=name, type="file", path=path)) for name, path in paths.items()}
    await deliver(state_store, sinks["pages"], name="pages", all_sinks=list(sinks))
    await deliver(state_store, EventByEvent(sinks["events"]), name="events", all_sinks=list(sinks))
    for sink in sinks.values():
        await sink.close()

    assert paths["pages"].read_bytes() == paths["events"].read_bytes()
    assert paths["pages"].read_bytes().splitlines() == [orjson.dumps(doc(k)) for k in keys]
