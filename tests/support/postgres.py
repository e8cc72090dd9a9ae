"""A throwaway PostgreSQL server for tests: its own cluster in a temp folder, its own port.

Debian's server binaries (`/usr/lib/postgresql/<version>/bin`) are run directly:
`initdb` makes a cluster with trust authentication, `postgres` serves it on a free
127.0.0.1 port and on a Unix socket in the same temp folder, and `stop()` shuts it
down and removes the folder. PostgreSQL refuses to run as root, so when the tests
run as root the server runs as the `postgres` user (else `nobody`), dropping
privileges in the child before exec; the temp folder is created outside pytest's
root-only tmp_path and handed to that user.

Durability is switched off (fsync, full page writes): the cluster dies with the test.
"""

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import pytest

from tests.support.broker import free_port

SERVER_USER_CANDIDATES = ("postgres", "nobody")
SUPERUSER = "postgres"


def server_bin_dir() -> Path | None:
    """The newest installed PostgreSQL server's bin folder, or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: int(Path(p).parent.parent.name) if Path(p).parent.parent.name.isdigit() else 0)
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def _unprivileged_user():
    for name in SERVER_USER_CANDIDATES:
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise RuntimeError("running as root and no 'postgres' or 'nobody' user to run PostgreSQL as")


class PostgresServer:
    def __init__(self, bin_dir: Path | None = None):
        self.bin_dir = bin_dir or server_bin_dir()
        if self.bin_dir is None:
            raise RuntimeError("PostgreSQL server not installed (Debian: apt-get install postgresql)")
        self.folder = Path(tempfile.mkdtemp(prefix="loaxa-pg-"))
        self.data = self.folder / "data"
        self.port = free_port()
        self.process = None
        self.log_path = self.folder / "postgres.log"
        self._user = _unprivileged_user() if os.geteuid() == 0 else None

    def _as_server_user(self):
        if self._user is None:
            return None
        uid, gid = self._user.pw_uid, self._user.pw_gid

        def drop():
            os.setgroups([])
            os.setgid(gid)
            os.setuid(uid)
        return drop

    def _run(self, *args) -> None:
        result = subprocess.run([str(self.bin_dir / args[0]), *args[1:]], capture_output=True, text=True,
                                preexec_fn=self._as_server_user(), timeout=120, cwd=self.folder)
        if result.returncode != 0:
            raise RuntimeError(f"{args[0]} failed: {result.stderr[-2000:]}")

    def start(self, timeout: float = 30.0) -> "PostgresServer":
        if self._user is not None:
            os.chown(self.folder, self._user.pw_uid, self._user.pw_gid)
        self._run("initdb", "-D", str(self.data), "-U", SUPERUSER, "--auth=trust", "--encoding=UTF8",
                  "--locale=C", "--no-sync")
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            [str(self.bin_dir / "postgres"), "-D", str(self.data), "-p", str(self.port), "-k", str(self.folder),
             "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "full_page_writes=off",
             "-c", "synchronous_commit=off", "-c", "max_connections=50"],
            stdout=log, stderr=subprocess.STDOUT, preexec_fn=self._as_server_user(), cwd=self.folder)
        log.close()
        try:
            self._wait_ready(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self, timeout: float) -> None:
        import psycopg
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"postgres exited: {self.log_path.read_text(errors='replace')[-2000:]}")
            try:
                psycopg.connect(self.dsn("postgres"), connect_timeout=2).close()
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"postgres did not start: {self.log_path.read_text(errors='replace')[-2000:]}")
                time.sleep(0.1)

    def dsn(self, database: str) -> str:
        return f"host={self.folder} port={self.port} user={SUPERUSER} dbname={database}"

    def url(self, database: str) -> str:
        """A SQLAlchemy URL over the Unix socket, in the form operators give (`postgresql://`)."""
        return f"postgresql://{SUPERUSER}@/{database}?host={self.folder}&port={self.port}"

    def create_database(self, name: str | None = None) -> str:
        """A fresh empty database; returns its URL."""
        import psycopg
        name = name or f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.dsn("postgres"), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(2)  # SIGINT: PostgreSQL's fast shutdown
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
        shutil.rmtree(self.folder, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server():
    """One throwaway PostgreSQL per test process (xdist worker); each test makes its own database."""
    if server_bin_dir() is None:
        pytest.skip("PostgreSQL server binaries not installed (Debian: postgresql)")
    server = PostgresServer().start()
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path):
    """A fresh, empty fleet database URL: an SQLite file, then a PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'fleet.db'}"
    return request.getfixturevalue("postgres_server").create_database()
