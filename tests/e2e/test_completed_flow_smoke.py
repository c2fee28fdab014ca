from tests.e2e.conftest import RunningSystem


async def test_an_order_with_funds_and_stock_completes(system: RunningSystem) -> None:
    client = system.client
    await client.set_balance("smoke-customer", "50.00")
    await client.set_stock("smoke-sku", 5)
    order = await client.place_order("smoke-customer", [("smoke-sku", 2, "10.00")])
    assert order["status"] == "PENDING"
    done = await client.wait_terminal(order["order_id"])
    assert done["status"] == "COMPLETED"
    assert await client.balance("smoke-customer") == 30
