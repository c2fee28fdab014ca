"""``sagakit topics list | describe T | create T | delete T | alter-config T``: kafka-topics.sh's
everyday verbs, and kafka-configs.sh's for a topic."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from aiokafka.admin import NewTopic

from shared.contracts.topics import alter_topic_config
from shared.ops import topic_browser
from shared.ops.cli.audit import record
from shared.ops.cli.config import Config, config
from shared.ops.cli.kafka import admin_client, broker_error, require_topics, run
from shared.ops.cli.output import CliError, emit_json, say, table

app = typer.Typer(
    help="List, describe, create, delete topics and alter their settings.", no_args_is_help=True
)

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


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
    rows: list[dict[str, Any]] = []
    page = await topic_browser.list_topics(cfg.kafka_options(), prefix=prefix)
    while page:
        rows += [
            {
                "topic": t.name,
                "partitions": t.partitions,
                "replication_factor": t.replication_factor,
            }
            for t in page
        ]
        page = await topic_browser.list_topics(
            cfg.kafka_options(), prefix=prefix, after=page[-1].name
        )
    return rows


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
    await require_topics(cfg, [topic])  # a missing one named, with the prefix hint
    state = await topic_browser.describe_topic(cfg.kafka_options(), topic)
    if state is None:  # deleted meanwhile
        raise CliError(f"no topic {topic!r} on Kafka at {cfg.bootstrap_servers}")
    rows = [
        {
            "partition": p.partition,
            "leader": p.leader,
            "replicas": list(p.replicas),
            "isr": list(p.isr),
            "first_offset": p.first_offset,
            "end_offset": p.end_offset,
        }
        for p in state.partitions
    ]
    return {"topic": topic, "partitions": rows, "records": state.records, "configs": state.configs}


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
    details = {"partitions": new.num_partitions, "configs": new.topic_configs}
    await record(cfg, "topics.created", new.name, 1, details)


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
    await record(cfg, "topics.deleted", topic, 1)


@app.command("alter-config")
def alter_config(
    ctx: typer.Context,
    topic: Annotated[str, typer.Argument(help="The topic's full name.")],
    setting: Annotated[
        list[str] | None,
        typer.Option("--set", help="Set a topic config KEY=VALUE (repeatable)."),
    ] = None,
    removed: Annotated[
        list[str] | None,
        typer.Option("--delete", help="Remove the topic's own KEY: the default applies again."),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Change a topic's settings (kafka-configs.sh --alter --add-config/--delete-config): the
    settings not named are kept."""
    cfg = config(ctx)
    changes = dict(_key_value(item, "--set") for item in setting or [])
    if not changes and not removed:
        raise typer.BadParameter("give --set KEY=VALUE or --delete KEY (repeatable)")
    before, after = run(cfg, _alter_config(cfg, topic, changes, removed or []))
    if as_json:
        emit_json({"topic": topic, "before": before, "after": after})
        return
    keys = sorted({*before, *after})
    table(
        ["config", "before", "after"],
        [
            [key, before.get(key), after.get(key)]
            for key in keys
            if before.get(key) != after.get(key)
        ],
    )
    say(f"altered {topic}: {len(after)} setting(s) of its own")


async def _alter_config(
    cfg: Config, topic: str, changes: dict[str, str], removed: list[str]
) -> tuple[dict[str, str], dict[str, str]]:
    await require_topics(cfg, [topic])
    async with admin_client(cfg) as admin:
        try:
            before, after = await alter_topic_config(admin, topic, changes, removed)
        except KeyError as error:
            raise CliError(
                f"{error.args[0]} is not set on {topic} (only its own settings can be deleted)"
            ) from error
        except RuntimeError as error:
            raise CliError(str(error)) from error
    changed = sorted(key for key in {*before, *after} if before.get(key) != after.get(key))
    await record(
        cfg, "topics.config.altered", topic, len(changed), {"before": before, "after": after}
    )
    return before, after


def _key_value(item: str, option: str) -> tuple[str, str]:
    key, sep, value = item.partition("=")
    if not sep or not key:
        raise typer.BadParameter(f"{item!r}: write KEY=VALUE", param_hint=option)
    return key, value
