"""Shared by the benchmarks: a throwaway migrated database on the test server or the embedded one."""

import contextlib
import os
import sys
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.harness import PgServer, start_test_server
from worker import migrate


@contextlib.asynccontextmanager
async def throwaway_database(label: str, *, migrated: bool = True) -> AsyncIterator[str]:
    """A fresh database (TEST_DATABASE_URL's server, else embedded), dropped afterwards."""
    os.environ.setdefault("TMPDIR", tempfile.gettempdir())
    server: PgServer = start_test_server()
    name = server.new_name(f"bench_{label}")
    url = await server.create_database(name)
    try:
        if migrated:
            await migrate.upgrade(url)
        yield url
    finally:
        await server.drop_database(name)
        server.stop()
