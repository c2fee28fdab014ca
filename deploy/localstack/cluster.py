"""Kafka nodes on this machine: one, or a cluster of several, each a KRaft broker and controller.

A :class:`KafkaCluster` is a folder and the ports of its nodes. Node ``i`` (1..N) keeps its
``server.properties``, log dir, log and pid file in its own folder; every node is formatted
with the same cluster id the first time it starts. One node runs as a standalone quorum (the
layout ``make up`` always had); several form a static quorum of all of them
(``controller.quorum.voters``), so a three-node cluster keeps working with one node down.

On several nodes, topics get replication factor N and ``min.insync.replicas`` N-1 by default,
and so do the internal topics (consumer offsets, transaction state), so that an acknowledged
write (``acks=all``) survives the loss of any one broker.

With :class:`Scram`, clients and brokers authenticate with SASL/SCRAM-SHA-512 on the broker
listener (the users are created when the storage is formatted: KRaft keeps credentials in its
metadata log, so they must exist before the first broker talks to another). The controller
listener stays PLAINTEXT: KRaft controllers cannot check SCRAM credentials (they are the ones
that hold them), and that listener serves no produce or fetch.

The same object stops, kills and restarts single nodes and asks who leads what, for the
failure tests and ``make chaos``::

    cluster = KafkaCluster.of_profile(PROFILES["dev"])   # what `make up KAFKA_BROKERS=3` runs
    node = await cluster.leader_of_most_partitions()
    cluster.kill(node)                                   # SIGKILL, no clean shutdown
    cluster.restart(node)                                # start it again, same data
    await cluster.wait_in_sync()                         # every partition has all replicas in ISR
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import secrets
import signal
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Literal

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from deploy.localstack import ports
from deploy.localstack.errors import StackError
from deploy.localstack.kafkajars import ensure_jars, java_command
from deploy.localstack.processes import (
    is_alive,
    run,
    running_pid,
    start_server,
    tail,
    terminate,
)
from deploy.localstack.profiles import HOST, MAX_KAFKA_BROKERS, Profile
from deploy.localstack.readiness import wait_until_answers

__all__ = [
    "JVM_OPTIONS",
    "KafkaCluster",
    "KafkaNode",
    "PartitionState",
    "Scram",
    "Topology",
]

Auth = Literal["none", "scram"]
AUTH_CHOICES: tuple[Auth, ...] = ("none", "scram")

# The official scripts' options, with a heap that suits a laptop and a 2-core CI machine.
# The heap is touched at start (AlwaysPreTouch): otherwise its pages become resident as G1
# first uses them, and the broker's memory grew for 20 minutes of a soak (370 -> 668 MB,
# then flat), growth the soak cannot tell from a leak.
JVM_OPTIONS = (
    "-Xmx512m",
    "-Xms512m",
    "-XX:+AlwaysPreTouch",
    "-XX:+UseG1GC",
    "-XX:MaxGCPauseMillis=20",
    "-XX:InitiatingHeapOccupancyPercent=35",
    "-XX:+ExplicitGCInvokesConcurrent",
    "-Djava.awt.headless=true",
)
START_TIMEOUT = 90.0
IN_SYNC_TIMEOUT = 120.0
METADATA_TIMEOUT = 30.0
STOP_TIMEOUT = 20.0
BIND_ATTEMPTS = 3
TOPOLOGY_FILE = "kafka-topology.json"


@dataclass(frozen=True)
class Topology:
    """How many nodes and which authentication: what ``make up KAFKA_BROKERS= KAFKA_AUTH=`` sets."""

    brokers: int = 1
    auth: Auth = "none"

    def __post_init__(self) -> None:
        if not 1 <= self.brokers <= MAX_KAFKA_BROKERS:
            raise StackError(
                f"KAFKA_BROKERS={self.brokers}: use 1 (the default) to {MAX_KAFKA_BROKERS}"
            )
        if self.auth not in AUTH_CHOICES:
            raise StackError(f"KAFKA_AUTH={self.auth!r}: use one of {', '.join(AUTH_CHOICES)}")

    @property
    def folder_name(self) -> str:
        """Each topology has its own data under the state dir, so switching loses none:
        ``kafka`` (one node, as before), ``kafka-3``, ``kafka-scram``, ``kafka-3-scram``."""
        name = "kafka" if self.brokers == 1 else f"kafka-{self.brokers}"
        return f"{name}-scram" if self.auth == "scram" else name

    def describe(self) -> str:
        nodes = "1 broker" if self.brokers == 1 else f"{self.brokers} brokers"
        return nodes + (", SASL/SCRAM" if self.auth == "scram" else "")


@dataclass(frozen=True)
class Scram:
    """SASL/SCRAM credentials: the clients' user, and the brokers' own for inter-broker traffic."""

    username: str
    password: str
    broker_username: str
    broker_password: str
    mechanism: str = "SCRAM-SHA-512"

    @classmethod
    def kept_in(cls, folder: Path) -> Scram:
        """The credentials of this folder: generated on first use, then kept (mode 0600)."""
        path = folder / "scram.json"
        if not path.exists():
            folder.mkdir(parents=True, exist_ok=True)
            path.touch(mode=0o600)
            secret = {
                "username": "sagakit",
                "password": secrets.token_urlsafe(24),
                "broker_username": "sagakit-broker",
                "broker_password": secrets.token_urlsafe(24),
            }
            path.write_text(json.dumps(secret, indent=1) + "\n")
        values = json.loads(path.read_text())
        return cls(**values)

    def format_arguments(self) -> list[str]:
        """``kafka-storage format`` arguments that create both users in the metadata log."""
        return [
            argument
            for name, password in (
                (self.username, self.password),
                (self.broker_username, self.broker_password),
            )
            for argument in ("--add-scram", f"{self.mechanism}=[name={name},password={password}]")
        ]


@dataclass(frozen=True)
class KafkaNode:
    """One KRaft node (broker and controller in one JVM): its id, ports and folder."""

    node_id: int
    port: int
    controller_port: int
    folder: Path

    @property
    def address(self) -> str:
        return f"{HOST}:{self.port}"

    @property
    def properties(self) -> Path:
        return self.folder / "server.properties"

    @property
    def data(self) -> Path:
        return self.folder / "data"

    @property
    def log(self) -> Path:
        return self.folder / "kafka.log"

    @property
    def pidfile(self) -> Path:
        return self.folder / "kafka.pid"


@dataclass(frozen=True)
class PartitionState:
    """One partition as the cluster's metadata shows it (leader -1: none right now)."""

    topic: str
    partition: int
    leader: int
    replicas: tuple[int, ...]
    isr: tuple[int, ...]


