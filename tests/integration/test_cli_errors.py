"""Every sagakit command fails in one line, with a non-zero status, when what it needs is not
there: Kafka on a closed port, the order API on a closed port, wrong arguments. And the
console script pip installed is the same command line."""

from __future__ import annotations

from pathlib import Path

import pytest

from deploy.localstack.ports import free_ports
from tests.cli_support import CONSOLE_SCRIPT, Sagakit
from tests.infra import Infrastructure

KAFKA_COMMANDS = [
    ["topics", "list"],
    ["topics", "describe", "order-created"],
    ["topics", "create", "order-created", "--partitions", "3"],
    ["topics", "delete", "order-created", "--yes"],
    ["produce", "order-created", "--key", "k", "value"],
    ["tail", "order-created", "--from-beginning"],
    ["tail", "order-created", "--follow"],
    ["groups", "list"],
    ["groups", "describe", "payment"],
    ["groups", "reset-offsets", "payment", "--topic", "order-created", "--to-earliest"],
    ["dlq", "list"],
    ["dlq", "show", "order-created-dlq"],
    ["dlq", "replay", "order-created-dlq", "--all"],
]
ORDER_COMMANDS = [
    ["orders", "create", "--customer", "ann", "--item", "tea:2:4.50"],
    ["orders", "show", "some-order"],
    ["orders", "timeline", "some-order"],
    ["orders", "list", "--status", "COMPLETED"],
]


@pytest.fixture
def closed_port() -> int:
    (port,) = free_ports(1)  # nobody listens there
    return port


@pytest.fixture
def nowhere(closed_port: int, tmp_path: Path) -> Sagakit:
    """sagakit pointed at a Kafka and an order API that are not there."""
    address = f"127.0.0.1:{closed_port}"
    settings = {"SAGAKIT_KAFKA_BOOTSTRAP": address, "SAGAKIT_ORDER_URL": f"http://{address}"}
    return Sagakit(settings, tmp_path / "stack.env")


@pytest.mark.parametrize("command", KAFKA_COMMANDS, ids=" ".join)
async def test_with_kafka_down_every_kafka_command_fails_in_one_line(
    nowhere: Sagakit, closed_port: int, command: list[str]
) -> None:
    ran = await nowhere(*command)

    assert ran.exit_code == 1
    (line,) = ran.error_lines
    assert line.startswith(f"sagakit: cannot reach Kafka at 127.0.0.1:{closed_port}: ")
    assert ran.stdout == ""


@pytest.mark.parametrize("command", ORDER_COMMANDS, ids=" ".join)
async def test_with_the_order_api_down_every_orders_command_fails_in_one_line(
    nowhere: Sagakit, closed_port: int, command: list[str]
) -> None:
    ran = await nowhere(*command)

    assert ran.exit_code == 1
    assert ran.error_lines == [
        f"sagakit: cannot reach the order API at http://127.0.0.1:{closed_port} (ConnectError): "
        "is it running? (sagakit stack status)"
    ]


@pytest.mark.parametrize(
    ("command", "says"),
    [
        (["topics", "create", "t"], "Missing option '--partitions'"),
        (["topics", "create", "t", "--partitions", "0"], "greater than or equal to 1"),
        (["orders", "create", "--customer", "c", "--item", "tea"], "write SKU:QUANTITY:UNIT_PRICE"),
        (["tail"], "Missing argument"),
        (["no-such-command"], "No such command 'no-such-command'"),
        (["--env-file", "/no/such/stack.env", "topics", "list"], "no such file"),
    ],
    ids=lambda value: " ".join(value) if isinstance(value, list) else "",
)
async def test_a_wrong_command_line_is_one_line_and_a_non_zero_status(
    nowhere: Sagakit, command: list[str], says: str
) -> None:
    ran = await nowhere(*command)

    assert ran.exit_code != 0
    (line,) = ran.error_lines
    assert line.startswith("sagakit: ") and says in line


async def test_the_console_script_reports_kafka_down_in_one_line(
    nowhere: Sagakit, closed_port: int
) -> None:
    ran = await nowhere.script("groups", "list")

    assert CONSOLE_SCRIPT.exists()
    assert ran.exit_code == 1
    (line,) = ran.error_lines
    assert line.startswith(f"sagakit: cannot reach Kafka at 127.0.0.1:{closed_port}")


async def test_the_console_script_works_against_the_real_broker(
    infra: Infrastructure, tmp_path: Path
) -> None:
    sagakit = Sagakit({"SAGAKIT_KAFKA_BOOTSTRAP": infra.kafka_bootstrap}, tmp_path / "stack.env")
    topic = infra.topic("script")

    created = await sagakit.script("topics", "create", topic, "--partitions", "2", "--json")
    described = await sagakit.script("topics", "describe", topic, "--json")
    helped = await sagakit.script("groups", "reset-offsets", "--help")

    assert created.exit_code == 0, created.stderr
    assert created.json() == {"topic": topic, "partitions": 2, "replication_factor": 1}
    assert len(described.json()["partitions"]) == 2
    assert helped.exit_code == 0 and "--to-datetime" in helped.stdout


async def test_stack_status_reads_the_stack_without_touching_it(nowhere: Sagakit) -> None:
    status = await nowhere("stack", "status", "--profile", "test", "--json")
    wrong = await nowhere("stack", "up", "--profile", "no-such-profile")

    assert status.exit_code == 0, status.stderr
    assert {"kafka", "postgres", "redis"} <= {row["component"] for row in status.json()}
    assert wrong.exit_code == 1
    assert wrong.error_lines == [
        "sagakit: unknown profile 'no-such-profile': use one of dev, test, bench"
    ]
