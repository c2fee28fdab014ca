"""``python -m deploy.soak``: one soak run (settings from ``SOAK_*`` variables), or
``python -m deploy.soak --show FILE`` to print an earlier run's table again."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

from pydantic import ValidationError

from deploy.soak.config import SoakConfig
from deploy.soak.report import plot, print_report, write_report
from deploy.soak.run import soak


def main(argv: list[str]) -> int:
    if argv[:1] == ["--show"] and len(argv) == 2:
        print_report(json.loads(Path(argv[1]).read_text()))
        return 0
    if argv:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    try:
        config = SoakConfig()
    except ValidationError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    doc = soak(config)
    path = write_report(doc, config.results_dir)
    print()
    print_report(doc)
    print(f"report: {path}")
    if config.plot:
        print(f"plot: {plot(doc, config.results_dir)}")
    return 0 if doc["ok"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
