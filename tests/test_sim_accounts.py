"""The simulator serving several HMAC accounts (for the scale benchmark): each its own key and buckets."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from collector.simulator import FakeMimecast, SimSettings
from tests.helpers import account_options, delivered_ids, expected_ids, seed, table, write_config
from tests.test_end_to_end import run_once

STREAMS = ["ttp_url", "archive_search"]


async def test_each_account_has_buckets_of_its_own(make_sim: Callable[..., Any], tmp_path: Path) -> None:
    """Two accounts, 2 calls a minute per endpoint each, each needing 2: both drain with no 429, which a
    bucket shared by the two (4 calls a minute) could not."""
    sim: FakeMimecast = await make_sim(accounts=2, rate_limit=2, rate_window_ms=60_000)
    records = {name: recs for name, recs in seed(sim, 150).items() if name in STREAMS}
    second = account_options(
        sim.base_url, sim=SimSettings(access_key=sim.settings.account_key(1)), streams=STREAMS, page_size=100
    )
    config = write_config(
        tmp_path,
        sim.base_url,
        account={"streams": STREAMS, "page_size": 100},
        extra_tables=table("accounts.acme-1", second),
    )

    result = await run_once(config)

    assert result.exit_code == 0
    assert sorted(delivered_ids(tmp_path / "out")) == sorted(list(expected_ids(records)) * 2)
    assert sim.stats.throttled == 0
    assert sum(sim.stats.calls.values()) == 8  # 2 accounts x 2 streams x 2 pages


async def test_a_key_beyond_the_accounts_served_is_refused(make_sim: Callable[..., Any], tmp_path: Path) -> None:
    """With two accounts served, a third key is a signature mismatch: the stream fails, nothing is served."""
    sim: FakeMimecast = await make_sim(accounts=2)
    seed(sim, 10)
    third = SimSettings(access_key=sim.settings.account_key(2))
    config = write_config(tmp_path, sim.base_url, account={"streams": ["ttp_url"]}, sim=third)

    result = await run_once(config)

    assert result.exit_code != 0
    assert set(sim.stats.bad_auth) == {"signature mismatch"}
    assert sum(sim.stats.records_served.values()) == 0
