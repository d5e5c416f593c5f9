"""A throwaway primary and its streaming replica on 127.0.0.1, for failover drills.

Built with the server's own tools (`initdb`, `pg_ctl`, `pg_basebackup -R`), never touching the
shared test server. PostgreSQL refuses to run as root: as root every tool runs as the
`postgres` system user, in a temp dir that user owns. `ReplicaUnavailable` says why a drill
cannot run here (no server binaries, no such user); the tests skip with it.
"""

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tests.harness import unused_port

RUN_AS = "postgres"
TOOLS = ("initdb", "pg_ctl", "pg_basebackup", "postgres")
# Small and quick: a drill's server needs few connections and no durability beyond the OS's
# page cache (an immediate stop kills the server, not the machine, so fsync buys nothing here).
SERVER_OPTIONS = (
    "-c listen_addresses=127.0.0.1 -c max_connections=60 -c shared_buffers=16MB -c fsync=off"
    " -c wal_level=replica -c max_wal_senders=4 -c hot_standby=on"
)


class ReplicaUnavailable(RuntimeError):
    """A primary with a streaming replica cannot be built here (the reason says why)."""


def server_bin_dir() -> Path:
    """The directory with PostgreSQL's server tools (PG_BIN_DIR, else Debian's newest)."""
    candidates = [os.environ["PG_BIN_DIR"]] if os.environ.get("PG_BIN_DIR") else []
    candidates += sorted(
        glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[-2]), reverse=True
    )
    for directory in candidates:
        if all(os.access(Path(directory) / tool, os.X_OK) for tool in TOOLS):
            return Path(directory)
    raise ReplicaUnavailable(
        "no PostgreSQL server binaries (initdb, pg_ctl, pg_basebackup) in PG_BIN_DIR or "
        "/usr/lib/postgresql/*/bin (Debian: apt-get install postgresql)"
    )


@dataclass
class Node:
    """One server of the pair: its data directory and port."""

    name: str
    datadir: Path
    port: int

    def url(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"


@dataclass
class Cluster:
    """A primary and its streaming replica; `stop()` stops whichever still runs and deletes
    both."""

    bindir: Path
    workdir: Path
    primary: Node
    replica: Node

    def failover_url(self, database: str) -> str:
        """Both hosts, primary first, and only a writable one accepted: what a worker follows."""
        return (
            f"postgresql://postgres@127.0.0.1:{self.primary.port},127.0.0.1:{self.replica.port}"
            f"/{database}?target_session_attrs=read-write"
        )

    def start(self, node: Node) -> None:
        self._run(
            "pg_ctl",
            "start",
            "-w",
            "-t",
            "60",
            "-D",
            str(node.datadir),
            "-l",
            str(self.workdir / f"{node.name}.log"),
            "-o",
            f"{SERVER_OPTIONS} -p {node.port} -k {self.workdir}",
        )

    def stop_immediately(self, node: Node) -> None:
        """`pg_ctl stop -m immediate`: every server process quits at once, no checkpoint, as in
        a crash of the server (what has not reached the replica is lost with it)."""
        self._run("pg_ctl", "stop", "-m", "immediate", "-w", "-D", str(node.datadir))

    def promote(self, node: Node) -> None:
        self._run("pg_ctl", "promote", "-w", "-t", "60", "-D", str(node.datadir))

    def base_backup(self) -> None:
        """The replica from the running primary: `-R` writes standby.signal and the
        primary_conninfo, `-X stream` takes the WAL written meanwhile."""
        self._run(
            "pg_basebackup",
            "-h",
            "127.0.0.1",
            "-p",
            str(self.primary.port),
            "-U",
            "postgres",
            "-D",
            str(self.replica.datadir),
            "-R",
            "-X",
            "stream",
            "-c",
            "fast",
        )

    def log(self, node: Node) -> str:
        try:
            return (self.workdir / f"{node.name}.log").read_text()[-3000:]
        except OSError:
            return ""

    def stop(self) -> None:
        for node in (self.primary, self.replica):
            if (node.datadir / "postmaster.pid").exists():
                subprocess.run(
                    self._command("pg_ctl", "stop", "-m", "immediate", "-D", str(node.datadir)),
                    capture_output=True,
                    check=False,
                    timeout=60,
                )
        shutil.rmtree(self.workdir, ignore_errors=True)

    def _command(self, tool: str, *args: str) -> list[str]:
        command = [str(self.bindir / tool), *args]
        if os.geteuid() == 0:
            command = ["runuser", "-u", RUN_AS, "--", *command]
        return command

    def _run(self, tool: str, *args: str) -> None:
        proc = subprocess.run(
            self._command(tool, *args), capture_output=True, text=True, check=False, timeout=120
        )
        if proc.returncode != 0:
            raise RuntimeError(
                f"{tool} {' '.join(args[:2])} exited {proc.returncode}: "
                f"{(proc.stderr or proc.stdout).strip()[-1500:]}"
            )


def build() -> Cluster:
    """A running primary (initdb, trust auth on 127.0.0.1 for clients and replication); the
    replica is made with `start_replica` once the primary holds what it should copy."""
    bindir = server_bin_dir()
    workdir = Path(tempfile.mkdtemp(prefix="sow-replica-", dir="/tmp"))
    workdir.chmod(0o755)
    if os.geteuid() == 0:
        try:
            account = pwd.getpwnam(RUN_AS)
        except KeyError:
            shutil.rmtree(workdir, ignore_errors=True)
            raise ReplicaUnavailable(f"running as root and there is no {RUN_AS!r} user") from None
        os.chown(workdir, account.pw_uid, account.pw_gid)
    cluster = Cluster(
        bindir=bindir,
        workdir=workdir,
        primary=Node("primary", workdir / "primary", unused_port()),
        replica=Node("replica", workdir / "replica", unused_port()),
    )
    try:
        cluster._run(
            "initdb", "-D", str(cluster.primary.datadir), "-U", "postgres", "-A", "trust", "-E",
            "UTF8", "--no-sync",
        )  # fmt: skip
        cluster.start(cluster.primary)
    except BaseException:
        cluster.stop()
        raise
    return cluster


def start_replica(cluster: Cluster) -> None:
    """Copy the primary into the replica and start it streaming."""
    cluster.base_backup()
    cluster.start(cluster.replica)
