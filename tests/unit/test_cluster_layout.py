"""What ``make up KAFKA_BROKERS=N KAFKA_AUTH=scram`` would configure, checked without a JVM."""

from __future__ import annotations

from itertools import combinations
from pathlib import Path

import pytest

from deploy.localstack.cluster import KafkaCluster, Scram, Topology
from deploy.localstack.declared import PORT_SLOTS
from deploy.localstack.errors import StackError
from deploy.localstack.profiles import MAX_KAFKA_BROKERS, PROFILES

SCRAM = Scram("sagakit", "client-secret", "sagakit-broker", "broker-secret")


def every_port(profile_name: str) -> set[int]:
    profile = PROFILES[profile_name]
    kafka = {
        port for node in range(1, MAX_KAFKA_BROKERS + 1) for port in profile.kafka_node_ports(node)
    }
    # Every slot a service may declare, not just today's: a new service must not collide.
    services = {profile.first_service_port + offset for offset in range(PORT_SLOTS)}
    return kafka | services | {profile.postgres_port, profile.redis_port}


def test_the_dev_stacks_three_nodes_take_the_next_ports_after_9092() -> None:
    dev = PROFILES["dev"]
    assert [dev.kafka_node_ports(n) for n in (1, 2, 3)] == [
        (9092, 9093),
        (9094, 9095),
        (9096, 9097),
    ]


@pytest.mark.parametrize(("one", "other"), list(combinations(sorted(PROFILES), 2)))
def test_no_two_profiles_share_a_port_even_with_the_most_brokers(one: str, other: str) -> None:
    assert every_port(one).isdisjoint(every_port(other))


def test_within_a_profile_the_largest_cluster_takes_no_other_parts_port() -> None:
    for profile in PROFILES.values():
        kafka = [p for n in range(1, MAX_KAFKA_BROKERS + 1) for p in profile.kafka_node_ports(n)]
        others = {profile.postgres_port, profile.redis_port, profile.first_service_port}
        assert len(set(kafka)) == len(kafka) and others.isdisjoint(kafka)


@pytest.mark.parametrize(
    ("brokers", "auth", "error"),
    [(0, "none", "KAFKA_BROKERS=0"), (6, "none", "KAFKA_BROKERS=6"), (3, "kerberos", "KAFKA_AUTH")],
)
def test_a_topology_out_of_range_is_refused_with_what_to_use(
    brokers: int, auth: str, error: str
) -> None:
    with pytest.raises(StackError, match=error):
        Topology(brokers, auth)  # type: ignore[arg-type]


def test_each_topology_keeps_its_own_data_and_one_plain_broker_keeps_the_old_folder() -> None:
    names = {Topology(n, a).folder_name for n in (1, 3) for a in ("none", "scram")}
    assert names == {"kafka", "kafka-3", "kafka-scram", "kafka-3-scram"}
    single = KafkaCluster(Path("/s/kafka"), [(9092, 9093)])
    assert single.nodes[0].data == Path("/s/kafka/data")


def test_three_nodes_form_one_quorum_and_replicate_everything_three_times() -> None:
    cluster = KafkaCluster(Path("/s"), [(1, 2), (3, 4), (5, 6)])
    settings = cluster._settings(cluster.node(2))
    assert settings["node.id"] == "2"
    assert settings["controller.quorum.voters"] == "1@127.0.0.1:2,2@127.0.0.1:4,3@127.0.0.1:6"
    assert "controller.quorum.bootstrap.servers" not in settings
    assert settings["log.dirs"] == "/s/node-2/data"
    for key in (
        "default.replication.factor",
        "offsets.topic.replication.factor",
        "transaction.state.log.replication.factor",
        "share.coordinator.state.topic.replication.factor",
    ):
        assert settings[key] == "3", key
    for key in ("min.insync.replicas", "transaction.state.log.min.isr"):
        assert settings[key] == "2", key
    assert cluster.env() == {
        "SAGAKIT_KAFKA_BOOTSTRAP": "127.0.0.1:1,127.0.0.1:3,127.0.0.1:5",
        "SAGAKIT_TOPIC_REPLICATION_FACTOR": "3",
        "SAGAKIT_TOPIC_MIN_INSYNC_REPLICAS": "2",
    }


def test_one_node_is_its_own_quorum_and_keeps_the_single_broker_defaults() -> None:
    cluster = KafkaCluster(Path("/s"), [(9092, 9093)])
    settings = cluster._settings(cluster.nodes[0])
    assert settings["controller.quorum.bootstrap.servers"] == "127.0.0.1:9093"
    assert settings["offsets.topic.replication.factor"] == "1"
    assert cluster.env() == {"SAGAKIT_KAFKA_BOOTSTRAP": "127.0.0.1:9092"}


def test_scram_authenticates_clients_and_brokers_and_leaves_the_controller_plain() -> None:
    cluster = KafkaCluster(Path("/s"), [(1, 2), (3, 4), (5, 6)], SCRAM)
    settings = cluster._settings(cluster.node(1))
    assert settings["listeners"] == "SASL_PLAINTEXT://127.0.0.1:1,CONTROLLER://127.0.0.1:2"
    assert settings["inter.broker.listener.name"] == "SASL_PLAINTEXT"
    assert settings["listener.security.protocol.map"] == (
        "CONTROLLER:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT"
    )
    assert settings["sasl.mechanism.inter.broker.protocol"] == "SCRAM-SHA-512"
    jaas = settings["listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config"]
    assert 'username="sagakit-broker" password="broker-secret";' in jaas
    assert SCRAM.format_arguments() == [
        "--add-scram",
        "SCRAM-SHA-512=[name=sagakit,password=client-secret]",
        "--add-scram",
        "SCRAM-SHA-512=[name=sagakit-broker,password=broker-secret]",
    ]
    env = cluster.env()
    assert env["SAGAKIT_KAFKA_SECURITY_PROTOCOL"] == "SASL_PLAINTEXT"
    assert (env["SAGAKIT_KAFKA_SASL_USERNAME"], env["SAGAKIT_KAFKA_SASL_PASSWORD"]) == (
        "sagakit",
        "client-secret",
    )


def test_scram_credentials_are_generated_once_and_kept_private(tmp_path: Path) -> None:
    first = Scram.kept_in(tmp_path)
    assert Scram.kept_in(tmp_path) == first
    assert first.password != first.broker_password
    assert (tmp_path / "scram.json").stat().st_mode & 0o077 == 0
