"""The stack's Kafka: the user's (``SAGAKIT_KAFKA_BOOTSTRAP``), or KRaft nodes of our own.

``up`` runs one node by default; ``--kafka-brokers 3`` (``make up KAFKA_BROKERS=3``) a
cluster of three with replication factor 3 and ``min.insync.replicas`` 2, and
``--kafka-auth scram`` (``KAFKA_AUTH=scram``) SASL/SCRAM on the broker listener; the nodes
themselves are :mod:`deploy.localstack.cluster`'s. Node 1 listens on the profile's Kafka
ports, node ``i`` on those plus ``2*(i-1)`` (``Profile.kafka_node_ports``). Which topology
runs is recorded in the state dir, so ``down`` and ``status`` need no options, and an ``up``
asking for another topology than the running one says so instead of mixing them.
"""

from __future__ import annotations

from deploy.localstack import prereqs
from deploy.localstack.cluster import (
    KafkaCluster,
    Topology,
    record_topology,
    recorded_topology,
    wait_for_broker,
)
from deploy.localstack.component import Context, Plan, StatusRow
from deploy.localstack.errors import StackError
from deploy.localstack.kafkajars import KAFKA_VERSION, jars_complete, jars_dir

__all__ = ["KAFKA_VERSION", "Kafka", "jars_dir"]

READY_TIMEOUT = 30.0


class Kafka:
    """The broker(s): ``SAGAKIT_KAFKA_BOOTSTRAP`` when set, else our own JVMs."""

    name = "kafka"

    def plan(self, ctx: Context) -> Plan:
        if bootstrap := ctx.environ.get("SAGAKIT_KAFKA_BOOTSTRAP"):
            if ctx.kafka is not None and ctx.kafka != Topology():
                raise StackError(
                    f"SAGAKIT_KAFKA_BOOTSTRAP={bootstrap} names your own Kafka, so "
                    f"KAFKA_BROKERS/KAFKA_AUTH ({ctx.kafka.describe()}) cannot apply: "
                    "unset one of them"
                )
            return Plan.yours(bootstrap)
        running = _running_topology(ctx)
        if running is not None and ctx.kafka is not None and running != ctx.kafka:
            raise StackError(
                f"Kafka of the {ctx.profile.name} stack runs with {running.describe()}, not "
                f"{ctx.kafka.describe()}: stop it first (make down PROFILE={ctx.profile.name})"
            )
        cluster = _cluster(ctx)
        alive = cluster.running()
        if len(alive) == len(cluster.nodes):
            return Plan.running()
        hint = "stop that process, or set SAGAKIT_KAFKA_BOOTSTRAP to use your own broker"
        problems = [prereqs.java_problem()]
        if not jars_complete():
            problems.append(prereqs.maven_problem())
        missing = [node for node in cluster.nodes if node.node_id not in alive]
        return Plan.start(
            prereqs.Needs(
                ports=tuple((port, hint) for n in missing for port in (n.port, n.controller_port)),
                problems=tuple(problem for problem in problems if problem),
            )
        )

    def start(self, ctx: Context) -> None:
        # Recorded first: `down` stops a cluster whose start failed half-way too.
        record_topology(ctx.profile.state_dir, _topology(ctx))
        _cluster(ctx).start()

    def ready(self, ctx: Context) -> None:
        if bootstrap := ctx.environ.get("SAGAKIT_KAFKA_BOOTSTRAP"):
            wait_for_broker({"bootstrap_servers": bootstrap}, READY_TIMEOUT)
        else:
            wait_for_broker(_cluster(ctx).client_options(), READY_TIMEOUT)

    def env(self, ctx: Context) -> dict[str, str]:
        if bootstrap := ctx.environ.get("SAGAKIT_KAFKA_BOOTSTRAP"):
            return {"SAGAKIT_KAFKA_BOOTSTRAP": bootstrap}
        return _cluster(ctx).env()

    def stop(self, ctx: Context) -> None:
        # SIGTERM is Kafka's clean shutdown: it flushes logs and leaves the quorum.
        KafkaCluster.of_profile(ctx.profile).stop()
        record_topology(ctx.profile.state_dir, None)

    def status(self, ctx: Context) -> list[StatusRow]:
        cluster = KafkaCluster.of_profile(ctx.profile)
        auth = ", SASL/SCRAM" if cluster.scram else ""
        rows = []
        for node in cluster.nodes:
            name = self.name if len(cluster.nodes) == 1 else f"{self.name}-{node.node_id}"
            where = f"{node.address} (controller :{node.controller_port}{auth})"
            pid = cluster.pid(node.node_id)
            rows.append(StatusRow(name, where, pid, "running" if pid else "stopped"))
        return rows


def _running_topology(ctx: Context) -> Topology | None:
    """The recorded topology, if any of its nodes still runs."""
    recorded = recorded_topology(ctx.profile.state_dir)
    if recorded is not None and KafkaCluster.for_profile(ctx.profile, recorded).running():
        return recorded
    return None


def _topology(ctx: Context) -> Topology:
    """What this ``up`` runs: what was asked for, else what runs, else one plain broker."""
    return ctx.kafka or _running_topology(ctx) or Topology()


def _cluster(ctx: Context) -> KafkaCluster:
    return KafkaCluster.for_profile(ctx.profile, _topology(ctx))
