"""The alert rules in a real Prometheus (Debian's package) scraping the running services: the
consumer lag alert goes pending, then firing, while shipping's consumer is held up and orders
keep coming, the dashboard's "Alerts" panel query shows it, and it clears once shipping is let
go.

Prometheus runs the shipped rules with every duration divided by ``SPEEDUP`` (``for:`` and the
range windows alike), from a copy written next to its config: the expressions, bounds, labels
and annotations are the shipped ones, only time is compressed, so the ratio between a window
and a ``for:`` holds as shipped. Templating the file instead would leave alerts.yml less
readable than the rules Prometheus' documentation shows, for the sake of one test.

Shipping is held up with the ``delay`` fault rather than SIGSTOP: a frozen process answers no
scrape, so the lag it alone reports disappears (``SagakitInstanceDown`` fires, not the lag
alert); a delayed handler keeps the instance answering while its group falls behind, as a
handler hanging on a call does.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from subprocess import Popen
from typing import Any

import httpx
import pytest
import yaml  # type: ignore[import-untyped, unused-ignore]

from deploy.localstack.errors import StackError
from deploy.localstack.ports import free_ports
from deploy.localstack.prereqs import ensure_prometheus
from tests.e2e.conftest import RunningSystem
from tests.e2e.invariants import Ledger, eventually, instances

RULES = Path(__file__).parents[2] / "deploy" / "prometheus" / "alerts.yml"
DASHBOARD = Path(__file__).parents[2] / "deploy" / "grafana" / "dashboards" / "sagakit.json"
SPEEDUP = 20
"""The lag alert's 10-minute window becomes 30 s and its 5-minute ``for:`` 15 s."""
INTERVAL = "1s"
"""Scrape and evaluation interval: many samples in each shortened window."""
WAIT_S = 120.0
"""For what Prometheus must see: a lag past 100 records at a few orders a second, then the
shortened ``for:``, on a loaded machine."""
ORDER_EVERY_S = 0.2
"""The pace of the orders while shipping is held up (paced, so the load stays modest)."""
SHIPPING_DELAY_MS = 20_000
"""Before each of shipping's handler attempts while held up: a few records a minute get
through, far fewer than arrive; once the fault is cleared the attempts in hand end within it."""
LAG_ALERT = "SagakitConsumerLagGrowing"
SECONDS = {"s": 1, "m": 60, "h": 3600}
DURATION = re.compile(r"(\d+)([smh])")


def shortened(duration: str) -> str:
    """``duration`` (one number and unit, as alerts.yml writes them) divided by SPEEDUP."""
    match = DURATION.fullmatch(duration)
    assert match, f"{duration}: not a duration this test knows how to shorten"
    seconds = int(match[1]) * SECONDS[match[2]]
    assert seconds % SPEEDUP == 0, f"{duration} is not a multiple of {SPEEDUP} s"
    return f"{seconds // SPEEDUP}s"


def fast_rules(shipped: dict[str, Any]) -> dict[str, Any]:
    """The shipped rule file with every ``for:`` and range window shortened."""
    for group in shipped["groups"]:
        for rule in group["rules"]:
            if "for" in rule:
                rule["for"] = shortened(rule["for"])
            rule["expr"] = re.sub(
                r"\[(\w+)\]", lambda window: f"[{shortened(window[1])}]", rule["expr"]
            )
    return shipped


@dataclass(frozen=True)
class Prometheus:
    url: str
    http: httpx.AsyncClient

    async def alerts(self, name: str) -> list[dict[str, Any]]:
        """The alerts named ``name``, pending or firing, as /api/v1/alerts lists them."""
        answer = (await self.http.get(f"{self.url}/api/v1/alerts")).json()
        return [a for a in answer["data"]["alerts"] if a["labels"]["alertname"] == name]

    async def targets_up(self) -> list[str]:
        response = await self.http.get(f"{self.url}/api/v1/targets")
        if response.status_code != 200:
            return []  # still starting
        answer = response.json()
        return [t["health"] for t in answer["data"]["activeTargets"]]

    async def query(self, expr: str) -> list[dict[str, Any]]:
        """The instant vector ``expr`` gives now."""
        answer = (await self.http.get(f"{self.url}/api/v1/query", params={"query": expr})).json()
        result: list[dict[str, Any]] = answer["data"]["result"]
        return result

    async def metric_names(self) -> set[str]:
        answer = (await self.http.get(f"{self.url}/api/v1/label/__name__/values")).json()
        return set(answer["data"])


