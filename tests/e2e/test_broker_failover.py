"""The four services on a three-broker cluster, and the broker that leads the most partitions
killed (SIGKILL) while sagas run: every saga still ends, the books still balance, no
acknowledged event is lost, and the broker comes back into every partition's ISR.

The cluster is the tests' own (tests/kafka_cluster.py); the services run as the ``system``
fixture's do (tests/e2e/conftest.py), on the session's PostgreSQL and Redis, with the
stack.env lines ``make up KAFKA_BROKERS=3`` writes: all three bootstrap addresses,
replication factor 3 and ``min.insync.replicas`` 2.
"""

from __future__ import annotations

import asyncio
import json
import random
import signal
import subprocess
import time
from collections import Counter
from collections.abc import AsyncIterator

import asyncpg
import pytest

from deploy.demo.client import SagaClient, SystemUrls
from deploy.localstack.cluster import KafkaCluster
from services.events import CATALOGUE
from shared.contracts.topics import Topics
from shared.storage.db import asyncpg_dsn, decode_headers, outbox_table
from tests.e2e.conftest import (
    SERVICES,
    RunningSystem,
    _instances,
    _start_supervisor,
    _system_env,
    _wait_ready,
)
from tests.e2e.invariants import Items, Ledger, bounded_gather
from tests.infra import Infrastructure
from tests.kafka_cluster import event_ids_in

SEED = 20261201
ORDERS = 100
BEFORE_THE_KILL = 40
CONCURRENCY = 10
SETTLE_TIMEOUT_S = 180.0
PRICES = ("1.00", "2.50", "9.99", "12.00", "40.00")


@pytest.fixture(scope="module")
async def system_on_cluster(
    kafka_cluster: KafkaCluster, infra: Infrastructure, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[RunningSystem]:
    """The services under their supervisor, with the cluster's stack.env lines."""
    state_dir = tmp_path_factory.mktemp("failover-services")
    instances = _instances()
    env = await _system_env(infra, instances) | kafka_cluster.env()
    env_file = state_dir / "stack.env"
    env_file.write_text("".join(f"{key}={value}\n" for key, value in env.items()))
    supervisor = _start_supervisor(state_dir, env_file, instances)
    try:
        await _wait_ready(state_dir, instances)
        async with SagaClient(SystemUrls.from_env(env)) as client:
            yield RunningSystem(env, state_dir, client)
    finally:
        supervisor.send_signal(signal.SIGTERM)
        try:
            await asyncio.to_thread(supervisor.wait, 60)
        except subprocess.TimeoutExpired:
            supervisor.kill()
            supervisor.wait()


async def sent_event_ids(system: RunningSystem) -> list[str]:
    """The event id of every outbox row of the four services that the relay marked sent."""
    ids = []
    for service in SERVICES:
        url = system.env[f"SAGAKIT_{service.upper()}_DATABASE_URL"]
        connection = await asyncpg.connect(asyncpg_dsn(url))
        try:
            rows = await connection.fetch(
                f"SELECT headers FROM {outbox_table.name} WHERE sent_at IS NOT NULL"
            )
        finally:
            await connection.close()
        for row in rows:
            headers = dict(decode_headers(json.loads(row["headers"])))
            ids.append(headers["event_id"].decode())
    return ids


async def test_sagas_survive_the_kill_of_the_broker_leading_most_partitions(
    cluster: KafkaCluster, system_on_cluster: RunningSystem
) -> None:
    system = system_on_cluster
    client, ledger = system.client, Ledger(system.client)
    topics = Topics(CATALOGUE, system.env["SAGAKIT_TOPIC_PREFIX"]).all()
    rng = random.Random(SEED)
    balances = ["2000.00"] * 14 + ["30.00"] * 3 + ["0.00"] * 2
    customers = [await ledger.customer("failover", balance) for balance in balances]
    skus = [await ledger.sku("failover", units) for units in [300] * 6 + [5] * 3]
    await client.add_fault(client.urls.shipping, "fail", rate=0.15)

    def an_order() -> tuple[str, Items]:
        lines = rng.sample(skus, k=rng.choice((1, 1, 2)))
        return rng.choice(customers), [(s, rng.randint(1, 3), rng.choice(PRICES)) for s in lines]

    orders = [an_order() for _ in range(ORDERS)]
    started = time.monotonic()
    await bounded_gather(
        (ledger.place(c, items) for c, items in orders[:BEFORE_THE_KILL]), CONCURRENCY
    )

    # Sagas are in flight: kill the broker that leads the most of the system's partitions.
    victim = await cluster.leader_of_most_partitions(topics)
    cluster.kill(victim)
    await bounded_gather(
        (ledger.place(c, items) for c, items in orders[BEFORE_THE_KILL:]), CONCURRENCY
    )
    # The controller drops the dead broker from every ISR: writes go on with the other two.
    await cluster.wait_fenced(victim, topics)

    final = await ledger.assert_invariants(timeout=SETTLE_TIMEOUT_S, concurrency=CONCURRENCY)
    settled = time.monotonic() - started
    outcomes = Counter(o["cancel_reason"] or o["status"] for o in final.values())
    assert set(outcomes) == {"COMPLETED", "payment_declined", "out_of_stock", "shipping_failed"}

    # No acknowledged event lost: every row marked sent (read first) is in its topic.
    sent = await sent_event_ids(system)
    in_topics = await event_ids_in(cluster, topics)
    missing = set(sent) - set(in_topics)
    assert not missing, f"{len(missing)} of {len(sent)} sent events are in no topic"

    # The broker comes back and catches up: it is in the ISR of every partition again,
    # the consumer offsets' included.
    cluster.restart(victim)
    partitions = await cluster.wait_in_sync([*topics, "__consumer_offsets"])
    assert all(victim in p.isr for p in partitions)
    print(
        f"node {victim} killed; {ORDERS} orders settled in {settled:.1f} s: {dict(outcomes)}; "
        f"{len(sent)} sent events all in their topics "
        f"({sum(n - 1 for n in in_topics.values())} duplicate records); "
        f"back in sync after {time.monotonic() - started - settled:.1f} s more"
    )
