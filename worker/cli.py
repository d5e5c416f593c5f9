"""`python -m worker ...`: argument parsing and wiring."""

import argparse
import asyncio
import os
import signal
import sys
from pathlib import Path

from worker import embedded, migrate
from worker.db import redact

DEFAULT_PGDATA = Path(".data/pg")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m worker")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("run", help="migrate (embedded database only) and run the worker")
    args = parser.parse_args(argv)
    if args.command == "run":
        return _run()
    return 2


def _run() -> int:
    url = os.environ.get("DATABASE_URL")
    server = None
    if not url:
        # SIGTERM would skip atexit handlers; turn it into a normal exit so the server stops.
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        server = embedded.start(Path(os.environ.get("EMBEDDED_PGDATA", DEFAULT_PGDATA)))
        url = server.url("postgres")
        asyncio.run(migrate.upgrade(url))
    try:
        print(f"worker ready: database {redact(url)} at revision {migrate.head_revision()}")
        return 0
    finally:
        if server is not None:
            server.stop()
