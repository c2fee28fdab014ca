"""A single-node Kafka broker (KRaft, broker and controller in one JVM) built from Maven jars."""

from __future__ import annotations

import base64
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path

from aiokafka.admin import AIOKafkaAdminClient

from deploy.localstack import ports, prereqs
from deploy.localstack.component import Context, Plan, StatusRow
from deploy.localstack.errors import StackError
from deploy.localstack.processes import is_alive, run, running_pid, start_server, terminate
from deploy.localstack.profiles import HOST, REPO_ROOT
from deploy.localstack.readiness import wait_until_answers

__all__ = ["KAFKA_VERSION", "Kafka", "jars_dir", "wait_for_broker"]

KAFKA_VERSION = "4.1.1"  # keep in step with deploy/kafka/pom.xml
POM = REPO_ROOT / "deploy" / "kafka" / "pom.xml"
# The official scripts' options, with a heap that suits a laptop and a 2-core CI machine.
JVM_OPTIONS = (
    "-Xmx512m",
    "-Xms512m",
    "-XX:+UseG1GC",
    "-XX:MaxGCPauseMillis=20",
    "-XX:InitiatingHeapOccupancyPercent=35",
    "-XX:+ExplicitGCInvokesConcurrent",
    "-Djava.awt.headless=true",
)
MAVEN_FETCH = (
    *("mvn", "-q", "-B", "-Dstyle.color=never"),
    *("-f", str(POM), "dependency:copy-dependencies", "-DincludeScope=runtime"),
)
START_TIMEOUT = 90.0
COMPLETE_MARKER = ".complete"


def jars_dir() -> Path:
    """Where the broker's jars are cached, shared by every checkout and profile."""
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "sagakit" / f"kafka-{KAFKA_VERSION}"


def wait_for_broker(
    bootstrap: str,
    timeout: float,
    *,
    alive: Callable[[], bool] | None = None,
    log: Path | None = None,
) -> None:
    """Return once a metadata request (describe_cluster) to ``bootstrap`` succeeds."""

    async def describe_cluster() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5000)
        try:
            await admin.start()
            await admin.describe_cluster()
        finally:
            await admin.close()

    wait_until_answers(f"Kafka at {bootstrap}", describe_cluster, timeout, alive=alive, log=log)


