"""``python -m bench [options]``: run the benchmark against a running stack (``make bench``
starts and stops the bench profile's around it), print the table, write the results.

Every option is also a ``BENCH_*`` variable (``--orders`` is ``BENCH_ORDERS``); ``--show FILE``
prints the table of an earlier run instead.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import logging
import sys
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from bench.config import BenchSettings
from bench.report import render
from bench.results import write_results
from bench.run import SyncPlacement, run
from bench.target import Target

SYNC_DATABASE_PREFIX = "sagakit_bench_sync"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    for name, field in BenchSettings.model_fields.items():
        default = (
            field.default
            if not isinstance(field.default, tuple)
            else ",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in field.default)
        )
        parser.add_argument(
            f"--{name.replace('_', '-')}",
            dest=name,
            metavar=name.upper(),
            help=f"{field.description or ''} (BENCH_{name.upper()}, default {default})",
        )
    parser.add_argument("--show", type=Path, metavar="FILE", help="print an earlier run's table")
    return parser


def _uvloop() -> Any | None:
    """uvloop when it is installed (the bench extra installs it): the load generator and the
    transport limit's relays run on the fastest loop there is, so that neither the load nor
    the limit the platform is compared with is held back by its loop. The services run on
    asyncio's (``shared.app.serve``: it accepts a burst of connections at once)."""
    try:
        return importlib.import_module("uvloop")
    except ImportError:
        return None


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.show:
        print(render(json.loads(args.show.read_text())))
        return 0
    given = {k: v for k, v in vars(args).items() if v is not None and k != "show"}
    try:
        settings = BenchSettings(**given)
    except ValidationError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    # aiokafka logs every retry of a request to a topic created a moment ago; the benchmark
    # reports failures itself (chains not completed, scenarios failed).
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    try:
        target = Target.from_env_file(settings.env_file)
    except FileNotFoundError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    placement = SyncPlacement(SYNC_DATABASE_PREFIX, settings.env_file.parent / "syncchain")
    uvloop = _uvloop()
    benchmark = run(settings, target, placement, "uvloop" if uvloop else "asyncio")
    doc = uvloop.run(benchmark) if uvloop else asyncio.run(benchmark)
    data, picture = write_results(doc, settings.results_dir)
    print()
    print(render(doc))
    print(
        f"\nresults: {data}"
        + (f"\nplot:    {picture}" if picture else " (no plot: matplotlib missing)")
    )
    return 1 if doc["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
