"""What one run does: its sizes, rates and durations. Each has a ``BENCH_*`` variable and a
command-line option (``make bench BENCH_ORDERS=2000`` or ``python -m bench --orders 2000``);
the defaults are the full benchmark."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from deploy.localstack.profiles import PROFILES, REPO_ROOT

__all__ = ["DEFAULT_SCENARIOS", "SCENARIOS", "BenchSettings"]

SCENARIOS = ("closed", "open", "outage", "transport", "sync", "stall")
# The partition stall starts a three-broker cluster of its own and runs for minutes: asked
# for by name (make bench BENCH_SCENARIOS=stall), not part of the default run.
DEFAULT_SCENARIOS = SCENARIOS[:-1]


class BenchSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="BENCH_", extra="ignore", frozen=True, use_attribute_docstrings=True
    )

    env_file: Path = PROFILES["bench"].state_dir / "stack.env"
    """The stack.env of the system to measure."""
    results_dir: Path = REPO_ROOT / "bench" / "results"
    """Where the JSON and the PNG go."""
    scenarios: Annotated[tuple[str, ...], NoDecode] = DEFAULT_SCENARIOS
    """Which scenarios run, comma-separated (outage runs for each design that runs; stall
    only when named)."""

    customers: int = Field(default=500, ge=1)
    """Customers the orders are spread over (each with a balance that never runs out)."""
    skus: int = Field(default=100, ge=2)
    """Skus the orders are spread over, two per order (stock that never runs out)."""
    clients: int = Field(default=32, ge=1)
    """Concurrent keep-alive clients of the closed loops (event-driven and synchronous)."""
    warmup_orders: int = Field(default=200, ge=0)
    """Orders sent first and not measured, to each design."""
    orders: int = Field(default=10_000, ge=1)
    """Orders of the event-driven closed loop."""
    saga_timeout_s: float = Field(default=240.0, gt=0)
    """How long to wait for a scenario's sagas after its last order was answered."""

    open_rates: Annotated[tuple[float, ...], NoDecode] = (10.0, 100.0, 500.0)
    """Orders per second offered by the open-loop steps, comma-separated."""
    open_seconds: float = Field(default=30.0, gt=0)
    """How long each open-loop step offers its rate."""
    open_max_in_flight: int = Field(default=2000, ge=1)
    """Unanswered requests beyond which the open loop skips (and counts) an order."""
    drain_timeout_s: float = Field(default=45.0, gt=0)
    """How long to wait after an open-loop step (or an outage) for its sagas to end."""

    transport_chains: int = Field(default=30_000, ge=1)
    """Five-hop chains sent through bare Kafka relays for the transport limit."""
    transport_in_flight: int = Field(default=5_000, ge=1)
    """Chains under way at once in that run."""
    transport_unloaded_chains: int = Field(default=200, ge=1)
    """Chains sent one at a time first: the transport's latency without queues."""

    sync_seconds: float = Field(default=20.0, gt=0)
    """How long the synchronous chain's closed loop runs."""
    outage_rate: float = Field(default=20.0, gt=0)
    """Orders per second offered before, during and after the payment outage."""
    outage_seconds: float = Field(default=10.0, gt=0)
    """How long payment is stopped."""
    outage_margin_s: float = Field(default=5.0, ge=0)
    """Steady orders before the stop, and again after the resume."""

    stall_rate: float = Field(default=60.0, gt=0)
    """Events per second emitted through the outbox in the partition-stall scenario."""
    stall_partitions: int = Field(default=6, ge=2)
    """Partitions of that scenario's topic (one of them loses its leader)."""
    stall_seconds: float = Field(default=60.0, gt=0)
    """How long that partition has no leader."""
    stall_margin_s: float = Field(default=20.0, gt=0)
    """Steady events before the broker is killed (after as long again to warm up), and again
    after it is back."""

    @field_validator("scenarios", "open_rates", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        # "closed,open" from the environment or the command line; lists as they are.
        return tuple(part.strip() for part in value.split(",")) if isinstance(value, str) else value

    @field_validator("scenarios")
    @classmethod
    def _known(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = sorted(set(value) - set(SCENARIOS))
        if unknown:
            raise ValueError(f"unknown scenarios {unknown}: use {', '.join(SCENARIOS)}")
        return value
