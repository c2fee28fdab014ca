"""How many bytes each partition replica takes on its broker's disk: Kafka's DescribeLogDirs.

aiokafka's admin client has no call for it (0.14), so this module declares the request (API
key 35, version 1, the oldest Kafka 4 still answers) in aiokafka's own protocol classes and
sends it to each broker through the admin client's connection. It is the one place that
reaches into aiokafka's internals (``AIOKafkaAdminClient._client``): a change there breaks
only the sizes, which the topic pages then show as unknown.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any, ClassVar

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.protocol.api import Request, RequestStruct, Response
from aiokafka.protocol.types import Array, Boolean, Int16, Int32, Int64, Schema, String

__all__ = ["replica_sizes"]

log = logging.getLogger(__name__)


class _DescribeLogDirsResponse_v1(Response):  # type: ignore[misc]
    API_KEY = 35
    API_VERSION = 1
    SCHEMA = Schema(
        ("throttle_time_ms", Int32),
        (
            "results",
            Array(
                ("error_code", Int16),
                ("log_dir", String("utf-8")),
                (
                    "topics",
                    Array(
                        ("name", String("utf-8")),
                        (
                            "partitions",
                            Array(
                                ("partition_index", Int32),
                                ("partition_size", Int64),
                                ("offset_lag", Int64),
                                ("is_future_key", Boolean),
                            ),
                        ),
                    ),
                ),
            ),
        ),
    )


class _DescribeLogDirsRequest_v1(RequestStruct):  # type: ignore[misc]
    API_KEY = 35
    API_VERSION = 1
    RESPONSE_TYPE = _DescribeLogDirsResponse_v1
    SCHEMA = Schema(
        ("topics", Array(("topic", String("utf-8")), ("partitions", Array(Int32)))),
    )


class _DescribeLogDirs(Request[_DescribeLogDirsRequest_v1]):  # type: ignore[misc]
    API_KEY: ClassVar[int] = 35

    def __init__(self, topics: list[tuple[str, list[int]]] | None) -> None:
        self._topics = topics

    def build(
        self, request_struct_class: type[_DescribeLogDirsRequest_v1]
    ) -> _DescribeLogDirsRequest_v1:
        return request_struct_class(self._topics)


async def replica_sizes(
    admin: AIOKafkaAdminClient, brokers: list[int], topics: Mapping[str, list[int]] | None = None
) -> dict[tuple[str, int, int], int]:
    """Bytes of each replica, by (topic, partition, broker); only ``topics`` when given (the
    partitions of each), else every topic. Brokers that cannot answer are left out."""
    wanted = None if topics is None else [(name, list(parts)) for name, parts in topics.items()]

    async def ask(broker: int) -> tuple[int, Any]:
        client: Any = admin._client  # see the module docstring
        return broker, await client.send(broker, _DescribeLogDirs(wanted))

    sizes: dict[tuple[str, int, int], int] = {}
    for answer in await asyncio.gather(*(ask(b) for b in brokers), return_exceptions=True):
        if isinstance(answer, BaseException):
            log.warning("log dir sizes: a broker did not answer (%r)", answer)
            continue
        broker, response = answer
        for error_code, _dir, found in response.results:
            if error_code:
                continue
            for name, partitions in found:
                for index, size, _lag, future in partitions:
                    if not future:  # a replica being moved: counted where it lives now
                        key = (name, index, broker)
                        sizes[key] = sizes.get(key, 0) + size
    return sizes
