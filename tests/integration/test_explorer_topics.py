"""The explorer's topic pages (/ui/topics, a topic, its messages, /ui/brokers) against a
real Kafka broker: what they show, their paging by name and offset, and a search by key."""

from __future__ import annotations

import base64
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from fastapi import FastAPI

from services.events import CATALOGUE, PaymentFailed
from services.order.dead_letter_rows import DeadLetterRows
from services.order.deadlines import Deadlines
from services.order.explorer import routes as explorer
from services.order.explorer import topic_pages
from services.order.explorer.peers import Peers
from services.order.stuck import StuckFinder
from shared.contracts.topics import Topics, ensure_topics
from shared.ops.dead_letter_index import DeadLetterIndex
from shared.storage.db import UnitOfWorkFactory, make_engine
from shared.storage.migrations import upgrade_to_head
from tests.infra import Infrastructure

pytestmark = pytest.mark.integration

MIGRATIONS = Path(__file__).parents[2] / "services" / "order" / "migrations"
LONG = "x" * 5000
BINARY = bytes(range(256))


def options(infra: Infrastructure) -> dict[str, Any]:
    return {"bootstrap_servers": infra.kafka_bootstrap}


def unescaped(html: str) -> str:
    return html.replace("&amp;", "&").replace("&#34;", '"').replace("&quot;", '"')


