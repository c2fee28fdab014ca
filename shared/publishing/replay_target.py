"""Which consumer group a replayed dead letter is for: the headers a replay adds.

A dead letter is one group's failure: the other groups that read its topic handled the
record (or dead-lettered it themselves, each with a dead letter of its own). So a replay
(``shared.ops.replay``) sends each dead letter back to its topic for the group that gave up on
it alone, naming that group in ``sagakit.replay.group``; a consumer of any other group
commits past such a record without handling it (``shared.consuming.pipeline``). A record that
still fails therefore adds one dead letter per replayed copy, instead of one per group reading
the topic, and an event replayed for one group costs the others nothing, not even an inbox
lookup. ``sagakit.replay.of`` names the record as first read (``topic[partition]@offset``)
and stays the same through every later replay and dead letter of its copies: a replay sends
one copy per group and record, however many dead letters earlier replays of it left behind.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["REPLAY_GROUP_HEADER", "REPLAY_HEADERS", "REPLAY_OF_HEADER", "replay_header"]

REPLAY_GROUP_HEADER = "sagakit.replay.group"
"""The consumer group a replayed copy is for; absent on a record first published."""

REPLAY_OF_HEADER = "sagakit.replay.of"
"""``topic[partition]@offset`` of the record a replayed copy (or its dead letter) descends from."""

REPLAY_HEADERS = frozenset({REPLAY_GROUP_HEADER, REPLAY_OF_HEADER})


def replay_header(headers: Sequence[tuple[str, bytes]], name: str) -> str | None:
    """The value of header ``name`` (the last one, decoded), or None."""
    values = [value for key, value in headers if key == name]
    return values[-1].decode(errors="replace") if values else None
