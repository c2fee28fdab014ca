"""``sagakit topics list | describe T | create T | delete T``: kafka-topics.sh's everyday verbs."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from aiokafka.admin import NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from shared.ops.cli.config import Config, config
from shared.ops.cli.kafka import admin_client, broker_error, consumer, require_topics, run
from shared.ops.cli.output import CliError, emit_json, say, table

app = typer.Typer(help="List, describe, create and delete topics.", no_args_is_help=True)

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
# Shown by describe whatever their source: what an operator of this system asks about first.
KEY_CONFIGS = ("cleanup.policy", "retention.ms", "min.insync.replicas")
TOPIC_CONFIG_SOURCE = 1  # DescribeConfigs: DYNAMIC_TOPIC_CONFIG, set on the topic itself


@app.command("list")
def list_topics(
    ctx: typer.Context,
    every: Annotated[
        bool, typer.Option("--all", help="Every topic, not only those of SAGAKIT_TOPIC_PREFIX.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """The topics and their partition counts (internal topics left out)."""
    cfg = config(ctx)
    found = run(cfg, _list(cfg, every))
    if as_json:
        emit_json(found)
        return
    table(
        ["topic", "partitions", "replicas"],
        [[t["topic"], t["partitions"], t["replication_factor"]] for t in found],
    )
    say(f"{len(found)} topic(s)")


async def _list(cfg: Config, every: bool) -> list[dict[str, Any]]:
    prefix = "" if every else cfg.settings.topic_prefix
    async with admin_client(cfg) as admin:
        described = await admin.describe_topics()  # no names: nothing gets auto-created
    rows = [
        {
            "topic": topic["topic"],
            "partitions": len(topic["partitions"]),
            "replication_factor": max((len(p["replicas"]) for p in topic["partitions"]), default=0),
        }
        for topic in described
        if not topic["is_internal"] and topic["topic"].startswith(prefix)
    ]
    return sorted(rows, key=lambda row: row["topic"])


@app.command()
def describe(
    ctx: typer.Context,
    topic: Annotated[str, typer.Argument(help="The topic's full name (prefix included).")],
    as_json: JsonOption = False,
) -> None:
    """Partitions (leader, replicas, in-sync replicas, offsets, records) and configuration."""
    cfg = config(ctx)
    found = run(cfg, _describe(cfg, topic))
    if as_json:
        emit_json(found)
        return
    say(f"{topic}: {len(found['partitions'])} partition(s), {found['records']} record(s)")
    table(
        ["partition", "leader", "replicas", "in sync", "first offset", "end offset", "records"],
        [
            [
                p["partition"],
                p["leader"],
                ",".join(map(str, p["replicas"])),
                ",".join(map(str, p["isr"])),
                p["first_offset"],
                p["end_offset"],
                p["end_offset"] - p["first_offset"],
            ]
            for p in found["partitions"]
        ],
    )
    table(["config", "value"], sorted(found["configs"].items()))


async def _describe(cfg: Config, topic: str) -> dict[str, Any]:
    partitions = (await require_topics(cfg, [topic]))[topic]
    async with consumer(cfg) as reader:
        firsts = await reader.beginning_offsets(partitions)
        ends = await reader.end_offsets(partitions)
    async with admin_client(cfg) as admin:
        (metadata,) = await admin.describe_topics([topic])  # exists: checked above
        (response,) = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, topic)]
        )
    entries = response.to_object()["resources"][0]["config_entries"]
    configs = {
        entry["config_names"]: entry["config_value"]
        for entry in entries
        if entry["config_names"] in KEY_CONFIGS or entry["config_source"] == TOPIC_CONFIG_SOURCE
    }
    by_number = {p["partition"]: p for p in metadata["partitions"]}
    rows = [
        {
            "partition": tp.partition,
            "leader": by_number[tp.partition]["leader"],
            "replicas": by_number[tp.partition]["replicas"],
            "isr": by_number[tp.partition]["isr"],
            "first_offset": firsts[tp],
            "end_offset": ends[tp],
        }
        for tp in partitions
    ]
    records = sum(row["end_offset"] - row["first_offset"] for row in rows)
    return {"topic": topic, "partitions": rows, "records": records, "configs": configs}


@app.command()
def create(
    ctx: typer.Context,
    topic: Annotated[str, typer.Argument(help="The new topic's full name.")],
    partitions: Annotated[int, typer.Option("--partitions", "-p", min=1, help="How many.")],
    replication_factor: Annotated[
        int, typer.Option("--replication-factor", "-r", min=1, help="Copies of each partition.")
    ] = 1,
    setting: Annotated[
        list[str] | None,
        typer.Option("--config", help="A topic config KEY=VALUE (repeatable)."),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Create a topic; an existing one is an error (its partitions are never changed)."""
    cfg = config(ctx)
    configs = dict(_key_value(item, "--config") for item in setting or [])
    new = NewTopic(topic, partitions, replication_factor, topic_configs=configs)
    run(cfg, _create(cfg, new))
    if as_json:
        emit_json(
            {"topic": topic, "partitions": partitions, "replication_factor": replication_factor}
        )
    else:
        say(f"created {topic} ({partitions} partition(s), replication factor {replication_factor})")


async def _create(cfg: Config, new: NewTopic) -> None:
    async with admin_client(cfg) as admin:
        response = await admin.create_topics([new])
    for name, code, message in response.topic_errors:
        if code:
            raise CliError(f"cannot create {name}: {message or broker_error(code)}")


@app.command()
def delete(
    ctx: typer.Context,
    topic: Annotated[str, typer.Argument(help="The topic's full name.")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Delete a topic and every record in it."""
    cfg = config(ctx)
    if not yes and not typer.confirm(f"delete {topic} and all its records?"):
        raise CliError("not deleted")
    run(cfg, _delete(cfg, topic))
    if as_json:
        emit_json({"deleted": topic})
    else:
        say(f"deleted {topic}")


async def _delete(cfg: Config, topic: str) -> None:
    await require_topics(cfg, [topic])
    async with admin_client(cfg) as admin:
        response = await admin.delete_topics([topic])
    for name, code in response.topic_error_codes:
        if code:
            raise CliError(f"cannot delete {name}: {broker_error(code)}")


def _key_value(item: str, option: str) -> tuple[str, str]:
    key, sep, value = item.partition("=")
    if not sep or not key:
        raise typer.BadParameter(f"{item!r}: write KEY=VALUE", param_hint=option)
    return key, value
