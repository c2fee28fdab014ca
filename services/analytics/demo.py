"""``make demo``'s analytics scenario: the summary after a few orders, and the same summary
once the read model is thrown away and rebuilt from Kafka (``sagakit analytics rebuild``).

The rebuild wants the analytics consumer group empty: on a local stack the scenario has the
supervisor hold the analytics instance (``deploy.localstack.supervisor.hold``), rebuilds,
lets it go, and waits (polling, with a cap) until the restarted service has read the topics
again and its summary is the one it showed before.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from deploy.demo.client import SagaClient, SystemUrls
from deploy.demo.show import say, short, table, wait_for
from deploy.localstack.supervisor import STATE_DIR_VAR, hold, read_status, release
from shared.envfile import write_env_file

__all__ = ["SCENARIOS", "compared"]

RUN = uuid.uuid4().hex[:6]
NAME = "analytics"
WAIT_S = 60.0
REBUILD_WAIT_S = 120.0
"""The rebuilt model reads every event the topics keep: longer on a stack used for days."""
COMPARED = (
    "orders_created",
    "orders_per_minute",
    "completed",
    "revenue",
    "cancelled",
    "cancelled_by_reason",
    "saga_duration_per_hour",
    "events_by_type",
)
"""The summary's numbers (all but ``since``, the window's start)."""


def compared(summary: Mapping[str, Any]) -> dict[str, Any]:
    """What two summaries of one window must agree on."""
    return {key: summary[key] for key in COMPARED}


async def summary_then_rebuild(env: Mapping[str, str]) -> None:
    since = datetime.now(UTC).isoformat()
    async with SagaClient(SystemUrls.from_env(env)) as client:
        url = client.urls.service(NAME)

        async def summary() -> dict[str, Any]:
            answer = await client.http.get(f"{url}/analytics/summary", params={"since": since})
            answer.raise_for_status()
            found: dict[str, Any] = answer.json()
            return found

        before = await summary()
        placed = await _place_orders(client)
        say(f"  placed {len(placed)} orders: {', '.join(placed)}")

        async def counted() -> dict[str, Any] | None:
            now = await summary()
            grew = now["orders_created"] - before["orders_created"] >= 3
            ended = now["completed"] + now["cancelled"] - before["completed"] - before["cancelled"]
            return now if grew and ended >= 3 else None

        live = await wait_for("the three orders in the summary", counted, WAIT_S)
        say(f"  GET /analytics/summary?since={since[:19]} (the live read model):")
        show(live)

        supervisor = env.get(STATE_DIR_VAR)
        if supervisor is None:
            say(
                "  to rebuild it from Kafka: stop the analytics service, run "
                "`sagakit analytics rebuild --yes`, start it again"
            )
            return
        await _rebuild(Path(supervisor), env, url)

        async def same() -> dict[str, Any] | None:
            try:
                now = await summary()
            except httpx.HTTPError:  # still starting
                return None
            return now if compared(now) == compared(live) else None

        try:
            rebuilt = await wait_for("the rebuilt summary equal", same, REBUILD_WAIT_S)
        except TimeoutError:
            now = await summary()
            differ = [key for key in COMPARED if now[key] != live[key]]
            say(
                f"  not the same within {REBUILD_WAIT_S:.0f} s ({', '.join(differ)} differ): "
                "still reading (`sagakit groups describe analytics` shows its lag), or events "
                "came meanwhile (the stuck saga cancelled by its deadline, say)"
            )
            show(now)
            return
        say("  the rebuilt summary, read again from every event the topics keep:")
        show(rebuilt)
        say("  the same numbers: the read model is a function of the events (event sourcing)")


async def _place_orders(client: SagaClient) -> list[str]:
    """Two orders completed and one declined, of fresh customers; their short ids."""
    lee, mia, sku = f"lee-{RUN}", f"mia-{RUN}", f"kettle-{RUN}"
    await client.set_balance(lee, "100.00")
    await client.set_balance(mia, "1.00")
    await client.set_stock(sku, 10)
    ids = []
    for customer, quantity in ((lee, 1), (lee, 2), (mia, 1)):
        placed = await client.place_order(customer, [(sku, quantity, "12.00")])
        order = await client.wait_terminal(placed["order_id"])
        ids.append(f"{short(order['order_id'])} {order['status']}")
    return ids


def show(summary: Mapping[str, Any]) -> None:
    hours = summary["saga_duration_per_hour"]
    durations = ", ".join(
        f"hour {h['hour'][11:16]}: {h['sagas']}, p50 {h['p50_ms']:.0f} ms, p95 {h['p95_ms']:.0f} ms"
        for h in hours
    )
    reasons = ", ".join(f"{r} {n}" for r, n in summary["cancelled_by_reason"].items()) or "-"
    table(
        [
            ["orders created", str(summary["orders_created"])],
            ["completed", f"{summary['completed']} (revenue {summary['revenue']})"],
            ["cancelled", f"{summary['cancelled']} ({reasons})"],
            ["saga durations", durations or "-"],
            ["events", str(sum(summary["events_by_type"].values()))],
        ],
        ["since " + summary["since"][11:16], ""],
    )


async def _rebuild(supervisor: Path, env: Mapping[str, str], url: str) -> None:
    """Hold the analytics instance, rebuild, let it go again."""
    hold(supervisor, NAME)
    try:

        async def stopped() -> bool | None:
            entry = next((e for e in read_status(supervisor) if e["name"] == NAME), {})
            return True if entry.get("held") and entry.get("pid") is None else None

        await wait_for("the analytics instance stopped", stopped, WAIT_S)
        say("  analytics stopped (held by the supervisor); its consumer group is empty")
        say("  $ sagakit analytics rebuild --yes")

        refusals: list[str] = []

        async def rebuilt() -> str | None:
            done = await asyncio.to_thread(_run_rebuild, env)
            if done.returncode == 0:
                return done.stdout.strip()
            # Refused while Kafka still lists the stopped member: asked again.
            refusals.append(done.stderr.strip() or done.stdout.strip())
            return None

        try:
            say("  " + await wait_for("sagakit analytics rebuild", rebuilt, WAIT_S))
        except TimeoutError:
            raise RuntimeError(f"sagakit analytics rebuild: {refusals[-1:]}") from None
    finally:
        release(supervisor, NAME)
    say("  analytics started again: it reads every topic from its first record")


def _run_rebuild(env: Mapping[str, str]) -> subprocess.CompletedProcess[str]:
    with tempfile.TemporaryDirectory() as folder:
        env_file = Path(folder) / "stack.env"
        write_env_file(env_file, {k: v for k, v in env.items() if k.startswith("SAGAKIT_")})
        argv = [sys.executable, "-m", "shared.ops.cli.app", "--env-file", str(env_file)]
        return subprocess.run(
            [*argv, "analytics", "rebuild", "--yes"],
            env={k: v for k, v in os.environ.items() if not k.startswith("SAGAKIT_")},
            capture_output=True,
            text=True,
            timeout=WAIT_S,
            check=False,
        )


SCENARIOS = [
    (
        "Analytics: the summary after a few orders, rebuilt from Kafka the same",
        summary_then_rebuild,
    ),
]