def start_prometheus(binary: Path, workdir: Path, targets: list[str]) -> tuple[Popen[bytes], int]:
    """Prometheus on a free port with the fast rules and a config scraping ``targets``."""
    rules = fast_rules(yaml.safe_load(RULES.read_text()))
    (workdir / "alerts.yml").write_text(yaml.safe_dump(rules))
    config = {
        "global": {"scrape_interval": INTERVAL, "evaluation_interval": INTERVAL},
        "rule_files": ["alerts.yml"],
        # As deploy/prometheus/prometheus.yml: the services' own service= and instance= stay.
        "scrape_configs": [
            {"job_name": "sagakit", "honor_labels": True, "static_configs": [{"targets": targets}]}
        ],
    }
    (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
    (port,) = free_ports(1)
    with open(workdir / "prometheus.log", "wb") as log:
        process = Popen(
            [
                str(binary),
                f"--config.file={workdir / 'prometheus.yml'}",
                f"--storage.tsdb.path={workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    return process, port


@contextlib.asynccontextmanager
async def prometheus_scraping(system: RunningSystem, workdir: Path) -> AsyncIterator[Prometheus]:
    """Debian's Prometheus scraping every instance of ``system`` with the fast rules, until the
    block ends (stopped whatever happens in it)."""
    try:
        binary = ensure_prometheus()[0]
    except StackError as error:
        pytest.skip(f"a real Prometheus is needed: {error}")
    targets = [i.url.removeprefix("http://") for i in instances(system.state_dir)]
    process, port = start_prometheus(binary, workdir, targets)
    try:
        async with httpx.AsyncClient(timeout=5) as http:
            prometheus = Prometheus(f"http://127.0.0.1:{port}", http)
            await eventually(
                prometheus.targets_up,
                lambda health: len(health) == len(targets) and set(health) == {"up"},
                timeout=WAIT_S,
                what=f"Prometheus scraping every instance (its log: {workdir / 'prometheus.log'})",
            )
            yield prometheus
    finally:
        process.terminate()
        try:
            await asyncio.to_thread(process.wait, 30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


async def keep_ordering(ledger: Ledger, customer: str, sku: str, stop: asyncio.Event) -> None:
    """An order every ORDER_EVERY_S until ``stop`` is set."""
    while not stop.is_set():
        await ledger.place(customer, [(sku, 1, "1.00")])
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), ORDER_EVERY_S)


async def test_the_lag_alert_goes_pending_then_firing_while_shipping_falls_behind(
    system: RunningSystem, tmp_path: Path
) -> None:
    ledger = Ledger(system.client)
    customer = await ledger.customer("alerts", "100000.00")
    sku = await ledger.sku("alerts", 100_000)
    (shipping,) = instances(system.state_dir, "shipping")
    topic = system.topic("inventory-reserved")

    def states(alerts: list[dict[str, Any]]) -> set[str]:
        return {a["state"] for a in alerts if a["labels"]["topic"] == topic}

    async def lag_alert() -> list[dict[str, Any]]:
        return await prometheus.alerts(LAG_ALERT)

    async with prometheus_scraping(system, tmp_path) as prometheus:
        assert states(await lag_alert()) == set()
        await system.client.add_fault(shipping.url, "delay", delay_ms=SHIPPING_DELAY_MS)
        stop = asyncio.Event()
        ordering = asyncio.create_task(keep_ordering(ledger, customer, sku, stop))
        try:
            await eventually(
                lag_alert, lambda a: states(a) == {"pending"}, timeout=WAIT_S, what="pending"
            )
            firing = await eventually(
                lag_alert, lambda a: states(a) == {"firing"}, timeout=WAIT_S, what="firing"
            )
            (alert,) = [a for a in firing if a["labels"]["topic"] == topic]
            assert alert["labels"]["service"] == "shipping"
            assert alert["annotations"]["runbook"].startswith("docs/operations.md#")
            assert float(alert["value"]) > 100

            # The dashboard's "Alerts" panel shows it.
            (panel,) = [
                p for p in json.loads(DASHBOARD.read_text())["panels"] if p["title"] == "Alerts"
            ]
            shown = [
                series["metric"] for series in await prometheus.query(panel["targets"][0]["expr"])
            ]
            wanted = {"alertname": LAG_ALERT, "alertstate": "firing", "topic": topic}
            assert any(wanted.items() <= labels.items() for labels in shown), shown

            # Every metric the rules ask for is one the services export (and Prometheus has).
            rules = yaml.safe_load(RULES.read_text())["groups"][0]["rules"]
            asked = {name for rule in rules for name in re.findall(r"\bsagakit_\w+", rule["expr"])}
            assert asked - await prometheus.metric_names() == set()
        finally:
            stop.set()
            await ordering
            await system.client.clear_faults()
        await eventually(
            lag_alert, lambda a: states(a) == set(), timeout=WAIT_S, what="the alert cleared"
        )
    await ledger.settle(timeout=WAIT_S)
