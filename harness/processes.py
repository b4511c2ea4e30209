"""Processes the tests and benchmarks start: any command, a Procfile line, a Celery worker, and the private services
(Redis, PostgreSQL) a test may stop and restart. Each runs in its own session with its output in a log file, and is
stopped by its own id, never by name, so that other people's processes on a shared machine are safe.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path
from urllib.parse import urlsplit

from .util import ROOT, free_port, port_open, tail, wait_until


def _pg_bin() -> Path:
    """The newest installed PostgreSQL's binaries (Debian keeps them out of PATH)."""
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), key=lambda p: int(p.parent.parent.name))
    return versions[-1].parent if versions else Path("/usr/lib/postgresql/15/bin")


PG_BIN = _pg_bin()


class Process:
    """One subprocess in its own session, its output in ``log_dir/<name>.log`` (appended across restarts)."""

    def __init__(
        self, name: str, args: list[str], *, env: dict[str, str], log_dir: Path, cwd: Path = ROOT, kind: str = ""
    ) -> None:
        self.name, self.args, self.env, self.cwd = name, args, env, cwd
        self.kind = kind or name  # the Procfile process it runs (several may run one: deliveries-1, deliveries-2)
        self.log_path = log_dir / f"{name}.log"
        self.popen: subprocess.Popen | None = None
        self.killed_on_purpose = False

    def start(self) -> Process:
        self._log = open(self.log_path, "ab")  # noqa: SIM115 (closed in stop)
        self.popen = subprocess.Popen(
            self.args, env=self.env, cwd=self.cwd, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
        return self

    @property
    def pid(self) -> int:
        assert self.popen is not None, f"{self.name} was never started"
        return self.popen.pid

    @property
    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def wait_for_log(self, text: str, *, timeout: float = 40) -> None:
        def seen() -> bool:
            if not self.alive:
                raise AssertionError(f"{self.name} exited with {self.popen.returncode}:\n{self.tail()}")
            return text in self.log()

        wait_until(seen, timeout=timeout, message=f"{self.name} to log {text!r}", details=self.tail)

    def children(self) -> list[int]:
        """Pids of the processes this one started (gunicorn's workers under its master)."""
        return _children(self.pid) if self.popen is not None else []

    def descendants(self) -> list[int]:
        """Pids of its children, theirs, and so on (Celery's pool children included)."""
        found, todo = [], self.children()
        while todo:
            pid = todo.pop()
            found.append(pid)
            todo.extend(_children(pid))
        return found

    def kill(self) -> None:
        """SIGKILL, the way a machine or the OOM killer takes a process: no shutdown code runs."""
        if self.alive:
            self.killed_on_purpose = True
            self.popen.send_signal(signal.SIGKILL)
            self.popen.wait(timeout=10)

    def restart(self) -> None:
        self.stop()
        self.killed_on_purpose = False
        self.start()

    def terminate(self) -> None:
        if self.alive:
            self.popen.send_signal(signal.SIGTERM)

    def stop(self, timeout: float = 15) -> None:
        if self.alive:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=10)
        if self.popen is not None:
            # Whatever it left behind in its own session (a prefork child whose parent was killed).
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.popen.pid, signal.SIGKILL)
        if getattr(self, "_log", None):
            self._log.close()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def tail(self, lines: int = 40) -> str:
        return f"--- {self.name} (last {lines} lines) ---\n" + tail(self.log(), lines=lines, chars=20_000)