class KafkaCluster:
    """N local Kafka nodes in ``folder``, on the given (broker, controller) ports."""

    def __init__(
        self,
        folder: Path,
        node_ports: Sequence[tuple[int, int]],
        scram: Scram | None = None,
        *,
        jvm_options: Sequence[str] = JVM_OPTIONS,
    ) -> None:
        if not node_ports:
            raise StackError("a Kafka cluster needs at least one node")
        self.folder = folder
        self.scram = scram
        self.jvm_options = tuple(jvm_options)
        single = len(node_ports) == 1
        # One node keeps its files in the folder itself: the layout of the single broker that
        # `make up` always ran, so a stack formatted before keeps its data.
        self.nodes = tuple(
            KafkaNode(i, port, controller, folder if single else folder / f"node-{i}")
            for i, (port, controller) in enumerate(node_ports, start=1)
        )

    @classmethod
    def for_profile(cls, profile: Profile, topology: Topology) -> KafkaCluster:
        """The cluster a profile runs with ``topology``, on the profile's ports."""
        folder = profile.state_dir / topology.folder_name
        node_ports = [profile.kafka_node_ports(i) for i in range(1, topology.brokers + 1)]
        scram = Scram.kept_in(folder) if topology.auth == "scram" else None
        return cls(folder, node_ports, scram)

    @classmethod
    def of_profile(cls, profile: Profile) -> KafkaCluster:
        """The cluster ``up`` last started for this profile (one plain node if none)."""
        return cls.for_profile(profile, recorded_topology(profile.state_dir) or Topology())

    # -- where it answers --------------------------------------------------------------------

    @property
    def bootstrap(self) -> str:
        """Every node's address, comma-separated: ``SAGAKIT_KAFKA_BOOTSTRAP``."""
        return ",".join(node.address for node in self.nodes)

    @property
    def replication_factor(self) -> int:
        """What topics get here: every node holds a copy (at most 3)."""
        return min(len(self.nodes), 3)

    @property
    def min_insync_replicas(self) -> int:
        """One less than the replicas: an acked write is on two brokers, and one may be down."""
        return max(1, self.replication_factor - 1)

    def env(self) -> dict[str, str]:
        """The stack.env lines services need to use this cluster as it is meant to be used."""
        env = {"SAGAKIT_KAFKA_BOOTSTRAP": self.bootstrap}
        if len(self.nodes) > 1:
            env["SAGAKIT_TOPIC_REPLICATION_FACTOR"] = str(self.replication_factor)
            env["SAGAKIT_TOPIC_MIN_INSYNC_REPLICAS"] = str(self.min_insync_replicas)
        if self.scram:
            env |= {
                "SAGAKIT_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
                "SAGAKIT_KAFKA_SASL_MECHANISM": self.scram.mechanism,
                "SAGAKIT_KAFKA_SASL_USERNAME": self.scram.username,
                "SAGAKIT_KAFKA_SASL_PASSWORD": self.scram.password,
            }
        return env

    def client_options(self) -> dict[str, Any]:
        """aiokafka connection options (bootstrap, and the credentials when SCRAM is on)."""
        options: dict[str, Any] = {"bootstrap_servers": self.bootstrap}
        if self.scram:
            options |= {
                "security_protocol": "SASL_PLAINTEXT",
                "sasl_mechanism": self.scram.mechanism,
                "sasl_plain_username": self.scram.username,
                "sasl_plain_password": self.scram.password,
            }
        return options

    def node(self, node_id: int) -> KafkaNode:
        for node in self.nodes:
            if node.node_id == node_id:
                return node
        raise StackError(f"no Kafka node {node_id}: this cluster has nodes 1..{len(self.nodes)}")

    def ports(self) -> list[int]:
        return [port for node in self.nodes for port in (node.port, node.controller_port)]

    # -- processes ---------------------------------------------------------------------------

    def pid(self, node_id: int) -> int | None:
        """The node's JVM, if it runs (its command line names the node's properties file)."""
        node = self.node(node_id)
        return running_pid(node.pidfile, str(node.properties))

    def running(self) -> list[int]:
        """Ids of the nodes whose JVM runs."""
        return [node.node_id for node in self.nodes if self.pid(node.node_id)]

    def start(self, timeout: float = START_TIMEOUT) -> None:
        """Start every node that is not running and return once each answers metadata
        requests. A cluster's nodes start together: none is ready before a quorum is up."""
        jars = ensure_jars()
        pids = {
            node.node_id: self.pid(node.node_id) or self._launch(node, jars) for node in self.nodes
        }
        for node in self.nodes:
            for attempt in range(1, BIND_ATTEMPTS + 1):
                try:
                    wait_for_broker(
                        self.client_options() | {"bootstrap_servers": node.address},
                        timeout,
                        alive=partial(is_alive, pids[node.node_id]),
                        log=node.log,
                    )
                    break
                except StackError:
                    lost_port = not is_alive(pids[node.node_id]) and _lost_its_port(node)
                    if attempt == BIND_ATTEMPTS or not lost_port:
                        raise
                # Ports above 32768 are also the kernel's ephemeral range: an outgoing
                # connection took the node's port just before it bound it. Wait, retry.
                ports.wait_until_free(
                    (node.port, node.controller_port), f"Kafka node {node.node_id}"
                )
                pids[node.node_id] = self._launch(node, jars)

    def restart(self, node_id: int) -> int:
        """Start a stopped or killed node again, on its data; return its pid at once.

        It does not wait: ``await wait_in_sync()`` says when it has caught up.
        """
        if pid := self.pid(node_id):
            raise StackError(f"Kafka node {node_id} still runs (pid {pid}): kill or stop it first")
        node = self.node(node_id)
        ports.wait_until_free((node.port, node.controller_port), f"Kafka node {node_id}")
        return self._launch(node, ensure_jars())

    def kill(self, node_id: int, timeout: float = 10.0) -> None:
        """SIGKILL the node (a crash: no controlled shutdown) and wait until it is gone."""
        pid = self.pid(node_id)
        if pid is None:
            raise StackError(f"Kafka node {node_id} is not running")
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + timeout
        while is_alive(pid):
            if time.monotonic() > deadline:
                raise StackError(f"Kafka node {node_id} (pid {pid}) survived SIGKILL")
            time.sleep(0.05)

    def stop_node(self, node_id: int) -> None:
        """SIGTERM: a controlled shutdown (leadership moves away and the node leaves every
        ISR), then wait until nothing listens on its ports. The controlled shutdown needs a
        quorum of controllers, its own included: the last node of a cluster left running
        waits a minute for one and is then killed; ``stop()`` stops them all at once.
        """
        node = self.node(node_id)
        if pid := self.pid(node_id):
            terminate(pid, f"Kafka node {node_id}")
        node.pidfile.unlink(missing_ok=True)
        ports.wait_until_closed((node.port, node.controller_port), f"Kafka node {node_id}")

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Stop every node cleanly, all at once; kill those still running after ``timeout``.

        A node's controlled shutdown waits for the active controller to confirm it. When the
        other nodes' controllers stop first, the quorum is gone and that node would wait for
        minutes: it is killed instead, which loses nothing (its log is written; it recovers
        its segments on the next start, as after any crash).
        """
        pids = {node.node_id: pid for node in self.nodes if (pid := self.pid(node.node_id))}
        for pid in pids.values():
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for node_id, pid in pids.items():
            while is_alive(pid):
                if time.monotonic() > deadline:
                    print(
                        f"Kafka node {node_id} still waited for its controlled shutdown after "
                        f"{timeout:.0f} s (the controller quorum had stopped): killing it",
                        flush=True,
                    )
                    self.kill(node_id)
                    break
                time.sleep(0.1)
        for node in self.nodes:
            node.pidfile.unlink(missing_ok=True)
        ports.wait_until_closed(self.ports(), "Kafka")

    # -- who leads what ----------------------------------------------------------------------

    async def partitions(
        self, topics: Iterable[str] | None = None, timeout: float = METADATA_TIMEOUT
    ) -> list[PartitionState]:
        """Leader, replicas and ISR of every partition of ``topics`` (default: all topics,
        internal ones included), from the metadata of any node that answers.

        Right after a node dies the others still list it for a few seconds (until the
        controller fences it), and a request sent its way fails: such failures are retried
        for up to ``timeout`` seconds.
        """
        names = None if topics is None else list(topics)
        deadline = time.monotonic() + timeout
        while True:
            try:
                described = await self._describe_topics(names)
                break
            except KafkaError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.5)
        return [
            PartitionState(
                topic["topic"],
                partition["partition"],
                partition["leader"],
                tuple(partition["replicas"]),
                tuple(partition["isr"]),
            )
            for topic in described
            for partition in topic["partitions"]
        ]

    async def _describe_topics(self, names: list[str] | None) -> list[Any]:
        admin = AIOKafkaAdminClient(**self.client_options(), request_timeout_ms=5000)
        try:
            await admin.start()
            described: list[Any] = await admin.describe_topics(names)
            return described
        finally:
            await admin.close()

    async def leader_of_most_partitions(self, topics: Iterable[str] | None = None) -> int:
        """The node id that leads the most partitions of ``topics`` (default: all)."""
        leaders = Counter(p.leader for p in await self.partitions(topics) if p.leader >= 0)
        if not leaders:
            raise StackError("no partition has a leader: are there topics, is the cluster up?")
        return leaders.most_common(1)[0][0]

    async def wait_in_sync(
        self, topics: Iterable[str] | None = None, timeout: float = IN_SYNC_TIMEOUT
    ) -> list[PartitionState]:
        """Return once every node is a registered broker again and every partition of
        ``topics`` has a leader and all its replicas in its ISR (a restarted node has caught
        up); fail with the laggards after ``timeout`` seconds."""
        every_node = {node.node_id for node in self.nodes}

        def lagging(brokers: set[int], partitions: list[PartitionState]) -> object:
            # A node that is not running never catches up: say so now, not at the deadline.
            for node in self.nodes:
                if self.pid(node.node_id) is None:
                    raise StackError(
                        f"Kafka node {node.node_id} is not running (restart it first); "
                        f"last lines of {node.log}:\n{tail(node.log, 10)}"
                    )
            if missing := every_node - brokers:
                return f"brokers {sorted(missing)} not registered"
            return [p for p in partitions if p.leader < 0 or set(p.isr) != set(p.replicas)]

        return await self._wait_for(topics, lagging, "fully in sync", timeout)

    async def wait_fenced(
        self, node_id: int, topics: Iterable[str] | None = None, timeout: float = IN_SYNC_TIMEOUT
    ) -> list[PartitionState]:
        """Return once the cluster has dropped ``node_id`` (it died or stopped): it is no
        registered broker, and no partition of ``topics`` has it as leader or in its ISR.

        After a SIGKILL that takes ``broker.session.timeout.ms`` (9 s): until then the
        others still count the node in, and ``acks=all`` writes wait for it.
        """

        def lagging(brokers: set[int], partitions: list[PartitionState]) -> object:
            if node_id in brokers:
                return f"broker {node_id} still registered"
            return [p for p in partitions if p.leader == node_id or node_id in p.isr]

        return await self._wait_for(topics, lagging, f"without node {node_id}", timeout)

    async def _wait_for(
        self,
        topics: Iterable[str] | None,
        lagging: Callable[[set[int], list[PartitionState]], object],
        what: str,
        timeout: float,
    ) -> list[PartitionState]:
        """Poll the metadata until ``lagging`` finds nothing (an empty answer)."""
        names = None if topics is None else list(topics)
        deadline = time.monotonic() + timeout
        seen: object = "no answer yet"
        while True:
            try:
                brokers = await self.brokers()
                partitions = await self.partitions(names, timeout=0)
            except Exception as error:  # a node still starting or just gone: ask again
                seen = f"{type(error).__name__}: {error}"
            else:
                seen = lagging(brokers, partitions)
                # Named topics that are not listed do not exist yet: wait for them too.
                if not seen and (partitions or names is None):
                    return partitions
            if time.monotonic() > deadline:
                raise StackError(f"Kafka partitions not {what} within {timeout:.0f} s: {seen}")
            await asyncio.sleep(0.5)

    async def brokers(self) -> set[int]:
        """Ids of the brokers the cluster's metadata lists (registered and not fenced)."""
        admin = AIOKafkaAdminClient(**self.client_options(), request_timeout_ms=5000)
        try:
            await admin.start()
            cluster = await admin.describe_cluster()
        finally:
            await admin.close()
        return {int(broker["node_id"]) for broker in cluster["brokers"]}

    # -- internals ---------------------------------------------------------------------------

    def _launch(self, node: KafkaNode, jars: Path) -> int:
        node.data.mkdir(parents=True, exist_ok=True)
        self._write_properties(node)
        self._format_once(node, jars)
        argv = [*java_command(jars, *self.jvm_options), "kafka.Kafka", str(node.properties)]
        pid = start_server(argv, node.folder, "kafka")
        # For a moment the new process's command line is not java's yet, and pid() would
        # call the node stopped: return once it is (or once the process has died).
        deadline = time.monotonic() + 5.0
        while self.pid(node.node_id) is None and is_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.01)
        return pid

    def _write_properties(self, node: KafkaNode) -> None:
        path = node.properties
        path.touch(mode=0o600)  # it holds the brokers' SCRAM password when SCRAM is on
        path.write_text("".join(f"{key}={value}\n" for key, value in self._settings(node).items()))

    def _settings(self, node: KafkaNode) -> dict[str, str]:
        listener = "SASL_PLAINTEXT" if self.scram else "PLAINTEXT"
        listeners = f"{listener}://{node.address},CONTROLLER://{HOST}:{node.controller_port}"
        replicas, min_isr = str(self.replication_factor), str(self.min_insync_replicas)
        settings = {
            "process.roles": "broker,controller",
            "node.id": str(node.node_id),
            **self._quorum(),
            "listeners": listeners,
            "advertised.listeners": listeners,
            "inter.broker.listener.name": listener,
            "controller.listener.names": "CONTROLLER",
            "listener.security.protocol.map": f"CONTROLLER:PLAINTEXT,{listener}:{listener}",
            "log.dirs": str(node.data),
            # Topics (auto-created or created without a factor) and the internal topics get a
            # copy on every node, and an acked write is on two of them.
            "default.replication.factor": replicas,
            "min.insync.replicas": min_isr,
            "offsets.topic.replication.factor": replicas,
            "transaction.state.log.replication.factor": replicas,
            "transaction.state.log.min.isr": min_isr,
            "share.coordinator.state.topic.replication.factor": replicas,
            "share.coordinator.state.topic.min.isr": min_isr,
            # Consumer groups start at once instead of after the default 3 s.
            "group.initial.rebalance.delay.ms": "0",
            # Brokers beside everything else on a small machine: Kafka's defaults (3 network
            # and 8 I/O threads) are sized for a server of its own.
            "num.network.threads": "2",
            "num.io.threads": "2",
        }
        if self.scram:
            mechanism = self.scram.mechanism
            jaas = (
                "org.apache.kafka.common.security.scram.ScramLoginModule required "
                f'username="{self.scram.broker_username}" '
                f'password="{self.scram.broker_password}";'
            )
            settings |= {
                "sasl.enabled.mechanisms": mechanism,
                "sasl.mechanism.inter.broker.protocol": mechanism,
                f"listener.name.{listener.lower()}.{mechanism.lower()}.sasl.jaas.config": jaas,
            }
        return settings

    def _quorum(self) -> dict[str, str]:
        if len(self.nodes) == 1:
            only = self.nodes[0]
            return {"controller.quorum.bootstrap.servers": f"{HOST}:{only.controller_port}"}
        voters = ",".join(f"{n.node_id}@{HOST}:{n.controller_port}" for n in self.nodes)
        return {"controller.quorum.voters": voters}

    def _format_once(self, node: KafkaNode, jars: Path) -> None:
        """Format the node's log dir the first time, with the cluster's one id."""
        if (node.data / "meta.properties").exists():
            return
        id_file = self.folder / "cluster-id"
        if not id_file.exists():
            id_file.write_text(base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode())
        cluster_id = id_file.read_text().strip()
        # One node is its own quorum; several have theirs in controller.quorum.voters.
        quorum = ["--standalone"] if len(self.nodes) == 1 else []
        credentials = self.scram.format_arguments() if self.scram else []
        run(
            [
                *java_command(jars),
                "kafka.tools.StorageTool",
                # One argument: an id may begin with "-" (base64url), which the tool's parser
                # would take for an option when it stands on its own (seen in CI).
                *("format", f"--cluster-id={cluster_id}", "-c", str(node.properties)),
                *quorum,
                *credentials,
            ],
            what=f"formatting the log dir of Kafka node {node.node_id}",
        )


