"""GET /analytics/summary refuses a window it would not read fast: ``since`` at most 7 days
ago, refused before any database is touched."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import cast

import httpx
import pytest
from fastapi import FastAPI

from services.analytics.api import MAX_WINDOW, router
from shared.storage.db import UnitOfWorkFactory

pytestmark = pytest.mark.unit


def no_database() -> None:
    raise AssertionError("the summary opened a unit of work for a window it refuses")


async def test_a_window_older_than_seven_days_is_refused_before_reading() -> None:
    app = FastAPI()
    app.include_router(router(cast(UnitOfWorkFactory, no_database)))
    since = (datetime.now(UTC) - MAX_WINDOW - timedelta(minutes=1)).isoformat()
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://analytics") as http:
        response = await http.get("/analytics/summary", params={"since": since})
    assert response.status_code == 422
    assert "more than 7 days ago" in response.json()["detail"]
