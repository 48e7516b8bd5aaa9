"""A real, throwaway PostgreSQL server for tests, started from the installed binaries.

Tests that read LiteLLM's ``"LiteLLM_SpendLogs"`` need the real thing: its types (float8,
``timestamp(3)``, JSONB), its COPY protocol and its planner. ``PostgresServer`` runs
``initdb`` into a fresh temporary directory, starts the server with ``pg_ctl`` on a free
port of 127.0.0.1 (never another interface; its unix socket stays inside that directory),
and on exit stops it and deletes the directory. Authentication is ``trust``: the server
lives only as long as the test session and is reachable only from this machine.

PostgreSQL refuses to run as root, so under root the binaries run as Debian's ``postgres``
system user (``runuser``), which then owns the temporary directory.
"""

from __future__ import annotations

import glob
import os
import pwd
import re
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

import psycopg2
from psycopg2 import sql

from tests.receiving import free_port

PG_BIN_ENV = "PG_BIN"
DEBIAN_BIN_GLOB = "/usr/lib/postgresql/*/bin"
SERVER_OS_USER = "postgres"  # created by Debian's postgresql package; used only under root
SUPERUSER = "postgres"  # the database superuser initdb creates
INSTALL_HINT = (
    "run `make postgres` (scripts/ensure-postgres.sh), or `apt-get install postgresql`, "
    f"or set {PG_BIN_ENV} to a directory holding initdb and pg_ctl"
)

INITDB_TIMEOUT_S = 120
START_TIMEOUT_S = 30
STOP_TIMEOUT_S = 15
KILL_WAIT_S = 10
CONNECT_TIMEOUT_S = 5
START_ATTEMPTS = 3  # a free port can be taken by someone else before the server binds it

# Durability is pointless for a server deleted at the end of the session; turning it off
# makes bulk loads several times faster. Logging collection stays off: the log is pg_ctl's.
SERVER_SETTINGS = {
    "listen_addresses": "'127.0.0.1'",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "50",
    "shared_buffers": "'128MB'",
    "max_wal_size": "'2GB'",
    "timezone": "'UTC'",
    "wal_level": "minimal",
    "max_wal_senders": "0",
    "default_toast_compression": "lz4",
}
SETTINGS_FILE = "spend_tests.conf"


class PostgresNotAvailable(RuntimeError):
    """No server binaries, or no unprivileged user to run them as."""


class PostgresStartError(RuntimeError):
    """initdb or the server failed; the message carries the tail of their output."""


def _version_key(bin_dir: Path) -> tuple[int, ...]:
    # /usr/lib/postgresql/15/bin → (15,); an unparsable name sorts first.
    digits = re.findall(r"\d+", bin_dir.parent.name)
    return tuple(int(d) for d in digits) or (-1,)


def _has_server_binaries(bin_dir: Path) -> bool:
    return all(os.access(bin_dir / name, os.X_OK) for name in ("initdb", "pg_ctl", "postgres"))


def find_bin_dir() -> Path:
    """``$PG_BIN`` if set, else the newest Debian server version's bin directory."""
    if configured := os.environ.get(PG_BIN_ENV):
        bin_dir = Path(configured)
        if not _has_server_binaries(bin_dir):
            raise PostgresNotAvailable(
                f"{PG_BIN_ENV}={configured} has no executable initdb, pg_ctl and postgres"
            )
        return bin_dir
    found = [d for d in map(Path, glob.glob(DEBIAN_BIN_GLOB)) if _has_server_binaries(d)]
    if not found:
        raise PostgresNotAvailable(
            f"no PostgreSQL server binaries in {DEBIAN_BIN_GLOB}: {INSTALL_HINT}"
        )
    return max(found, key=_version_key)


def _tail(text: str | bytes | None, chars: int = 3000) -> str:
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    return (text or "")[-chars:]


