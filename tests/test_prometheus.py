"""The dashboard and the alert rules against the real thing: the distribution's Prometheus server
scraping a running collector fed by the loopback API, every query evaluated over its HTTP API.

Every dashboard query (variables set to ``.*``, ``$__rate_interval`` to ``1m``) must return series.
An alert expression compares against a threshold a healthy collector stays under, so it returns
nothing by design; what must hold instead: Prometheus loaded the rule and evaluates it without
error (rule health "ok"), every metric selector in it returns series, and every label it groups or
matches on is on those series. The collector is run so that each panel has something to show:
a 429 storm and 5xx faults at the API, an HEC sink with acks (some lost) that fails twice.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import orjson
import pytest

from collector.config import load_config
from collector.service.app import Collector
from collector.simulator import FakeMimecast
from tests.helpers import seed, table, write_config
from tests.promql import grouping_labels, label_values, selectors, substitute
from tests.receivers import FakeHec, Misbehave, free_port
from tests.test_dashboard import dashboard, targets

ROOT = Path(__file__).parent.parent
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
VARIABLES = {"account": ".*", "log_type": ".*", "sink": ".*", "__rate_interval": "1m", "datasource": "prometheus"}


def prometheus_binary() -> str:
    found = shutil.which("prometheus")
    if found is None:  # CI installs it (.ci/run); a missing server must not look like a pass
        pytest.fail("the prometheus server is not installed: apt-get install --no-install-recommends prometheus")
    return found


class Prometheus:
    """Its own process, port and storage: never the packaged service."""

    def __init__(self, directory: Path, target: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.directory = directory
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(ALERTS)],
            "scrape_configs": [{"job_name": "mimecast-collector", "static_configs": [{"targets": [target]}]}],
        }
        (directory / "prometheus.yml").write_bytes(orjson.dumps(config))  # JSON is YAML
        self.log = (directory / "prometheus.log").open("wb")
        self.process = subprocess.Popen(
            [
                prometheus_binary(),
                f"--config.file={directory / 'prometheus.yml'}",
                f"--storage.tsdb.path={directory / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
            ],
            stdout=self.log,
            stderr=self.log,
        )

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()

    def output(self) -> str:
        return (self.directory / "prometheus.log").read_text(errors="replace")[-3000:]


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def api(http: aiohttp.ClientSession, prometheus: Prometheus, path: str, **params: str) -> Any:
    async with http.get(f"{prometheus.url}/api/v1/{path}", params=params) as response:
        body = await response.json()
    assert body["status"] == "success", (path, params, body)
    return body["data"]


async def query(http: aiohttp.ClientSession, prometheus: Prometheus, expr: str) -> list[dict[str, Any]]:
    data = await api(http, prometheus, "query", query=expr)
    assert data["resultType"] == "vector", (expr, data["resultType"])
    result: list[dict[str, Any]] = data["result"]
    return result


async def empty_queries(http: aiohttp.ClientSession, prometheus: Prometheus) -> list[str]:
    """The dashboard queries (and variable selectors) that return no series yet."""
    exprs = [substitute(expr, VARIABLES) for _, expr in targets()]
    for variable in dashboard()["templating"]["list"][1:]:
        exprs.append(substitute(label_values(variable["query"]["query"])[0], VARIABLES))
    return [expr for expr in exprs if not await query(http, prometheus, expr)]


async def test_every_panel_and_alert_expression_returns_series_from_a_live_collector(
    make_sim: Callable[..., Any], tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    sim: FakeMimecast = await make_sim(fault_rate=0.05, faults=("500",))
    seed(sim, 1500, days=1)
    sim.throttle_everything(2.0)  # the first calls meet 429s: throttled and retried series
    hec = FakeHec(ack_enabled=True)
    hec.acks.lost_rate = 0.3  # some acks never come: resent events
    hec.misbehave = Misbehave(status=503, times=2)  # two failed batches
    await hec.start()
    listen = f"127.0.0.1:{free_port()}"
    splunk = {
        "type": "splunk_hec",
        "url": hec.url,
        "token": hec.token,
        "use_ack": True,
        "ack_timeout_secs": 1,
        "ack_poll_interval_secs": 0.2,
        "batch_max_events": 100,
        "retry_max_secs": 0.5,
    }
    path = write_config(
        tmp_path,
        sim.base_url,
        account={"page_size": 100, "poll_interval_secs": 1, "retry_max_secs": 1},
        extra_tables=table("sinks.splunk", splunk),
    )
    text = path.read_text().replace("[service]", f'[service]\nlisten = "{listen}"')
    path.write_text(text.replace("[state]", "[state]\nmax_spool_events = 1000000"))
    collector = Collector(load_config(path), handle_signals=False)
    prometheus = Prometheus(tmp_path, listen)
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(collector.run)
            with anyio.move_on_after(90):  # then the assertion below names what stayed empty
                while True:
                    try:
                        missing = await empty_queries(http, prometheus)
                    except (aiohttp.ClientError, AssertionError):  # still starting
                        missing = ["(prometheus not answering yet)"]
                    samples = await _scrapes(http, prometheus)
                    if not missing and samples >= 5:
                        break
                    await anyio.sleep(1)
            assert await empty_queries(http, prometheus) == []
            await _check_alert_rules(http, prometheus)
            collector.request_stop()
    except BaseException:
        print(prometheus.output())
        raise
    finally:
        prometheus.stop()
        await hec.stop()


async def _scrapes(http: aiohttp.ClientSession, prometheus: Prometheus) -> int:
    try:
        result = await query(http, prometheus, 'count_over_time(up{job="mimecast-collector"}[1m])')
    except (aiohttp.ClientError, AssertionError):
        return 0
    return int(float(result[0]["value"][1])) if result else 0


async def _check_alert_rules(http: aiohttp.ClientSession, prometheus: Prometheus) -> None:
    with anyio.fail_after(20):  # every rule evaluated at least once
        while True:
            groups = (await api(http, prometheus, "rules"))["groups"]
            rules = [rule for group in groups for rule in group["rules"]]
            if rules and all(rule.get("lastEvaluation", "").startswith("2") for rule in rules):
                break
            await anyio.sleep(0.5)
    assert {rule["name"] for rule in rules} == {
        "MimecastCollectorDown",
        "MimecastStreamFatal",
        "MimecastWindowLagHigh",
        "MimecastSinkNotDelivering",
        "MimecastSpoolNearlyFull",
        "MimecastApiThrottled",
        "MimecastStateUnavailable",
    }
    for rule in rules:
        expr = rule["query"]
        assert rule["health"] == "ok", (rule["name"], rule.get("lastError"))
        assert rule["annotations"]["runbook"], rule["name"]
        await query(http, prometheus, expr)  # the whole expression evaluates
        labels: set[str] = set()
        for selector in selectors(expr):
            series = await query(http, prometheus, selector.text)
            assert series, (rule["name"], selector.text)
            labels |= {name for s in series for name in s["metric"]}
        assert grouping_labels(expr) <= labels, (rule["name"], grouping_labels(expr) - labels)


def test_promtool_checks_and_unit_tests_the_rules() -> None:
    """What CI runs: the rules file is valid and each alert fires and stays quiet as its tests say."""
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool is not installed: apt-get install --no-install-recommends prometheus")
    checked = subprocess.run([promtool, "check", "rules", str(ALERTS)], capture_output=True, text=True, check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 7 rules found" in checked.stdout
    tests = ALERTS.with_name("alerts.test.yml")
    tested = subprocess.run([promtool, "test", "rules", str(tests)], capture_output=True, text=True, check=False)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout
