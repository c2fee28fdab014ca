"""The pure parts of the outbox: how rows store headers, how the relay reaches PostgreSQL."""

from __future__ import annotations

import pytest

from shared.publishing.producer import check_compression
from shared.storage.db import asyncpg_dsn, decode_headers, encode_headers, make_engine

pytestmark = pytest.mark.unit


def test_headers_survive_the_outbox_byte_for_byte() -> None:
    headers = [("event_type", b"OrderCreated"), ("binary", b"\x00\xff\xfe"), ("empty", b"")]

    assert decode_headers(encode_headers(headers)) == headers


def test_the_relay_connects_with_the_services_url_minus_the_driver() -> None:
    url = "postgresql+asyncpg://user:p%40ss@db.example:5433/orders?ssl=require"

    assert asyncpg_dsn(url) == "postgresql://user:p%40ss@db.example:5433/orders?ssl=require"


def test_a_socket_url_keeps_its_port_when_the_relay_connects() -> None:
    # SQLAlchemy reads this URL as the socket directory's .s.PGSQL.25432; asyncpg read the
    # same DSN as host "" port 25432 (a DNS lookup of nothing: the leader loops retried for
    # ever while the consumers worked). asyncpg takes the socket when both are in the query.
    url = "postgresql+asyncpg://u:p@:25432/orders?host=/var/run/postgresql"

    assert asyncpg_dsn(url) == "postgresql://u:p@/orders?host=%2Fvar%2Frun%2Fpostgresql&port=25432"


def test_no_compression_is_no_codec_and_gzip_needs_nothing_extra() -> None:
    assert check_compression("none") is None
    assert check_compression("gzip") == "gzip"


def test_an_unknown_compression_names_the_valid_ones() -> None:
    with pytest.raises(ValueError, match="none, gzip, lz4, zstd, snappy"):
        check_compression("brotli")


def test_the_loopback_is_reached_without_tls_unless_the_url_asks_for_it() -> None:
    assert asyncpg_dsn("postgresql+asyncpg://u:p@127.0.0.1:5432/orders").endswith(
        "/orders?sslmode=disable"
    )
    assert asyncpg_dsn("postgresql+asyncpg://u:p@localhost/orders?sslmode=require").endswith(
        "/orders?sslmode=require"
    )


def test_the_engine_takes_the_same_choice_of_tls() -> None:
    loopback = make_engine("postgresql+asyncpg://u:p@127.0.0.1:5432/orders")
    remote = make_engine("postgresql+asyncpg://u:p@db.example:5432/orders")

    assert loopback.url.query == {"ssl": "disable"}
    assert remote.url.query == {}