def wait_for_broker(
    client_options: dict[str, Any],
    timeout: float,
    *,
    alive: Callable[[], bool] | None = None,
    log: Path | None = None,
) -> None:
    """Return once a metadata request (describe_cluster) with ``client_options`` succeeds."""

    async def describe_cluster() -> None:
        admin = AIOKafkaAdminClient(**client_options, request_timeout_ms=5000)
        try:
            await admin.start()
            await admin.describe_cluster()
        finally:
            await admin.close()

    where = client_options["bootstrap_servers"]
    wait_until_answers(f"Kafka at {where}", describe_cluster, timeout, alive=alive, log=log)


def _lost_its_port(node: KafkaNode) -> bool:
    """Whether the node exited because its port was taken when it started."""
    try:
        return "Address already in use" in node.log.read_text(errors="replace")
    except OSError:
        return False


def recorded_topology(state_dir: Path) -> Topology | None:
    """The topology ``up`` started in this state dir, while it runs (None: none recorded)."""
    try:
        values = json.loads((state_dir / TOPOLOGY_FILE).read_text())
    except FileNotFoundError:
        return None
    return Topology(int(values["brokers"]), values["auth"])


def record_topology(state_dir: Path, topology: Topology | None) -> None:
    """Remember (or, with None, forget) which topology runs, for ``down`` and ``status``."""
    path = state_dir / TOPOLOGY_FILE
    if topology is None:
        path.unlink(missing_ok=True)
        return
    state_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"brokers": topology.brokers, "auth": topology.auth}) + "\n")
