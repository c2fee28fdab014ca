"""The local stack without Docker: a real Kafka broker, PostgreSQL and Redis on this machine.

Run it as ``python -m deploy.localstack up|down|status [--profile dev|test|bench]`` (``make up``
does, ``make bench`` with ``bench``); the test suite calls :func:`up` and :func:`down` with the
``test`` profile. ``up --kafka-brokers 3`` (``make up KAFKA_BROKERS=3``) runs Kafka as a
cluster of three KRaft nodes with replication factor 3 and ``min.insync.replicas`` 2, and
``up --kafka-auth scram`` (``KAFKA_AUTH=scram``) with SASL/SCRAM; :mod:`.cluster` runs the
nodes, and kills and restarts single ones for failure tests.
"""

from deploy.localstack.errors import StackError
from deploy.localstack.profiles import PROFILES, Profile
from deploy.localstack.stack import UpReport, down, status, up

__all__ = ["PROFILES", "Profile", "StackError", "UpReport", "down", "status", "up"]
