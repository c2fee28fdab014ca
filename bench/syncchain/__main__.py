"""``python -m bench.syncchain order|payment|inventory|shipping --port P``: one service of the
synchronous chain, configured by ``BENCH_SYNC_*`` variables (``bench.syncchain.chain`` sets
them)."""

from __future__ import annotations

import argparse
import logging

import uvicorn

from bench.syncchain.apps import APPS
from bench.syncchain.settings import SyncSettings


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.syncchain")
    parser.add_argument("service", choices=sorted(APPS))
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(message)s")
    # The same server settings as the real services (shared.app.serve), so neither side gains.
    uvicorn.run(
        APPS[args.service](SyncSettings()),
        host="127.0.0.1",
        port=args.port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=5,
    )


if __name__ == "__main__":
    main()