class PostgresServer:
    """One PostgreSQL server in a temporary directory, on ``127.0.0.1:<port>``.

    Use as a context manager; ``dsn(dbname)`` and ``create_database(name)`` while it runs.
    """

    def __init__(self, bin_dir: Path | None = None) -> None:
        self.bin_dir = bin_dir or find_bin_dir()
        self.os_user = self._unprivileged_user()
        self.root: Path | None = None
        self.port: int | None = None
        self.startup_seconds: float | None = None

    # -- where things are ---------------------------------------------------------------

    @property
    def data_dir(self) -> Path:
        return self._root / "data"

    @property
    def socket_dir(self) -> Path:
        return self._root / "socket"

    @property
    def log_path(self) -> Path:
        return self._root / "server.log"

    @property
    def _root(self) -> Path:
        if self.root is None:
            raise RuntimeError("the server is not started")
        return self.root

    def dsn(self, dbname: str = "postgres") -> str:
        if self.port is None:
            raise RuntimeError("the server is not started")
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{dbname}"

    @property
    def pid(self) -> int:
        """The postmaster's process id, from its own pid file."""
        return int((self.data_dir / "postmaster.pid").read_text().split("\n", 1)[0])

    # -- running the binaries as an unprivileged user -----------------------------------

    @staticmethod
    def _unprivileged_user() -> str | None:
        """``None`` to run as ourselves; under root, the ``postgres`` system user."""
        if os.geteuid() != 0:
            return None
        try:
            pwd.getpwnam(SERVER_OS_USER)
        except KeyError:
            raise PostgresNotAvailable(
                f"running as root, and PostgreSQL refuses to run as root, but there is no "
                f"'{SERVER_OS_USER}' user to run it as: {INSTALL_HINT}"
            ) from None
        return SERVER_OS_USER

    def _command(self, binary: str, *args: str) -> list[str]:
        command = [str(self.bin_dir / binary), *args]
        if self.os_user is None:
            return command
        return ["runuser", "-u", self.os_user, "--", *command]

    def _run(self, binary: str, *args: str, timeout: float) -> subprocess.CompletedProcess:
        # PG* variables of the caller (PGDATA, PGPORT, PGHOST…) must not steer our server.
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env.update(LC_ALL="C", LANG="C")
        return subprocess.run(
            self._command(binary, *args),
            cwd=self._root,  # the server user may not be allowed into the caller's cwd
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def _give_to_server_user(self, path: Path) -> None:
        if self.os_user is not None:
            entry = pwd.getpwnam(self.os_user)
            os.chown(path, entry.pw_uid, entry.pw_gid)

    # -- lifecycle ----------------------------------------------------------------------

    def __enter__(self) -> PostgresServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        began = time.monotonic()
        self.root = Path(tempfile.mkdtemp(prefix="spend-postgres-"))
        try:
            self._prepare_directories()
            self._initdb()
            self._start_on_a_free_port()
            self._wait_until_accepting()
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - began

    def _prepare_directories(self) -> None:
        os.chmod(self._root, 0o700)
        self._give_to_server_user(self._root)
        self.socket_dir.mkdir(mode=0o700)
        self._give_to_server_user(self.socket_dir)
        if self.os_user is not None:
            # A TMPDIR inside a root-only directory (/root/tmp) is out of the server user's reach.
            probe = subprocess.run(
                ["runuser", "-u", self.os_user, "--", "test", "-w", str(self._root)],
                capture_output=True,
                timeout=10,
                check=False,
            )
            if probe.returncode != 0:
                raise PostgresNotAvailable(
                    f"user {self.os_user} cannot write to {self._root}: set TMPDIR to a "
                    f"directory it can reach, e.g. /tmp"
                )

    def _initdb(self) -> None:
        result = self._run(
            "initdb",
            "--pgdata",
            str(self.data_dir),
            "--username",
            SUPERUSER,
            "--auth",
            "trust",
            "--encoding",
            "UTF8",
            "--locale",
            "C",
            "--no-sync",  # the directory is deleted after the session anyway
            timeout=INITDB_TIMEOUT_S,
        )
        if result.returncode != 0:
            raise PostgresStartError(
                f"initdb failed ({result.returncode}): {_tail(result.stderr or result.stdout)}"
            )
        with open(self.data_dir / "postgresql.conf", "a") as conf:
            conf.write(f"\ninclude_if_exists = '{SETTINGS_FILE}'\n")

    def _write_settings(self, port: int) -> None:
        settings = {
            **SERVER_SETTINGS,
            "port": str(port),
            "unix_socket_directories": f"'{self.socket_dir}'",
        }
        path = self.data_dir / SETTINGS_FILE
        path.write_text("".join(f"{name} = {value}\n" for name, value in settings.items()))
        self._give_to_server_user(path)

    def _start_on_a_free_port(self) -> None:
        failures: list[str] = []
        for _ in range(START_ATTEMPTS):
            port = free_port()
            self._write_settings(port)
            result = self._run(
                "pg_ctl",
                "start",
                "--pgdata",
                str(self.data_dir),
                "--log",
                str(self.log_path),
                "--wait",
                "--timeout",
                str(START_TIMEOUT_S),
                timeout=START_TIMEOUT_S + 10,
            )
            if result.returncode == 0:
                self.port = port
                return
            failures.append(f"port {port}: {_tail(self._log_text(), 1500)}")
            self._stop_postmaster()  # a half-started server must not linger
        raise PostgresStartError("the server did not start:\n" + "\n".join(failures))

    def _log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def _wait_until_accepting(self) -> None:
        """pg_ctl --wait checks the socket; this checks what tests use, TCP on 127.0.0.1."""
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                psycopg2.connect(self.dsn(), connect_timeout=CONNECT_TIMEOUT_S).close()
                return
            except psycopg2.OperationalError as exc:
                if time.monotonic() > deadline:
                    raise PostgresStartError(
                        f"no connection to {self.dsn()} within {START_TIMEOUT_S}s: {exc}"
                    ) from None
                time.sleep(0.1)

    def stop(self) -> None:
        """Stop the server (fast shutdown, then SIGKILL) and delete its directory."""
        if self.root is None:
            return
        try:
            self._stop_postmaster()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None
            self.port = None

    def _stop_postmaster(self) -> None:
        if not (self.data_dir / "postmaster.pid").exists():
            return
        pid = self.pid
        try:
            self._run(
                "pg_ctl",
                "stop",
                "--pgdata",
                str(self.data_dir),
                "--mode",
                "fast",
                "--wait",
                "--timeout",
                str(STOP_TIMEOUT_S),
                timeout=STOP_TIMEOUT_S + 5,
            )
        except subprocess.TimeoutExpired:
            pass
        if _alive(pid):
            # Only this pid: the postmaster read from our own data directory. Its
            # backends exit on their own once they see the postmaster gone.
            os.kill(pid, signal.SIGKILL)
            _wait_for_exit(pid, KILL_WAIT_S)

    # -- administration -----------------------------------------------------------------

    def connect(self, dbname: str = "postgres"):
        return psycopg2.connect(self.dsn(dbname), connect_timeout=CONNECT_TIMEOUT_S)

    def create_database(self, name: str) -> str:
        """Create database ``name`` (an empty copy of template1); returns its DSN."""
        conn = self.connect()
        try:
            conn.autocommit = True  # CREATE DATABASE cannot run inside a transaction
            with conn.cursor() as cursor:
                cursor.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        finally:
            conn.close()
        return self.dsn(name)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _wait_for_exit(pid: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
