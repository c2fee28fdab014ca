"""The audit trail of the command line, against a real Kafka broker: each stack-changing
command records who did what to how many, a dry run records nothing, and sagakit audit
shows them newest first."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.cli_support import Sagakit
from tests.infra import Infrastructure
from tests.integration.test_cli_groups import consume, produce


@pytest.fixture
def sagakit(infra: Infrastructure, tmp_path: Path) -> Sagakit:
    # A prefix of its own: the audit topic is <prefix>sagakit-audit, this test's alone.
    settings = {
        "SAGAKIT_KAFKA_BOOTSTRAP": infra.kafka_bootstrap,
        "SAGAKIT_TOPIC_PREFIX": infra.topic_prefix("audit"),
        "SAGAKIT_OPERATOR": "ann",
    }
    return Sagakit(settings, tmp_path / "stack.env")


async def trail(sagakit: Sagakit, *args: str) -> list[dict[str, Any]]:
    ran = await sagakit("audit", "--json", *args)
    assert ran.exit_code == 0, ran.stderr
    return ran.json_lines()


async def test_each_change_is_recorded_with_who_what_and_how_many_and_a_dry_run_is_not(
    sagakit: Sagakit, infra: Infrastructure
) -> None:
    nothing_yet = await trail(sagakit)
    topic, group = infra.topic("audited"), infra.unique("audited")
    assert (await sagakit("topics", "create", topic, "--partitions", "2")).exit_code == 0
    await produce(infra, topic, 4)
    await consume(infra, group, topic, expected=4)
    assert (
        await sagakit("topics", "alter-config", topic, "--set", "retention.ms=60000")
    ).exit_code == 0
    dry = await sagakit("groups", "reset-offsets", group, "--topic", topic, "--to-earliest")
    executed = await sagakit(
        "groups", "reset-offsets", group, "--topic", topic, "--to-earliest", "--execute"
    )
    assert (dry.exit_code, executed.exit_code) == (0, 0)
    assert (await sagakit("groups", "delete", group, "--yes")).exit_code == 0
    assert (await sagakit("topics", "delete", topic, "--yes")).exit_code == 0

    entries = await trail(sagakit)
    resets = await trail(sagakit, "--action", "groups.")
    shown = await sagakit("audit")

    assert nothing_yet == []
    assert [(e["action"], e["target"], e["count"]) for e in entries] == [
        ("topics.deleted", topic, 1),
        ("groups.deleted", group, 1),
        ("groups.offsets.reset", f"{group} on {topic}", 2),  # two partitions moved; once
        ("topics.config.altered", topic, 1),
        ("topics.created", topic, 1),
    ]
    assert {e["who"] for e in entries} == {"ann"} and {e["by"] for e in entries} == {"sagakit"}
    assert entries[2]["details"] == {"to": "earliest", "offsets": {"0": 0, "1": 0}}
    assert [e["action"] for e in resets] == ["groups.deleted", "groups.offsets.reset"]
    assert "groups.offsets.reset" in shown.stdout and "ann" in shown.stdout
