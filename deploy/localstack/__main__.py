"""``python -m deploy.localstack up|down|status [--profile dev|test|bench] [--json]``.

``hold NAME`` has the supervisor stop instance ``NAME`` and keep it stopped (to rebuild the
analytics read model, say: its group must have no members); ``release NAME`` lets it start
again (``deploy.localstack.supervisor``).

``up`` also takes ``--kafka-brokers N`` (a KRaft cluster of N nodes instead of one) and
``--kafka-auth scram`` (SASL/SCRAM on the brokers; the credentials go to stack.env); ``make
up KAFKA_BROKERS=3 KAFKA_AUTH=scram`` passes them. ``down`` and ``status`` find out by
themselves what runs. ``status --json`` prints the table as JSON (for ``sagakit stack``).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import asdict

from deploy.localstack.cluster import AUTH_CHOICES, Topology
from deploy.localstack.component import StatusRow
from deploy.localstack.errors import StackError
from deploy.localstack.profiles import PROFILES
from deploy.localstack.services import processes
from deploy.localstack.stack import down, status, up
from deploy.localstack.supervisor import hold, release


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m deploy.localstack",
        description="Run Kafka, PostgreSQL and Redis on this machine, without Docker.",
    )
    parser.add_argument("command", choices=("up", "down", "status", "hold", "release"))
    parser.add_argument("instance", nargs="?", help="hold, release: the instance's name")
    parser.add_argument(
        "--profile",
        choices=sorted(PROFILES),
        default="dev",
        help="dev: what `make up` runs (default); test: the test suite's own; bench: make bench's",
    )
    parser.add_argument("--json", action="store_true", help="status: print JSON, not a table")
    parser.add_argument(
        "--kafka-brokers",
        type=int,
        metavar="N",
        help="up: Kafka nodes to run (default 1; 3 gives replication factor 3, min ISR 2)",
    )
    parser.add_argument(
        "--kafka-auth",
        choices=AUTH_CHOICES,
        help="up: scram runs Kafka with SASL/SCRAM-SHA-512 (default none)",
    )
    args = parser.parse_args(argv)
    # While a broker starts, aiokafka logs every refused connection; the readiness wait
    # reports the one failure that matters itself.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    try:
        if args.command == "up":
            kafka = None
            if args.kafka_brokers is not None or args.kafka_auth is not None:
                kafka = Topology(args.kafka_brokers or 1, args.kafka_auth or "none")
            up(args.profile, kafka=kafka)
        elif args.command == "down":
            down(args.profile)
        elif args.command in ("hold", "release"):
            hold_or_release(args.command, args.profile, args.instance)
        elif args.json:
            print(json.dumps([asdict(row) for row in status(args.profile)], indent=2))
        else:
            print_table(status(args.profile))
    except StackError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


def hold_or_release(command: str, profile: str, instance: str | None) -> None:
    names = [i.name for i in processes()]
    if instance not in names:
        raise StackError(f"{command} which instance? One of {', '.join(names)}")
    folder = PROFILES[profile].state_dir / "services"
    (hold if command == "hold" else release)(folder, instance)
    print(f"{instance} {'held: the supervisor stops it' if command == 'hold' else 'released'}")


def print_table(rows: list[StatusRow]) -> None:
    """component, where, pid, state: aligned columns."""
    table = [("component", "where", "pid", "state")] + [
        (row.component, row.where, str(row.pid or "-"), row.state) for row in rows
    ]
    widths = [max(len(cell) for cell in column) for column in zip(*table, strict=True)]
    for line in table:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        )


if __name__ == "__main__":
    sys.exit(main())
