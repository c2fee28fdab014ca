"""What one chaos run does. Each field has a ``CHAOS_*`` variable and a command-line option
(``make chaos CHAOS_ORDERS=10000`` or ``python -m deploy.chaos run --orders 10000``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from deploy.chaos.schedule import FAULT_KINDS
from deploy.localstack.profiles import PROFILES, REPO_ROOT

__all__ = ["ChaosConfig"]


class ChaosConfig(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="CHAOS_", extra="ignore", frozen=True, use_attribute_docstrings=True
    )

    env_file: Path = PROFILES["chaos"].state_dir / "stack.env"
    """The stack.env of the system to break (make chaos: the chaos profile's)."""
    results_dir: Path = REPO_ROOT / "chaos" / "results"
    """Where the JSON report goes."""
    orders: int = Field(default=2000, ge=1)
    """Sagas to start."""
    rate: float = Field(default=15.0, gt=0)
    """Orders placed per second."""
    concurrency: int = Field(default=16, ge=1)
    """Order requests unanswered at once, at most."""
    faults: Annotated[tuple[str, ...], NoDecode] = FAULT_KINDS
    """Infrastructure fault kinds, comma-separated: instance, broker, redis, postgres."""
    rounds: int | None = Field(default=None, ge=1)
    """Rounds of faults (each: the instance kills, a broker kill, a Redis stop, a PostgreSQL
    kill); default one per 2,000 orders."""
    instance_kills: int = Field(default=5, ge=0)
    """Service instances SIGKILLed per round (in turn)."""
    redis_down_s: float = Field(default=20.0, ge=0)
    """How long Redis stays stopped."""
    transient_every_s: float = Field(default=5.0, gt=0)
    """How often a transient fault is injected (on one instance in turn)."""
    recovery_timeout_s: float = Field(default=180.0, gt=0)
    """How long to wait for every instance to be ready again after a fault."""
    give_up_s: float = Field(default=240.0, gt=0)
    """How long one order is sent again while no answer comes."""
    settle_timeout_s: float = Field(default=600.0, gt=0)
    """How long verify waits for the sagas to end after the last fault."""
    seed: int = 1
    """The order mix's random seed."""

    @field_validator("faults", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("faults")
    @classmethod
    def _known(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = sorted(set(value) - set(FAULT_KINDS))
        if unknown:
            raise ValueError(f"unknown fault kinds {unknown}: use {', '.join(FAULT_KINDS)}")
        return value

    @property
    def fault_rounds(self) -> int:
        return self.rounds or max(1, round(self.orders / 2000))
