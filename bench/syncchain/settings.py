"""The settings of one synchronous-chain process, from ``BENCH_SYNC_*`` variables."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["CALL_TIMEOUT_S", "SyncSettings"]

# How long the order endpoint waits for each downstream call: a common choice for
# service-to-service calls, and below the clients' own timeout so that they see its 503.
CALL_TIMEOUT_S = 5.0


class SyncSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="BENCH_SYNC_", extra="ignore", frozen=True)

    database_url: str
    payment_url: str = ""
    inventory_url: str = ""
    shipping_url: str = ""
    call_timeout_s: float = Field(default=CALL_TIMEOUT_S, gt=0)