def _children(parent: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == parent:
            found.append(int(stat.parent.name))
    return found


def procfile_process(kind: str, *, name: str, env: dict[str, str], log_dir: Path, extra: str = "") -> Process:
    """A Procfile line (``web``, ``worker``, ``deliveries``, ``beat``) run through a shell as a deployment does,
    ``extra`` appended to it. ``exec`` makes the pid the program's own (gunicorn's master, Celery's main process)."""
    from config.procfile import procfile

    line = f"exec {procfile()[kind]} {extra}".strip()
    return Process(name, ["sh", "-c", line], env=env, log_dir=log_dir, kind=kind)


def celery_worker(
    *,
    log_dir: Path,
    name: str,
    env: dict[str, str],
    queues: str = "events",
    beat: bool = False,
    pool: str = "prefork",
    concurrency: int = 2,
) -> Process:
    """A ``celery worker`` on the queues given (not a Procfile line: tests choose its pool and queues)."""
    args = [
        sys.executable, "-m", "celery", "-A", "config", "worker", "-Q", queues, "-l", "INFO",
        "--pool", pool, "--concurrency", str(concurrency), "-n", f"test-{uuid.uuid4().hex[:8]}@%h",
        "--without-gossip", "--without-mingle",
    ]  # fmt: skip
    if beat:
        args += ["-B", "--schedule", str(log_dir / f"{name}.beat")]
    return Process(name, args, env={**env, "PYTHONUNBUFFERED": "1"}, log_dir=log_dir, kind="worker")


def psql(url: str, sql: str, *, timeout: float = 20) -> str:
    """Run SQL through psql; returns its unaligned, tuples-only output."""
    result = subprocess.run(
        ["psql", url, "-v", "ON_ERROR_STOP=1", "-tAq", "-c", sql],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if result.returncode:
        raise RuntimeError(f"psql failed: {result.stderr.strip()}")
    return result.stdout.strip()


class PrivateRedis:
    """A Redis of its own, in memory only (nothing survives a stop: every queued task is lost)."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: Process | None = None

    def start(self) -> PrivateRedis:
        args = [
            "redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
            "--daemonize", "no", "--dir", str(self.workdir),
        ]  # fmt: skip
        self.process = Process("redis", args, env=dict(os.environ), log_dir=self.workdir).start()
        wait_until(lambda: port_open(self.port), timeout=10, message="the private redis", details=self.process.tail)
        return self

    def stop(self) -> None:
        if self.process:
            self.process.stop()
            wait_until(lambda: not port_open(self.port), timeout=10, message="the private redis to stop")


class PrivatePostgres:
    """A PostgreSQL cluster of its own (initdb as the postgres OS user), to stop and start at will."""

    def __init__(self) -> None:
        # Not under pytest's tmp_path: the postgres user cannot enter root's private directories.
        self.root = Path(tempfile.mkdtemp(prefix="registry-fault-pg-"))
        self.data = self.root / "data"
        self.port = free_port()
        self.log = self.root / "postgres.log"

    def _pg(self, *args: str, timeout: float = 60) -> None:
        subprocess.run(
            ["runuser", "-u", "postgres", "--", *args], check=True, capture_output=True, timeout=timeout,
            cwd=self.root,
        )  # fmt: skip

    def init(self) -> PrivatePostgres:
        os.chown(self.root, *_postgres_ids())
        self._pg(str(PG_BIN / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8",
                 "--no-sync")  # fmt: skip
        return self

    def start(self) -> None:
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c max_connections=200"
        self._pg(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "start")

    def stop(self) -> None:
        self._pg(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")

    def remove(self) -> None:
        if self.running():
            self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()

    def url(self, dbname: str = "postgres") -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{dbname}"

    def create_database(self, name: str) -> str:
        psql(self.url(), f"CREATE DATABASE {name}")
        return self.url(name)


def _postgres_ids() -> tuple[int, int]:
    import pwd

    entry = pwd.getpwnam("postgres")
    return entry.pw_uid, entry.pw_gid


class SharedServerDatabase:
    """A database of its own on the shared PostgreSQL server (``DATABASE_URL``'s, the one ``./dev test`` uses)."""

    def __init__(self, prefix: str = "registry_fault") -> None:
        shared = urlsplit(os.environ.get("DATABASE_URL") or "postgres://postgres@127.0.0.1:5432/postgres")
        user = shared.username or "postgres"
        auth = f"{user}:{shared.password}@" if shared.password else f"{user}@"
        self.server = f"postgres://{auth}{shared.hostname or '127.0.0.1'}:{shared.port or 5432}"
        self.name = f"{prefix}_{uuid.uuid4().hex[:10]}"
        self.url = f"{self.server}/{self.name}"

    def create(self) -> str:
        psql(f"{self.server}/postgres", f"CREATE DATABASE {self.name}")
        return self.url

    def drop(self) -> None:
        # DROP DATABASE waits for an immediate checkpoint (PostgreSQL 15), which under the whole suite's writes
        # once took over 20 s.
        psql(f"{self.server}/postgres", f"DROP DATABASE IF EXISTS {self.name} WITH (FORCE)", timeout=180)
