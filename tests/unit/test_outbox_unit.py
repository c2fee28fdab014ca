"""The pure parts of the outbox: how rows store headers, how the relay reaches PostgreSQL."""

from __future__ import annotations

import pytest

from shared.db import asyncpg_dsn, decode_headers, encode_headers
from shared.producer import check_compression

pytestmark = pytest.mark.unit


def test_headers_survive_the_outbox_byte_for_byte() -> None:
    headers = [("event_type", b"OrderCreated"), ("binary", b"\x00\xff\xfe"), ("empty", b"")]

    assert decode_headers(encode_headers(headers)) == headers


def test_the_relay_connects_with_the_services_url_minus_the_driver() -> None:
    url = "postgresql+asyncpg://user:p%40ss@db.example:5433/orders?ssl=require"

    assert asyncpg_dsn(url) == "postgresql://user:p%40ss@db.example:5433/orders?ssl=require"


def test_no_compression_is_no_codec_and_gzip_needs_nothing_extra() -> None:
    assert check_compression("none") is None
    assert check_compression("gzip") == "gzip"


def test_an_unknown_compression_names_the_valid_ones() -> None:
    with pytest.raises(ValueError, match="none, gzip, lz4, zstd, snappy"):
        check_compression("brotli")
