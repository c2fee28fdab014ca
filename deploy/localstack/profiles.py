"""The stacks one checkout can run side by side.

``dev`` is what ``make up`` starts, ``test`` is what the test suite starts, ``bench`` is what
``make bench`` starts and stops again, ``chaos`` what ``make chaos`` starts, breaks and stops,
``chaos-test`` the one the chaos smoke test does the same to (so the two can run at once),
``soak`` what ``make soak`` runs for half an hour and more, ``soak-test`` its two-minute
variant in the test suite. They share no port, no state folder and no PostgreSQL cluster, so
running the tests, the benchmark, a chaos run or a soak never stops, reuses or pollutes the
dev stack (nor the benchmark's load the tests' timings).

Kafka may run as a cluster (``make up KAFKA_BROKERS=3``): node 1 takes the profile's two Kafka
ports, node ``i`` those plus ``2*(i-1)``, so the dev stack's three nodes listen on
9092/9093, 9094/9095 and 9096/9097, the test stack's on 19092-19097 and the benchmark's on
29092-29097. The profiles' ports lie 10000 apart, so even ``MAX_KAFKA_BROKERS`` nodes of one
profile never reach another profile's ports (nor its PostgreSQL, Redis or services).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from deploy.localstack.declared import DECLARED_FIRST_PORT, declared_services

__all__ = ["HOST", "MAX_KAFKA_BROKERS", "PROFILES", "REPO_ROOT", "Profile"]

HOST = "127.0.0.1"
# The package is installed editable (pip install -e), so this is the checkout's root.
REPO_ROOT = Path(__file__).resolve().parents[2]
# Node 5 of the dev stack listens on 9100/9101: well below anything else of a profile.
MAX_KAFKA_BROKERS = 5


@dataclass(frozen=True)
class Profile:
    """Where one stack keeps its state and which ports it listens on."""

    name: str
    state_dir: Path
    kafka_port: int
    kafka_controller_port: int
    postgres_port: int
    redis_port: int
    first_service_port: int
    runs_services: bool = True
    """Whether ``up`` starts the services too; the end-to-end tests start their own."""

    @property
    def postgres_cluster(self) -> str:
        """The profile's own Debian cluster: never the distribution's ``main``."""
        return f"sagakit-{self.name}"

    def kafka_node_ports(self, node_id: int) -> tuple[int, int]:
        """(broker, controller) port of Kafka node ``node_id`` (1..MAX_KAFKA_BROKERS)."""
        if not 1 <= node_id <= MAX_KAFKA_BROKERS:
            raise ValueError(f"Kafka node ids run from 1 to {MAX_KAFKA_BROKERS}, not {node_id}")
        step = 2 * (node_id - 1)
        return self.kafka_port + step, self.kafka_controller_port + step

    def service_port(self, service: str) -> int:
        """The HTTP port of a service: its declared port's offset from the first one."""
        offsets = {s.name: s.offset for s in declared_services()}
        return self.first_service_port + offsets[service]


PROFILES = {
    "dev": Profile(
        name="dev",
        state_dir=REPO_ROOT / ".stack",
        kafka_port=9092,
        kafka_controller_port=9093,
        postgres_port=5432,
        redis_port=6379,
        first_service_port=DECLARED_FIRST_PORT,
    ),
    "test": Profile(
        name="test",
        state_dir=REPO_ROOT / ".stack-test",
        kafka_port=19092,
        kafka_controller_port=19093,
        postgres_port=15432,
        redis_port=16379,
        first_service_port=18000,
        runs_services=False,
    ),
    "bench": Profile(
        name="bench",
        state_dir=REPO_ROOT / ".stack-bench",
        kafka_port=29092,
        kafka_controller_port=29093,
        postgres_port=25432,
        redis_port=26379,
        first_service_port=28000,
    ),
    # The chaos runs kill their broker, Redis and PostgreSQL: servers of their own, always.
    "chaos": Profile(
        name="chaos",
        state_dir=REPO_ROOT / ".stack-chaos",
        kafka_port=49092,
        kafka_controller_port=49093,
        postgres_port=49432,
        redis_port=49379,
        first_service_port=49000,
    ),
    # make soak runs for half an hour with its retention windows compressed to seconds; the
    # soak smoke test (2 minutes, in make test) on a stack of its own beside it.
    "soak": Profile(
        name="soak",
        state_dir=REPO_ROOT / ".stack-soak",
        kafka_port=24092,
        kafka_controller_port=24093,
        postgres_port=24432,
        redis_port=24379,
        first_service_port=24000,
    ),
    "soak-test": Profile(
        name="soak-test",
        state_dir=REPO_ROOT / ".stack-soak-test",
        kafka_port=23092,
        kafka_controller_port=23093,
        postgres_port=23432,
        redis_port=23379,
        first_service_port=23000,
    ),
    "chaos-test": Profile(
        name="chaos-test",
        state_dir=REPO_ROOT / ".stack-chaos-test",
        kafka_port=49192,
        kafka_controller_port=49193,
        postgres_port=49433,
        redis_port=49380,
        first_service_port=49010,
    ),
}
