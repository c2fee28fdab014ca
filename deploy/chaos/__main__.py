"""``python -m deploy.chaos run [options]`` | ``python -m deploy.chaos verify --manifest FILE``."""

from __future__ import annotations

import sys

from deploy.chaos.cli import chaos_main, verify_main

COMMANDS = {"run": chaos_main, "verify": verify_main}


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in COMMANDS:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    return COMMANDS[argv[0]](argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
