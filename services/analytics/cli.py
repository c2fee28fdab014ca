"""``sagakit analytics rebuild``: the read model emptied and the analytics group sent back to
the earliest offsets, so that the service, started again, rebuilds the model from Kafka.

Event sourcing as the seed means it: the read model is a function of the events the topics
hold (services/analytics/model.py), so it can be thrown away and made again, after a change
of its rules, say. ``COMMANDS`` names ``app`` ``analytics``; ``services.cli`` finds it here and
hands it to ``sagakit``.

In this order: the group must have no members (the service is stopped), else nothing
changes; its offsets are committed at each partition's first kept record (Kafka refuses the
commit if a member joined meanwhile); then, in one transaction, the read model's tables and
the group's inbox rows are emptied, and the group's marks in Redis (the inbox's fast path)
deleted: a replayed event must not look like one already counted.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

import typer
from redis.asyncio import Redis
from sqlalchemy import delete

from services.analytics import store
from services.analytics.app import GROUP
from services.events import CATALOGUE
from shared.consuming.inbox import Deduplicator
from shared.contracts.topics import Topics
from shared.ops.cli.audit import record
from shared.ops.cli.config import CliSettings, Config, config
from shared.ops.cli.group_state import commit_offsets, describe_group, refuse_if_active
from shared.ops.cli.kafka import admin_client, consumer, require_topics, run
from shared.ops.cli.output import emit_json, say
from shared.settings import database_url_field
from shared.storage.db import inbox_table, make_engine

__all__ = ["COMMANDS", "AnalyticsCliSettings", "app"]


class AnalyticsCliSettings(CliSettings):
    """The command line's settings plus the analytics database (SAGAKIT_ANALYTICS_DATABASE_URL)."""

    database_url: str = database_url_field("analytics")


app = typer.Typer(help="The analytics read model.", no_args_is_help=True)
COMMANDS: list[tuple[str, typer.Typer]] = [("analytics", app)]


@app.command()
def rebuild(
    ctx: typer.Context,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")] = False,
) -> None:
    """Empty the analytics read model and move its consumer group to the earliest offsets:
    the service rebuilds the model from Kafka when it starts again. Stop the analytics
    service first: refused while its group has members."""
    cfg = config(ctx)
    settings = cfg.settings_of(AnalyticsCliSettings)
    group_id = f"{settings.topic_prefix}{GROUP}"
    if not yes and not typer.confirm(f"empty the analytics read model and replay {group_id}?"):
        raise typer.Exit(1)
    done = run(cfg, _rebuild(cfg, settings, group_id))
    if as_json:
        emit_json(done)
        return
    say(
        f"group {group_id}: {done['partitions']} partition(s) back to the earliest offset; "
        f"read model emptied ({done['inbox_rows']} inbox row(s), {done['redis_keys']} Redis "
        "mark(s) removed): start the analytics service to rebuild it"
    )


async def _rebuild(cfg: Config, settings: AnalyticsCliSettings, group_id: str) -> dict[str, Any]:
    async with admin_client(cfg) as admin:
        refuse_if_active(await describe_group(admin, group_id), "rebuilding the read model")
    topics = Topics(CATALOGUE, settings.topic_prefix).all(include_dlq=False)
    partitions = [tp for found in (await require_topics(cfg, topics)).values() for tp in found]
    async with consumer(cfg) as reader:
        earliest = await reader.beginning_offsets(partitions)
    await commit_offsets(cfg, group_id, earliest)
    inbox_rows = await _empty_read_model(settings.database_url, group_id)
    redis_keys = await _forget_marks(settings.redis_url, group_id)
    await record(cfg, "analytics.rebuild", group_id, len(partitions))
    return {
        "group": group_id,
        "partitions": len(partitions),
        "inbox_rows": inbox_rows,
        "redis_keys": redis_keys,
    }


async def _empty_read_model(database_url: str, group_id: str) -> int:
    """Empty the read model and the group's inbox in one transaction; the inbox rows removed."""
    engine = make_engine(database_url)
    try:
        async with engine.begin() as connection:
            await store.clear(connection)
            mine = inbox_table.c.consumer_group == group_id
            return (await connection.execute(delete(inbox_table).where(mine))).rowcount
    finally:
        await engine.dispose()


async def _forget_marks(redis_url: str, group_id: str) -> int:
    """Delete the group's marks in Redis; how many there were."""
    redis = Redis.from_url(redis_url)
    # The platform's own key for an event of the group, its event id replaced by a wildcard.
    sample = Deduplicator(redis, ttl_seconds=1).key(group_id, uuid.UUID(int=0))
    pattern = sample.removesuffix(str(uuid.UUID(int=0))) + "*"
    removed = 0
    try:
        batch: list[bytes] = []
        async for key in redis.scan_iter(match=pattern, count=1000):
            batch.append(key)
            if len(batch) == 1000:
                removed += await redis.delete(*batch)
                batch.clear()
        if batch:
            removed += await redis.delete(*batch)
    finally:
        await redis.aclose()
    return removed
