"""Command line: run, validate, status, reset, migrate. Config mistakes exit 78 with one line, never a traceback."""

from __future__ import annotations

import argparse
import functools
import signal
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import anyio

from collector import __version__
from collector.collect import stream_labels
from collector.config import Config, load_config
from collector.config.errors import ConfigError
from collector.config.loader import config_time
from collector.config.model import AccountConfig
from collector.logs import LEVELS, configure_logging, get_logger
from collector.logtypes import LOG_TYPES
from collector.service.app import (
    EXIT_CANTCREAT,
    EXIT_IOERR,
    EXIT_SOFTWARE,
    EXIT_STREAM_FAILED,
    Collector,
    StartupError,
    check_sinks,
    register_config_secrets,
)
from collector.service.status import render_status, status_report
from collector.state.db import StoreError
from collector.state.lock import StateLock
from collector.state.migrate import migrate
from collector.state.open import open_store
from collector.state.pg_store import PostgresStore
from collector.state.store import Store
from collector.timeutil import iso
from collector.workers import tune_gc

EX_USAGE = 64
EX_UNAVAILABLE = 69
EX_CONFIG = 78


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--log-level", choices=LEVELS, default=argparse.SUPPRESS, help="default: info")
    common.add_argument(
        "--log-format",
        choices=("auto", "json", "console"),
        default=argparse.SUPPRESS,
        help="auto: console on a terminal, JSON lines otherwise",
    )
    with_config = argparse.ArgumentParser(add_help=False, parents=[common])
    with_config.add_argument("--config", "-c", type=Path, required=True, help="TOML config file")

    parser = argparse.ArgumentParser(
        prog="mimecast-collector",
        parents=[common],
        description="Collect Mimecast security logs and deliver them to a SIEM.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser("run", parents=[with_config], help="collect and deliver (daemon)")
    run.add_argument("--once", action="store_true", help="collect up to now - lag, deliver everything, exit")
    validate = commands.add_parser(
        "validate", parents=[with_config], help="check the config (exit 78) and that every sink is reachable (exit 69)"
    )
    validate.add_argument("--offline", action="store_true", help="check the config only, contact nothing")
    status = commands.add_parser("status", parents=[with_config], help="stream positions and sink backlogs")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    reset = commands.add_parser("reset", parents=[with_config], help="rewind a stream (collector stopped)")
    reset.add_argument(
        "--stream",
        required=True,
        choices=_stream_names(),
        metavar="STREAM",
        help="log type to rewind (a SIEM batch log type: all its types), or one batch type's stream "
        "such as siem_cg.receipt",
    )
    reset.add_argument("--account", help="account name (default: every account that has the stream)")
    reset.add_argument("--start", help="ISO 8601 time to restart from (default: the account's start or 24 h ago)")
    reset.add_argument(
        "--force", action="store_true", help="PostgreSQL: reset even while a replica runs the stream (it is fenced)"
    )
    migrate_ = commands.add_parser(
        "migrate", parents=[with_config], help="copy a SQLite state file into the configured PostgreSQL state"
    )
    migrate_.add_argument("--from", dest="source", type=Path, required=True, help="the SQLite state file")
    demo = commands.add_parser("demo", parents=[common], help="run against the built-in API simulator")
    demo.add_argument("--out", type=Path, default=Path("demo-out"), help="where events go (default: ./demo-out)")
    demo.add_argument("--events", type=int, default=5000, help="events per log type (default: 5000)")
    return parser


def _stream_names() -> tuple[str, ...]:
    """Every name ``reset --stream`` takes: each log type, and each batch type's own stream."""
    names: list[str] = []
    for log_type in LOG_TYPES.values():
        names.append(log_type.name)
        names.extend(log_type.for_batch_type(batch_type).name for batch_type in log_type.batch_types)
    return tuple(names)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    quiet = "error" if args.command == "demo" else "info"  # the demo prints its own progress
    configure_logging(getattr(args, "log_level", quiet), getattr(args, "log_format", "auto"))
    handlers = {
        "run": _run,
        "validate": _validate,
        "status": _status,
        "reset": _reset,
        "demo": _demo,
        "migrate": _migrate,
    }
    handler = handlers[args.command]
    try:
        return handler(args)
    except ConfigError as error:
        print(f"mimecast-collector: config error: {error}", file=sys.stderr)
        return EX_CONFIG
    except StoreError as error:
        print(f"mimecast-collector: state error: {error}", file=sys.stderr)
        return EXIT_IOERR
    except StartupError as error:
        print(f"mimecast-collector: cannot start: {error}", file=sys.stderr)
        return EXIT_CANTCREAT
    except KeyboardInterrupt:
        return 130


def _load(args: argparse.Namespace, *, resolve_secrets: bool = True) -> Config:
    # The state password even when no other secret is read: status and reset on PostgreSQL need it.
    return load_config(args.config, resolve_secrets=resolve_secrets, state_secrets=True)


def _validate(args: argparse.Namespace) -> int:
    config = _load(args)
    streams = sum(len(a.streams) for a in config.accounts)
    print(f"config OK: {len(config.accounts)} account(s), {streams} stream(s), {len(config.sinks)} sink(s)")
    if args.offline:
        return 0
    register_config_secrets(config)
    if config.state.backend == "postgresql":  # wrong password, no database, no rights: now, not at `run`
        anyio.run(_check_state, config)
        print("state database: reachable")
    results = anyio.run(check_sinks, config)
    for name, problem in results.items():
        if problem is None:
            print(f"sink {name!r}: reachable")
        else:
            print(f"mimecast-collector: sink {name!r} is not reachable: {problem}", file=sys.stderr)
    return EX_UNAVAILABLE if any(results.values()) else 0


def _run(args: argparse.Namespace) -> int:
    _ignore_hangups()  # until Collector.run catches it: a SIGHUP's default action is to kill
    config = _load(args)
    tune_gc()
    collector = Collector(config, once=args.once)
    try:
        result = anyio.run(collector.run)
    except BaseExceptionGroup as group:
        known = group.subgroup((StoreError, StartupError))
        if known is not None:
            raise _first(known) from None
        get_logger().error("collector_crashed", exc_info=group)
        return EXIT_SOFTWARE
    finally:
        _ignore_hangups()
    return result.exit_code


def _ignore_hangups() -> None:
    """SIGHUP (logrotate) while the config loads or the loop winds down must not kill the collector.

    The event loop's own handler replaces this while the collector runs and resets SIGHUP to its
    default when it is removed, hence a second call once the loop is gone.
    """
    if threading.current_thread() is threading.main_thread():  # tests call main() from worker threads
        signal.signal(signal.SIGHUP, signal.SIG_IGN)


def _first(group: BaseExceptionGroup[BaseException]) -> BaseException:
    for exc in group.exceptions:
        return _first(exc) if isinstance(exc, BaseExceptionGroup) else exc
    raise AssertionError("empty exception group")


def _demo(args: argparse.Namespace) -> int:
    # Imported here: the demo brings the API simulator, which `run` should not pay for at start-up.
    from collector.demo import prepare, run_demo  # noqa: PLC0415

    if not 1 <= args.events <= 1_000_000:
        raise ConfigError("--events", f"{args.events} is out of range", "use a number between 1 and 1000000")
    return anyio.run(functools.partial(run_demo, prepare(args.out), events_per_type=args.events))


def _status(args: argparse.Namespace) -> int:
    config = _load(args, resolve_secrets=False)

    async def collect() -> str:
        store = await open_store(config.state, read_only=True)
        try:
            report = await status_report(config, store, now=time.time())
        finally:
            await store.close()
        return render_status(report, as_json=args.json)

    print(anyio.run(collect))
    return 0


def _reset(args: argparse.Namespace) -> int:
    config = _load(args, resolve_secrets=False)
    targets = [
        (account, label)
        for account in config.accounts
        if args.account in (None, account.name)
        for label in stream_labels(account)
        if label == args.stream or label.startswith(f"{args.stream}.")  # a batch log type: each of its types
    ]
    if not targets:
        raise ConfigError(
            "--account" if args.account else "--stream",
            f"no account {args.account or ''} collects {args.stream}".replace("  ", " "),
            "name an account from the config whose streams include it",
        )
    start = None if args.start is None else config_time(args.start, "--start")
    if config.state.backend == "postgresql":
        return anyio.run(functools.partial(_reset_shared, config, targets, start, force=args.force))
    lock = StateLock(config.state.path)
    lock.acquire()

    async def rewind() -> None:
        store = await Store.open(lock.state_path, synchronous=config.state.synchronous)
        try:
            for account, label in targets:
                position = start if start is not None else account.default_start(now=time.time())
                await store.reset_stream(account.name, label, position)
                print(f"{account.name}/{label}: next run starts at {iso(position)}")
        finally:
            await store.close()

    try:
        anyio.run(rewind)
    finally:
        lock.release()
    return 0


async def _reset_shared(
    config: Config, targets: list[tuple[AccountConfig, str]], start: int | None, *, force: bool
) -> int:
    """Reset on PostgreSQL: each stream in one transaction with its lease (see PostgresStore.reset_owned)."""
    store = await PostgresStore.connect(config.state, wait=False)
    refused = 0
    try:
        for account, label in targets:
            position = start if start is not None else account.default_start(now=time.time())
            blocker = await store.reset_owned(account.name, label, position, force=force)
            if blocker is None:
                print(f"{account.name}/{label}: next run starts at {iso(position)}")
                continue
            refused += 1
            age = "never" if blocker.age_secs is None else f"{blocker.age_secs:.0f} s ago"
            print(
                f"mimecast-collector: {account.name}/{label} is owned by node {blocker.node} (lease renewed {age}); "
                "stop that replica first, or pass --force (it is fenced and drops the stream)",
                file=sys.stderr,
            )
    finally:
        await store.close()
    return EXIT_STREAM_FAILED if refused else 0


async def _check_state(config: Config) -> None:
    store = await PostgresStore.connect(config.state, create=False, wait=False, must_exist=False)
    await store.close()


def _migrate(args: argparse.Namespace) -> int:
    config = _load(args, resolve_secrets=False)
    if config.state.backend != "postgresql":
        raise ConfigError(
            "state.backend", "migrate copies into PostgreSQL state", 'set backend = "postgresql" and its url first'
        )
    lock = StateLock(args.source)  # the collector on that file must be stopped
    lock.acquire()
    try:
        counts = anyio.run(migrate, config.state, args.source)
    finally:
        lock.release()
    print(
        f"migrated {args.source} into {config.state.schema}: {counts['streams']} streams, "
        f"{counts['dedup_keys']} dedup keys, {counts['spooled_events']} spooled events, {counts['sinks']} sink offsets"
    )
    return 0
