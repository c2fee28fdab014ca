"""Hot-path statements: the same INSERT ... ON CONFLICT DO NOTHING, but one SQLAlchemy caches."""

from __future__ import annotations

import pytest
from sqlalchemy import Column, MetaData, Table, Text
from sqlalchemy.dialects.postgresql import JSONB

from shared.storage.sql import InsertManyUnlessPresent, insert_unless_present

pytestmark = pytest.mark.unit

things = Table("things", MetaData(), Column("id", Text, primary_key=True), Column("body", JSONB))


def test_the_statement_skips_a_row_that_is_there_and_returns_what_it_inserted() -> None:
    statement = insert_unless_present(things, ["id", "body"], conflict=["id"], returning=["id"])

    assert str(statement) == (
        "INSERT INTO things (id, body) VALUES (:id, :body) ON CONFLICT (id) DO NOTHING RETURNING id"
    )


def test_the_statement_has_a_cache_key_unlike_the_dialects_insert() -> None:
    from sqlalchemy.dialects.postgresql import insert

    dialect_insert = insert(things).values(id="a").on_conflict_do_nothing()
    ours = insert_unless_present(things, ["id"], conflict=["id"])

    assert dialect_insert._generate_cache_key() is None
    assert ours._generate_cache_key() is not None


def test_a_column_the_table_lacks_is_refused_when_the_statement_is_built() -> None:
    with pytest.raises(KeyError, match="colour"):
        insert_unless_present(things, ["id", "colour"], conflict=["id"])


def test_many_rows_go_in_one_statement_that_says_which_went_in() -> None:
    insert = InsertManyUnlessPresent(things, ["id", "body"], conflict="id")

    assert str(insert.statement) == (
        "INSERT INTO things (id, body) SELECT * FROM unnest(CAST(:id AS TEXT[]), "
        "CAST(:body AS JSONB[])) ON CONFLICT (id) DO NOTHING RETURNING id"
    )
