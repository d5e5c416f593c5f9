"""A real PgBouncer in transaction pooling mode in front of the test server, on 127.0.0.1.

Started once per test session by the `pgbouncer` fixture (tests/conftest.py). Every database of
the test server is reachable through it (a `*` fallback entry), so a per-test database copy is
reached by swapping the host and port of its URL. PgBouncer refuses to run as root: as root it
runs as the `postgres` system user, with its config, log and pid files in a temp dir that user
owns.
"""

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from tests.harness import unused_port

RUN_AS = "postgres"


class PgBouncerUnavailable(RuntimeError):
    """PgBouncer cannot be started here (the reason says why; the tests skip with it)."""


@dataclass
class PgBouncer:
    port: int
    workdir: Path
    process: subprocess.Popen[bytes]

    def url(self, server_url: str) -> str:
        """`server_url` (a database on the test server) reached through PgBouncer instead."""
        parts = urlsplit(server_url)
        user = parts.username or "postgres"
        netloc = f"{user}:{parts.password}@" if parts.password else f"{user}@"
        return urlunsplit(parts._replace(netloc=f"{netloc}127.0.0.1:{self.port}"))

    def log(self) -> str:
        try:
            return (self.workdir / "pgbouncer.log").read_text()
        except OSError:
            return ""

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process.stderr is not None:
            self.process.stderr.close()
        shutil.rmtree(self.workdir, ignore_errors=True)


def start(server_url: str) -> PgBouncer:
    """Start PgBouncer (transaction pooling) in front of the server of `server_url`."""
    binary = shutil.which("pgbouncer") or (
        "/usr/sbin/pgbouncer" if os.path.exists("/usr/sbin/pgbouncer") else None
    )
    if binary is None:
        raise PgBouncerUnavailable(
            "pgbouncer is not installed (Debian: apt-get install pgbouncer; .ci/run does this)"
        )
    parts = urlsplit(server_url)
    if not parts.hostname or parts.hostname.startswith("/"):
        raise PgBouncerUnavailable("the test server has no TCP address for PgBouncer to reach")
    user = parts.username or "postgres"
    workdir = Path(tempfile.mkdtemp(prefix="sow-pgbouncer-", dir="/tmp"))
    workdir.chmod(0o755)
    port = unused_port()
    password = f" password={parts.password}" if parts.password else ""
    (workdir / "pgbouncer.ini").write_text(
        f"""[databases]
* = host={parts.hostname} port={parts.port or 5432} user={user}{password}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir =
auth_type = any
pool_mode = transaction
max_client_conn = 500
default_pool_size = 10
server_lifetime = 3600
server_idle_timeout = 60
logfile = {workdir}/pgbouncer.log
pidfile = {workdir}/pgbouncer.pid
admin_users = {user}
"""
    )
    command = [binary, str(workdir / "pgbouncer.ini")]
    if os.geteuid() == 0:
        try:
            account = pwd.getpwnam(RUN_AS)
        except KeyError:
            raise PgBouncerUnavailable(f"running as root and there is no {RUN_AS!r} user") from None
        for path in [workdir, *workdir.iterdir()]:
            os.chown(path, account.pw_uid, account.pw_gid)
        command = ["runuser", "-u", RUN_AS, "--", *command]
    process = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
    )
    bouncer = PgBouncer(port=port, workdir=workdir, process=process)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if process.poll() is not None:
            error = (process.stderr.read().decode() if process.stderr else "") + bouncer.log()
            bouncer.stop()
            raise PgBouncerUnavailable(f"pgbouncer exited at start: {error.strip()[-500:]}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return bouncer
        except OSError:
            time.sleep(0.05)
    bouncer.stop()
    raise PgBouncerUnavailable("pgbouncer did not listen within 10 s")
