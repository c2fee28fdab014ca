"""What one soak run does. Each field has a ``SOAK_*`` variable (``make soak SOAK_RATE=50
SOAK_MINUTES=120``); tests build the config directly."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from deploy.localstack.profiles import PROFILES, REPO_ROOT

__all__ = ["SoakConfig"]


class SoakConfig(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="SOAK_", extra="ignore", frozen=True, use_attribute_docstrings=True
    )

    profile: str = "soak"
    """The local stack profile started for the run and stopped after it."""
    rate: float = Field(default=100.0, gt=0)
    """Orders offered per second, steadily."""
    minutes: float = Field(default=30.0, gt=0)
    """How long orders are offered."""
    sample_s: float = Field(default=10.0, gt=0)
    """How often every series is sampled."""
    retention_s: int = Field(default=120, ge=1)
    """The services' retention windows (sent outbox rows, inbox rows, terminal sagas'
    timelines), compressed from days to this many seconds so every purge runs many times."""
    idempotency_ttl_s: int = Field(default=120, ge=1)
    """How long Redis remembers a processed event during the run."""
    replay_every_s: float = Field(default=60.0, gt=0)
    """How often a record that is not an event is produced, and the dead letters of the one
    before it replayed (each poison is replayed twice: it must add at most one dead letter
    per replayed copy)."""
    business_faults: bool = False
    """Also inject the business faults of ``make chaos`` (declines, failed reservations and
    shipments, transient errors). Off by default: while a fault may fire on a record, its
    run is processed one record at a time (so the fault can strike one record), which is not
    the path production takes and costs several times the CPU; with them on, offer a few
    tens of orders per second on two cores, not 100. The order mix alone still declines
    (customers who run out, or have no account) and runs out of stock (scarce and unknown
    skus), and sagas held up past their deadline are cancelled and compensated."""
    concurrency: int = Field(default=256, ge=1)
    """Order requests unanswered at once, at most."""
    give_up_s: float = Field(default=60.0, gt=0)
    """How long one order is sent again while it gets no answer, a 5xx or a 503."""
    settle_timeout_s: float = Field(default=300.0, gt=0)
    """How long verify waits for the sagas to end after the last order."""
    warmup_fraction: float = Field(default=1 / 3, gt=0, lt=1)
    """The first part of the run left out of the growth verdict (caches, pools, JIT of the
    broker); the verdict compares the last third with the middle third."""
    flat_tolerance: float = Field(default=0.10, ge=0)
    """How much a bounded series may grow from the middle third to the last third."""
    p99_drift_limit: float = Field(default=1.5, gt=0)
    """The p99 of the sagas accepted in the last third may be at most this many times the
    middle third's (and the relay's publish latency per row likewise, + 1 ms)."""
    behind_limit_s: float = Field(default=10.0, gt=0)
    """How far behind its schedule the load may fall (a system that cannot take the rate
    makes it fall behind): past it, or with any order given up, the run fails."""
    plot: bool = True
    """Write a PNG of the series beside the JSON (needs matplotlib: make soak installs it)."""
    results_dir: Path = REPO_ROOT / "soak" / "results"
    """Where the JSON report and the PNG go."""
    seed: int = 1
    """The order mix's random seed."""

    @property
    def env_file(self) -> Path:
        return PROFILES[self.profile].state_dir / "stack.env"

    @property
    def orders(self) -> int:
        return max(1, round(self.rate * self.minutes * 60))

    def service_settings(self) -> dict[str, str]:
        """The services' settings for the run: retention windows and the idempotency keys'
        lifetime compressed to the run's scale."""
        seconds = str(self.retention_s)
        return {
            "SAGAKIT_OUTBOX_RETENTION_SECONDS": seconds,
            "SAGAKIT_INBOX_RETENTION_SECONDS": seconds,
            "SAGAKIT_TIMELINE_RETENTION_SECONDS": seconds,
            # A purge pass a quarter of a window: rows live at most a window and a quarter.
            "SAGAKIT_PURGE_INTERVAL_SECONDS": str(max(1.0, self.retention_s / 4)),
            "SAGAKIT_IDEMPOTENCY_TTL_SECONDS": str(self.idempotency_ttl_s),
        }