async def send(infra: Infrastructure, topic: str, records: list[tuple[bytes, bytes]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=infra.kafka_bootstrap, acks="all")
    await producer.start()
    try:
        for key, value in records:
            await producer.send_and_wait(
                topic, value, key=key, partition=0, headers=[("source", b"test")]
            )
    finally:
        await producer.stop()


@pytest.fixture(scope="module")
async def units(infra: Infrastructure) -> AsyncIterator[UnitOfWorkFactory]:
    engine = make_engine(await infra.create_database("order"))
    await upgrade_to_head(engine, MIGRATIONS)
    yield UnitOfWorkFactory(engine, Topics(CATALOGUE))
    await engine.dispose()


@pytest.fixture
async def ui(
    infra: Infrastructure, units: UnitOfWorkFactory
) -> AsyncIterator[tuple[httpx.AsyncClient, str]]:
    """The explorer's pages, its topic pages over the topics named ``prefix``...."""
    prefix = infra.topic_prefix("topic-pages")
    hour = timedelta(hours=1)
    index = DeadLetterIndex(options(infra), [], DeadLetterRows(units), CATALOGUE)
    pages = explorer.Explorer(
        units=units,
        finder=StuckFinder(Deadlines(pending=hour, paid=hour, reserved=hour), index),
        dead_letters=index,
        peers=Peers({}, None),
        kafka_options=options(infra),
        inbox_memory=timedelta(days=7),
        group_prefix=prefix,
    )
    app = FastAPI()
    app.include_router(explorer.router(pages))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://order") as client:
        yield client, prefix


async def test_the_topics_page_lists_a_page_of_topics_with_a_next_link_by_name(
    infra: Infrastructure, ui: tuple[httpx.AsyncClient, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    client, prefix = ui
    monkeypatch.setattr(topic_pages, "TOPICS_LISTED", 3)  # (creating 50 topics takes long)
    names = [f"{prefix}t{n}" for n in range(5)]
    await ensure_topics(options(infra), names, partitions=1)
    await send(infra, names[0], [(b"k", b"one"), (b"k", b"two")])

    first = await client.get("/ui/topics")
    assert first.status_code == 200, first.text
    listed = re.findall(r'class="topic-row [^"]*" data-topic="([^"]+)"', first.text)
    assert listed == names[:3]
    row = first.text[first.text.index(f'data-topic="{names[0]}"') :]
    assert re.search(r'class="num records">2<', row)
    more = re.search(r'id="topics-next" href="([^"]+)"', first.text)
    assert more is not None and more.group(1).endswith(f"after={names[2]}")

    second = await client.get(unescaped(more.group(1)))
    assert re.findall(r'class="topic-row [^"]*" data-topic="([^"]+)"', second.text) == names[3:]
    assert 'id="topics-next"' not in second.text


async def test_a_topic_page_shows_its_partitions_and_configs(
    infra: Infrastructure, ui: tuple[httpx.AsyncClient, str]
) -> None:
    client, prefix = ui
    topic = f"{prefix}orders"
    await ensure_topics(options(infra), [topic], partitions=3)
    await send(infra, topic, [(b"k", b"a"), (b"k", b"b"), (b"k", b"c")])

    page = await client.get(f"/ui/topics/{topic}")

    assert page.status_code == 200, page.text
    rows = re.findall(r'class="partition-row\s*" data-partition="(\d)"', page.text)
    assert rows == ["0", "1", "2"]
    assert re.search(r'data-partition="0">.*?class="num records">3<', page.text, re.S)
    assert 'data-config="retention.ms"' in page.text
    assert (await client.get(f"/ui/topics/{prefix}absent")).status_code == 404


async def test_messages_are_shown_decoded_raw_or_base64_and_long_ones_cut(
    infra: Infrastructure, ui: tuple[httpx.AsyncClient, str]
) -> None:
    client, prefix = ui
    topic = f"{prefix}mixed"
    await ensure_topics(options(infra), [topic], partitions=1)
    event = PaymentFailed(
        order_id="o-1", correlation_id="o-1", producer="payment", customer_id="ann",
        amount="1.00", reason="card declined",
    )  # fmt: skip
    records = [(b"o-1", event.model_dump_json().encode()), (b"o-2", b"plain text")]
    records += [(b"o-3", LONG.encode()), (b"o-4", BINARY)]
    records += [(f"o-{n}".encode(), f"filler {n}".encode()) for n in range(5, 13)]
    await send(infra, topic, records)

    page = await client.get(f"/ui/topics/{topic}/messages", params={"offset": 0, "limit": 4})

    assert page.status_code == 200, page.text
    kinds = re.findall(
        r'class="message" data-partition="0" data-offset="(\d+)" data-kind="([^"]+)"', page.text
    )
    assert kinds == [("0", "PaymentFailed"), ("1", "text"), ("2", "text"), ("3", "binary (base64)")]
    assert "card declined" in page.text and "source" in page.text
    # The long value: cut in the row, whole behind a <details>.
    summary = re.search(r"<summary>(x+)…</summary>", page.text)
    assert summary is not None and len(summary.group(1)) < 200
    assert f'<pre class="whole">{LONG}</pre>' in page.text
    assert base64.b64encode(BINARY).decode() in unescaped(page.text)
    newer = re.search(r'id="messages-newer" href="([^"]+)"', page.text)
    assert newer is not None and "offset=4" in newer.group(1)
    assert 'id="messages-older"' not in page.text

    newest = await client.get(f"/ui/topics/{topic}/messages", params={"limit": 3})
    offsets = re.findall(r'data-offset="(\d+)"', newest.text)
    assert offsets == ["9", "10", "11"]
    older = re.search(r'id="messages-older" href="([^"]+)"', newest.text)
    assert older is not None and "offset=6" in older.group(1)

    by_key = await client.get(f"/ui/topics/{topic}/messages", params={"key": "o-2"})
    assert re.findall(r'data-offset="(\d+)"', by_key.text) == ["1"]
    assert re.search(r"with key <code[^>]*>o-2</code>, in partition\s+0\b", by_key.text)

    hour_ago = (datetime.now(UTC) - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M")
    from_time = await client.get(
        f"/ui/topics/{topic}/messages", params={"at": hour_ago, "limit": 2}
    )
    assert re.findall(r'data-offset="(\d+)"', from_time.text) == ["0", "1"]
    to_come = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    later = await client.get(f"/ui/topics/{topic}/messages", params={"at": to_come})
    assert re.findall(r'data-offset="(\d+)"', later.text) == []

    wrong = await client.get(f"/ui/topics/{topic}/messages", params={"at": "yesterday"})
    assert wrong.status_code == 200 and "time &#39;yesterday&#39;" in wrong.text


async def test_the_brokers_page_shows_each_broker_and_its_health(
    ui: tuple[httpx.AsyncClient, str],
) -> None:
    client, _ = ui

    page = await client.get("/ui/brokers")

    assert page.status_code == 200, page.text
    assert re.search(r'class="broker-row\s*" data-node="\d+"', page.text)
    assert "in sync" in page.text
