"""The saga explorer (``/ui``) in a real headless browser: Debian's chromium, driven by
Playwright, against the running services.

Every page is opened through ``Tab``, which fails the test on any console error or uncaught
exception the page reports. Screenshots go to ``.artifacts/explorer/`` (git-ignored), kept as
the run's artifacts.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import httpx
import pytest
from playwright.async_api import Browser, ConsoleMessage, Locator, Page, async_playwright
from playwright.async_api import TimeoutError as PlaywrightTimeout

from deploy.localstack.prereqs import ensure_chromium
from shared.storage.db import asyncpg_dsn
from tests.e2e.conftest import RunningSystem
from tests.e2e.invariants import Ledger, dead_letters, eventually, settled_timeline, wait_terminal

ARTIFACTS = Path(__file__).parents[2] / ".artifacts" / "explorer"
WAIT_MS = 30_000
"""For what the page shows after its own refresh (every 3 s) on a loaded machine."""


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    chromium = ensure_chromium()
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=str(chromium),
            headless=True,
            # Chromium's sandbox refuses to run as root (CI and these machines run as root).
            args=["--no-sandbox"] if os.geteuid() == 0 else [],
        )
        try:
            yield launched
        finally:
            await launched.close()


@dataclass
class Tab:
    """One browser page that remembers every console error and uncaught exception."""

    page: Page
    errors: list[str] = field(default_factory=list)

    @classmethod
    async def open(cls, browser: Browser) -> Tab:
        page = await browser.new_page(viewport={"width": 1400, "height": 900})
        page.set_default_timeout(WAIT_MS)
        tab = cls(page)
        page.on("console", tab._on_console)
        page.on("pageerror", lambda error: tab.errors.append(f"uncaught: {error}"))
        return tab

    def _on_console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.errors.append(f"console error: {message.text} at {message.location}")

    async def goto(self, url: str) -> None:
        response = await self.page.goto(url)
        assert response is not None and response.status == 200, f"{url}: {response}"
        await self.page.wait_for_load_state("load")
        self.assert_clean()

    async def shows(self, selector: str, **options: str) -> Locator:
        """The first element ``selector`` matches, once visible (the page may have to refresh
        itself first); fails with what the page shows instead."""
        found = self.page.locator(selector, **options).first
        try:
            await found.wait_for()
        except PlaywrightTimeout as timeout:
            await self.screenshot("failed")
            shown = await self.page.locator("#content").inner_text()
            raise AssertionError(
                f"{selector} not shown on {self.page.url}; it shows:\n{shown}"
            ) from timeout
        return found

    async def screenshot(self, name: str) -> Path:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{name}.png"
        await self.page.screenshot(path=str(path), full_page=True)
        return path

    def assert_clean(self) -> None:
        assert self.errors == [], "the page reported errors:\n" + "\n".join(self.errors)

    async def close(self) -> None:
        self.assert_clean()
        await self.page.close()


@pytest.fixture
async def tab(browser: Browser) -> AsyncIterator[Tab]:
    opened = await Tab.open(browser)
    try:
        yield opened
    finally:
        await opened.close()


def ui(system: RunningSystem, path: str = "") -> str:
    return f"{system.client.urls.order}/ui{path}"


async def stuck_orders(system: RunningSystem, customer: str) -> list[str]:
    """``GET /orders?stuck=true`` for one customer: the ids listed."""
    params = {"stuck": "true", "customer_id": customer}
    response = await system.client.http.get(f"{system.client.urls.order}/orders", params=params)
    response.raise_for_status()
    return [order["order_id"] for order in response.json()]


async def fits_the_window(tab: Tab) -> bool:
    """Whether the page is no wider than the window (nothing to scroll sideways to)."""
    widths = await tab.page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    return bool(widths[0] <= widths[1])


async def lane_of(tab: Tab, event_type: str) -> str | None:
    step = tab.page.locator(f".step[data-event-type={event_type}]")
    return await step.first.get_attribute("data-lane")


async def test_a_completed_and_a_compensated_saga_show_their_swimlanes(
    system: RunningSystem, tab: Tab
) -> None:
    client, ledger = system.client, Ledger(system.client)
    customer = await ledger.customer("explorer", "100.00")
    sku = await ledger.sku("explorer", 10)
    completed = await ledger.place(customer, [(sku, 1, "10.00")])
    assert (await wait_terminal(client, completed["order_id"]))["status"] == "COMPLETED"
    await client.add_fault(client.urls.shipping, "fail", count=1)
    cancelled = await ledger.place(customer, [(sku, 2, "3.00")])
    assert (await wait_terminal(client, cancelled["order_id"]))["status"] == "CANCELLED"
    for order in (completed, cancelled):
        await settled_timeline(client, order["order_id"])

    await tab.goto(ui(system))
    await tab.shows(f"a[href$='{completed['order_id']}']")
    await tab.shows("#counts [data-status=COMPLETED]")
    await tab.screenshot("sagas")

    await tab.goto(ui(system, f"/orders/{completed['order_id']}"))
    await tab.shows(".step[data-event-type=OrderCompleted]")
    lanes = {
        event: await lane_of(tab, event)
        for event in ("OrderCreated", "PaymentProcessed", "InventoryReserved", "OrderShipped")
    }
    assert lanes == {
        "OrderCreated": "order",
        "PaymentProcessed": "payment",
        "InventoryReserved": "inventory",
        "OrderShipped": "shipping",
    }
    assert await tab.page.locator(".step.compensation").count() == 0
    # Each event with where the timeline read it: topic[partition]@offset.
    positions = await tab.page.locator(".step .position").all_inner_texts()
    assert len(positions) == 5 and all("]@" in text for text in positions), positions
    await tab.shows("[data-service=payment] .status-charged")
    await tab.shows("[data-service=inventory] .status-shipped")
    await tab.shows("[data-service=shipping] .status-shipped")
    await tab.screenshot("completed-saga")

    await tab.goto(ui(system, f"/orders/{cancelled['order_id']}"))
    await tab.shows(".step[data-event-type=OrderCancelled]")
    compensations = tab.page.locator(".step.compensation")
    assert await compensations.count() == 2
    assert await lane_of(tab, "ShippingFailed") == "shipping"
    assert await lane_of(tab, "PaymentRefunded") == "payment"
    assert await lane_of(tab, "InventoryReleased") == "inventory"
    await tab.shows("[data-service=payment] .status-refunded")
    await tab.shows("[data-service=inventory] .status-released")
    await tab.shows("[data-service=shipping] .status-failed")
    await tab.screenshot("compensated-saga")
    await ledger.assert_invariants()


async def test_a_stuck_saga_is_flagged_and_a_replay_from_the_page_completes_it(
    system: RunningSystem, tab: Tab
) -> None:
    client, ledger = system.client, Ledger(system.client)
    customer = await ledger.customer("explorer-stuck", "100.00")
    sku = await ledger.sku("explorer-stuck", 10)
    await client.add_fault(client.urls.inventory, "permanent", count=1)
    order = await ledger.place(customer, [(sku, 1, "8.00")])
    order_id = order["order_id"]
    dlq = system.topic("payment-processed-dlq")
    assert len(await dead_letters(system.kafka_bootstrap, dlq, order_id)) == 1
    await eventually(lambda: client.order(order_id), lambda o: o["status"] == "PAID", what="PAID")

    # The dead-letter index reads the DLQ topics at most once a second: wait until it has.
    await eventually(
        lambda: stuck_orders(system, customer), lambda ids: ids == [order_id], what="stuck"
    )

    await tab.goto(ui(system))
    flagged = await tab.shows(f"#stuck tr[data-order-id='{order_id}']")
    assert dlq in await flagged.inner_text()
    await tab.screenshot("stuck-saga-flagged")

    await tab.goto(ui(system, f"/orders/{order_id}"))
    await tab.shows(".stuck-flag")
    replay = tab.page.locator("#letters button.replay")
    assert await replay.count() == 1

    # Every write needs the admin token (asked over HTTP: a browser logs each refused
    # request as a console error, which this test counts as a failure).
    where = await replay.get_attribute("data-partition"), await replay.get_attribute("data-offset")
    body = {"topic": dlq, "partition": int(where[0] or -1), "offset": int(where[1] or -1)}
    async with httpx.AsyncClient() as anonymous:
        missing = await anonymous.post(ui(system, "/replay"), json=body)
        wrong = await anonymous.post(
            ui(system, "/replay"), json=body, headers={"Authorization": "Bearer not-the-token"}
        )
    assert (missing.status_code, wrong.status_code) == (401, 403)
    assert (await client.order(order_id))["status"] == "PAID"

    await replay.click()
    await tab.page.fill("#token-input", system.env["SAGAKIT_ADMIN_TOKEN"])
    await tab.page.click("#token-ok")
    await tab.shows("#notice:not(.bad)", has_text="replayed")
    # The page refreshes by itself until the saga it shows has completed.
    await tab.shows("#summary .status-completed")
    await tab.shows(".step[data-event-type=OrderCompleted]")
    assert await tab.page.locator(".stuck-flag").count() == 0
    await tab.screenshot("replayed-saga")

    await ledger.assert_invariants()
    assert await stuck_orders(system, customer) == []  # its dead letter stays, it is done
    await tab.goto(ui(system))
    assert await tab.page.locator(f"#stuck tr[data-order-id='{order_id}']").count() == 0

    # The dead letter stays where it was, with its headers and its value decoded.
    await tab.goto(ui(system, "/dead-letters"))
    # (The session's other tests may have dead-lettered into it too.)
    assert int(await tab.page.locator(f"td[data-topic='{dlq}']").inner_text()) >= 1
    letter = await tab.shows(".letter", has_text=order_id)
    text = await letter.inner_text()
    assert "dlq.original.topic" in text and "injected permanent fault" in text
    assert '"event_type": "PaymentProcessed"' in text
    await tab.screenshot("dead-letters")


async def test_the_consumer_groups_page_shows_lag_and_owners(
    system: RunningSystem, tab: Tab
) -> None:
    await tab.goto(ui(system, "/consumer-groups"))
    payment = await tab.shows(f".group[data-group='{system.topic('payment')}']")
    # The two payment instances share the group: each partition of its three topics is
    # owned by one of them (client ids are <service>-<instance>), and both own some.
    owners = await payment.locator("td[data-partition] .owner").all_inner_texts()
    assert len(owners) == 3 * 6, owners
    assert set(owners) == {"payment-payment", "payment-payment-2"}, owners
    lags = await payment.locator("td[data-partition] b").all_inner_texts()
    assert all(lag == "-" or lag.isdigit() for lag in lags), lags
    await tab.screenshot("consumer-groups")


async def test_the_page_loads_nothing_from_other_hosts(system: RunningSystem, tab: Tab) -> None:
    base = system.client.urls.order
    elsewhere: list[str] = []
    tab.page.on("request", lambda r: None if r.url.startswith(base) else elsewhere.append(r.url))
    await tab.goto(ui(system))
    refreshed = await tab.page.locator("#refreshed").inner_text()
    await eventually(
        lambda: tab.page.locator("#refreshed").inner_text(),
        lambda now: now != refreshed,
        timeout=WAIT_MS / 1000,
        what="the page's own refresh",
    )
    tab.assert_clean()
    assert elsewhere == []


async def test_the_topic_pages_show_partitions_messages_by_key_and_the_brokers(
    system: RunningSystem, tab: Tab
) -> None:
    client, ledger = system.client, Ledger(system.client)
    customer = await ledger.customer("explorer-topics", "100.00")
    sku = await ledger.sku("explorer-topics", 10)
    order = await ledger.place(customer, [(sku, 1, "10.00")])
    order_id = order["order_id"]
    # Paid: its OrderCreated is in its topic (the payment service read it from there).
    await eventually(
        lambda: client.order(order_id), lambda o: o["status"] != "PENDING", what="paid"
    )
    created = system.topic("order-created")

    await tab.goto(ui(system, "/topics"))
    row = await tab.shows(f"tr.topic-row[data-topic='{created}']")
    assert int(await row.locator(".records").inner_text()) >= 1
    await tab.shows(f"tr.topic-row[data-topic='{system.topic('payment-processed-dlq')}']")
    await tab.screenshot("topics")

    await row.locator("a").click()
    await tab.page.wait_for_load_state("load")
    await tab.shows("tr.partition-row[data-partition='0']")
    assert await tab.page.locator("tr.partition-row").count() == 6
    await tab.shows("tr[data-config='retention.ms']")
    await tab.screenshot("topic")

    # Its messages: the newest of partition 0, then the order's by key (the form).
    await tab.page.click("#messages-link")
    await tab.page.wait_for_load_state("load")
    await tab.shows("#message-query")
    await tab.page.fill("#message-query input[name=key]", order_id)
    await tab.page.click("#message-query button")
    await tab.page.wait_for_load_state("load")
    message = await tab.shows("tr.message[data-kind=OrderCreated]")
    assert order_id in await message.locator("td.key").inner_text()
    assert "event_type" in await message.locator("td.headers").inner_text()
    # The value is cut to a line; the whole event is a click away.
    whole = message.locator("pre.whole")
    assert not await whole.is_visible()
    await message.locator("summary").click()
    await whole.wait_for()
    assert f'"order_id": "{order_id}"' in await whole.inner_text()
    assert await fits_the_window(tab)
    await tab.screenshot("topic-messages")

    await tab.goto(ui(system, "/brokers"))
    broker = await tab.shows("tr.broker-row")
    assert "in sync" in await broker.locator(".health").inner_text()
    assert await tab.page.locator("tr.broker-row", has_text="controller").count() == 1
    await tab.screenshot("brokers")
    tab.assert_clean()


async def test_a_200_character_customer_id_keeps_the_sagas_table_in_the_window(
    system: RunningSystem, tab: Tab
) -> None:
    # Longer than the API accepts (128), as an older release or a direct write may have left.
    customer = "c" * 200
    order_id = f"long-customer-{os.urandom(4).hex()}-" + "o" * 100
    connection = await asyncpg.connect(asyncpg_dsn(system.env["SAGAKIT_ORDER_DATABASE_URL"]))
    try:
        await connection.execute(
            "INSERT INTO orders (order_id, customer_id, items, total, status, created_at,"
            " updated_at) VALUES ($1, $2, '[]', 1, 'COMPLETED', now(), now())",
            order_id,
            customer,
        )
    finally:
        await connection.close()

    await tab.goto(ui(system, f"?customer_id={customer}"))
    row = tab.page.locator("#orders tbody tr", has_text=order_id)
    status = await tab.shows("#orders tbody tr .status-completed")
    box = await status.bounding_box()
    width = await tab.page.evaluate("window.innerWidth")
    assert box is not None and box["x"] + box["width"] <= width, (box, width)
    assert await fits_the_window(tab)
    # The whole id is in the cell's title.
    assert await row.locator("td.customer .cut").get_attribute("title") == customer
    await tab.screenshot("long-customer-id")

    # Its page too: the long ids wrap or are cut, the page keeps the window's width.
    await tab.goto(ui(system, f"/orders/{order_id}"))
    await tab.shows("#summary")
    assert await fits_the_window(tab)
