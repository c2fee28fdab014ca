"""What the soak reads of PostgreSQL's tables, with a stand-in connection (the queries
themselves run against real PostgreSQL in tests/e2e/test_soak_smoke.py)."""

from __future__ import annotations

from typing import Any

from deploy.soak.probes import table_sizes

MB = 1024 * 1024


class StatisticsOnly:
    """Stands in for an asyncpg connection: ``pg_stat_user_tables`` says what PostgreSQL's
    statistics estimate, ``count(*)`` what the table holds."""

    def __init__(self, estimated: dict[str, int], held: dict[str, int]) -> None:
        self.estimated, self.held = estimated, held
        self.counted: list[str] = []

    async def fetch(self, query: str) -> list[tuple[str, str, int, int]]:
        assert "pg_stat_user_tables" in query
        # PostgreSQL's quote_ident would leave these names bare; quoted here so the test
        # sees the quoted name is the one used.
        return [(name, f'"{name}"', rows, MB) for name, rows in self.estimated.items()]

    async def fetchval(self, query: str) -> Any:
        table = query.rsplit(" ", 1)[-1].strip('"')
        assert query == f'SELECT count(*) FROM "{table}"'
        self.counted.append(table)
        return self.held[table]


async def test_the_tables_named_are_counted_and_the_others_estimated() -> None:
    # The estimate autovacuum leaves behind can be off by a fifth either way.
    connection = StatisticsOnly(
        estimated={"sagakit_inbox": 61_500, "orders": 180_000},
        held={"sagakit_inbox": 53_900, "orders": 179_000},
    )

    sizes = await table_sizes({"svc": connection}, counted=["sagakit_inbox"])  # type: ignore[dict-item]

    assert sizes["svc.sagakit_inbox"] == {"rows": 53_900, "mb": 1.0}
    assert sizes["svc.orders"] == {"rows": 180_000, "mb": 1.0}
    assert connection.counted == ["sagakit_inbox"]