class Kafka:
    """The broker: ``SAGAKIT_KAFKA_BOOTSTRAP`` when set, else our own JVM."""

    name = "kafka"

    def plan(self, ctx: Context) -> Plan:
        if bootstrap := ctx.environ.get("SAGAKIT_KAFKA_BOOTSTRAP"):
            return Plan.yours(bootstrap)
        if self._pid(ctx):
            return Plan.running()
        hint = "stop that process, or set SAGAKIT_KAFKA_BOOTSTRAP to use your own broker"
        problems = [prereqs.java_problem()]
        if not _jars_complete():
            problems.append(prereqs.maven_problem())
        return Plan.start(
            prereqs.Needs(
                ports=((ctx.profile.kafka_port, hint), (ctx.profile.kafka_controller_port, hint)),
                problems=tuple(problem for problem in problems if problem),
            )
        )

    def start(self, ctx: Context) -> None:
        ctx.state("kafka", "data").mkdir(parents=True, exist_ok=True)
        jars = _ensure_jars()
        properties = self._write_properties(ctx)
        self._format_once(ctx, jars, properties)
        argv = [*_java(jars, *JVM_OPTIONS), "kafka.Kafka", str(properties)]
        pid = start_server(argv, ctx.state("kafka"), "kafka")
        log = ctx.state("kafka", "kafka.log")
        wait_for_broker(self._bootstrap(ctx), START_TIMEOUT, alive=lambda: is_alive(pid), log=log)

    def ready(self, ctx: Context) -> None:
        wait_for_broker(self.env(ctx)["SAGAKIT_KAFKA_BOOTSTRAP"], 30.0)

    def env(self, ctx: Context) -> dict[str, str]:
        bootstrap = ctx.environ.get("SAGAKIT_KAFKA_BOOTSTRAP") or self._bootstrap(ctx)
        return {"SAGAKIT_KAFKA_BOOTSTRAP": bootstrap}

    def stop(self, ctx: Context) -> None:
        pid = self._pid(ctx)
        if pid:
            # SIGTERM is Kafka's clean shutdown: it flushes logs and leaves the quorum.
            terminate(pid, "Kafka")
        self._pidfile(ctx).unlink(missing_ok=True)
        ports.wait_until_free((ctx.profile.kafka_port, ctx.profile.kafka_controller_port), "Kafka")

    def status(self, ctx: Context) -> list[StatusRow]:
        pid = self._pid(ctx)
        where = f"{self._bootstrap(ctx)} (controller :{ctx.profile.kafka_controller_port})"
        return [StatusRow(self.name, where, pid, "running" if pid else "stopped")]

    def _bootstrap(self, ctx: Context) -> str:
        return f"{HOST}:{ctx.profile.kafka_port}"

    def _pidfile(self, ctx: Context) -> Path:
        return ctx.state("kafka") / "kafka.pid"

    def _pid(self, ctx: Context) -> int | None:
        # Our broker's command line names this profile's server.properties.
        return running_pid(self._pidfile(ctx), str(ctx.state("kafka") / "server.properties"))

    def _write_properties(self, ctx: Context) -> Path:
        port, controller = ctx.profile.kafka_port, ctx.profile.kafka_controller_port
        settings = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.bootstrap.servers": f"{HOST}:{controller}",
            "listeners": f"PLAINTEXT://{HOST}:{port},CONTROLLER://{HOST}:{controller}",
            "advertised.listeners": f"PLAINTEXT://{HOST}:{port},CONTROLLER://{HOST}:{controller}",
            "inter.broker.listener.name": "PLAINTEXT",
            "controller.listener.names": "CONTROLLER",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            "log.dirs": str(ctx.state("kafka", "data")),
            # One node: internal topics cannot have more replicas than that.
            "offsets.topic.replication.factor": "1",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            # Consumer groups start at once instead of after the default 3 s.
            "group.initial.rebalance.delay.ms": "0",
            # One broker beside everything else on a small machine: Kafka's defaults (3
            # network and 8 I/O threads) are sized for a server of its own.
            "num.network.threads": "2",
            "num.io.threads": "2",
        }
        path = ctx.state("kafka") / "server.properties"
        path.write_text("".join(f"{key}={value}\n" for key, value in settings.items()))
        return path

    def _format_once(self, ctx: Context, jars: Path, properties: Path) -> None:
        """Format the log dir the first time; the cluster id stays in the state dir."""
        if (ctx.state("kafka", "data") / "meta.properties").exists():
            return
        id_file = ctx.state("kafka") / "cluster-id"
        if not id_file.exists():
            id_file.write_text(base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode())
        cluster_id = id_file.read_text().strip()
        storage_tool = [*_java(jars), "kafka.tools.StorageTool"]
        run(
            [*storage_tool, "format", "-t", cluster_id, "-c", str(properties), "--standalone"],
            what="formatting the Kafka log dir",
        )


def _java(jars: Path, *options: str) -> list[str]:
    """The java command line, up to the main class, with only the broker's jars on it."""
    java = prereqs.find_java()
    assert java is not None  # plan() checked it before anything started
    return [str(java), *options, "-cp", f"{jars}/*"]


def _jars_complete() -> bool:
    return (jars_dir() / COMPLETE_MARKER).exists()


def _ensure_jars() -> Path:
    """Fetch the broker's jars with Maven once; later runs use the cache."""
    target = jars_dir()
    if _jars_complete():
        return target
    print(f"fetching the Kafka {KAFKA_VERSION} jars into {target} (once)...", flush=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    # Download next to the target and rename: a cache dir is complete or absent, even when
    # two stacks fetch at the same time or a fetch is interrupted.
    fetching = Path(tempfile.mkdtemp(prefix=f".kafka-{KAFKA_VERSION}-", dir=target.parent))
    try:
        run(
            [*MAVEN_FETCH, f"-DoutputDirectory={fetching}"],
            what="fetching the Kafka jars with Maven",
        )
        if not any(fetching.glob("kafka_2.13-*.jar")):
            raise StackError(f"Maven ran but left no Kafka jar in {fetching}")
        (fetching / COMPLETE_MARKER).touch()
        if not _jars_complete():  # else another fetch finished first: keep theirs
            shutil.rmtree(target, ignore_errors=True)  # an interrupted fetch's leftover
            fetching.rename(target)
    finally:
        shutil.rmtree(fetching, ignore_errors=True)
    return target
