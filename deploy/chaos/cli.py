"""The command line of chaos and verify: plain functions of ``argv`` returning an exit code.

``python -m deploy.chaos run [options]`` and ``python -m deploy.chaos verify --manifest
REPORT`` call them; so can any other command line (``sagakit chaos`` / ``sagakit verify``)
by passing its remaining arguments along.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from pathlib import Path

from pydantic import ValidationError

from deploy.chaos.config import ChaosConfig
from deploy.chaos.endpoints import Endpoints
from deploy.chaos.manifest import Manifest
from deploy.chaos.report import print_report, verify_table, write_report
from deploy.chaos.run import run_chaos
from deploy.chaos.verify import verify

__all__ = ["chaos_main", "verify_main"]


def _quiet() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    # aiokafka and asyncio log every refused connection while the broker is down; the run
    # reports what matters itself.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)


def chaos_main(argv: list[str] | None = None) -> int:
    """Run the sagas under faults, verify, print the table, write the JSON; 1 on violations."""
    parser = argparse.ArgumentParser(
        prog="python -m deploy.chaos run",
        description="N sagas while instances, the broker, Redis and PostgreSQL are killed; "
        "then verify. Every option is also a CHAOS_* variable (--orders: CHAOS_ORDERS).",
    )
    for name, field in ChaosConfig.model_fields.items():
        parser.add_argument(
            f"--{name.replace('_', '-')}",
            dest=name,
            metavar=name.upper(),
            help=f"{field.description or ''} (CHAOS_{name.upper()}, default {field.default})",
        )
    given = {k: v for k, v in vars(parser.parse_args(argv)).items() if v is not None}
    try:
        config = ChaosConfig(**given)
        endpoints = Endpoints.from_env_file(config.env_file)
    except (ValidationError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    _quiet()
    report = asyncio.run(run_chaos(config, endpoints))
    doc = report.to_json()
    path = write_report(doc, config.results_dir)
    print()
    print_report(doc)
    print(f"report: {path}")
    return 0 if report.ok else 1


def verify_main(argv: list[str] | None = None) -> int:
    """Check the invariants over what a run's manifest names; 1 on any violation."""
    parser = argparse.ArgumentParser(
        prog="python -m deploy.chaos verify",
        description="Check every saga terminal, money and stock conserved, no double effect "
        "and agreeing statuses, over what a chaos run put in (its report's manifest).",
    )
    parser.add_argument("--manifest", type=Path, required=True, help="a chaos run's JSON report")
    parser.add_argument(
        "--env-file",
        type=Path,
        default=ChaosConfig.model_fields["env_file"].default,
        help="the system's stack.env (default: the chaos profile's)",
    )
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for rest")
    parser.add_argument("--json", type=Path, help="write the verify report here too")
    args = parser.parse_args(argv)
    try:
        endpoints = Endpoints.from_env_file(args.env_file)
        manifest = Manifest.from_json(json.loads(args.manifest.read_text())["manifest"])
    except (FileNotFoundError, KeyError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if not endpoints.has_databases:
        print(f"error: {args.env_file} names no SAGAKIT_<SERVICE>_DATABASE_URL", file=sys.stderr)
        return 2
    _quiet()
    report = asyncio.run(verify(endpoints, manifest, args.timeout))
    doc = report.to_json()
    if args.json:
        args.json.write_text(json.dumps(doc, indent=1) + "\n")
    from rich.console import Console

    Console().print(verify_table(doc))
    rest = "at rest" if report.settled else f"NOT at rest after {args.timeout:g} s"
    busy = report.extra.get("busy_at_deadline")
    print(
        f"{report.violations} violation(s); {rest}{f' ({busy})' if busy else ''}; "
        f"outcomes {report.outcomes}"
    )
    return 0 if report.ok else 1
