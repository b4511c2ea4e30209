"""Machinery of the fault-injection suite (tests/test_faults.py).

Each fault test runs the whole system black-box, as production does: ``manage.py migrate``, then the Procfile's own
lines (gunicorn, the ``events`` and ``deliveries`` Celery workers, beat) as processes, on a **private** Redis and
either a private database on the shared PostgreSQL server or a **private** PostgreSQL cluster — never the shared
services, which other people's tests use, so stopping and restarting is safe. The test drives the REST API like a
client would and counts what a loopback receiver got, de-duplicated on ``webhook-id``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import requests
from cryptography.fernet import Fernet

from bench.processes import free_port
from config.procfile import procfile

from .conftest import wait_until

BASE_DIR = Path(__file__).resolve().parent.parent


def _pg_bin() -> Path:
    """The newest installed PostgreSQL's binaries (Debian keeps them out of PATH)."""
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), key=lambda p: int(p.parent.parent.name))
    return versions[-1].parent if versions else Path("/usr/lib/postgresql/15/bin")


PG_BIN = _pg_bin()
PASSWORD = "fault-injection-Passw0rd"

# Sweeps and timeouts shortened so that recovery takes seconds, not the production minutes (config/settings.py).
FAST_ENV = {
    "EVENT_SWEEP_INTERVAL": "1",
    "EVENT_REDISPATCH_AFTER": "3",
    "DELIVERY_SWEEP_INTERVAL": "1",
    "DELIVERY_SWEEP_GRACE": "5",
    "DELIVERY_CLAIM_LEASE": "10",
    "WEBHOOK_CONNECT_TIMEOUT": "2",
    "WEBHOOK_READ_TIMEOUT": "3",
    "WEBHOOK_DEADLINE": "5",
    "WEBHOOK_RETRY_SCHEDULE": "1,2,3,5,5,5,5,5,5,5,5,5,5,5,5",
    "WEBHOOK_ALLOWED_NETWORKS": "127.0.0.1/32",
    "LOG_LEVEL": "INFO",
}


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    try:
        socket.create_connection((host, port), timeout=0.5).close()
    except OSError:
        return False
    return True


# --- Processes ------------------------------------------------------------------------------------------


class Process:
    """One subprocess in its own session, its output in a log file. Stopped by its own id, never by name."""

    def __init__(self, name: str, args: list[str], *, env: dict, log_dir: Path, cwd: Path = BASE_DIR):
        self.name, self.args, self.env, self.cwd = name, args, env, cwd
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
    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def wait_for_log(self, text: str, *, timeout: float = 40) -> None:
        def seen():
            if not self.alive:
                raise AssertionError(f"{self.name} exited with {self.popen.returncode}:\n{self.tail()}")
            return text in self.log()

        wait_until(seen, timeout=timeout, message=f"{self.name} to log {text!r}", details=self.tail)

    def children(self) -> list[int]:
        """Pids of the processes this one started (gunicorn's workers under its master)."""
        found = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if self.popen is not None and int(fields[1]) == self.popen.pid:
                found.append(int(stat.parent.name))
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
        return f"--- {self.name} (last {lines} lines) ---\n" + "\n".join(self.log().splitlines()[-lines:])


def psql(url: str, sql: str, *, timeout: float = 20) -> str:
    """Run SQL through psql; returns its unaligned, tuples-only output."""
    result = subprocess.run(
        ["psql", url, "-v", "ON_ERROR_STOP=1", "-tAq", "-c", sql], capture_output=True, text=True, timeout=timeout
    )
    if result.returncode:
        raise RuntimeError(f"psql failed: {result.stderr.strip()}")
    return result.stdout.strip()


class PrivateRedis:
    """A Redis of this test alone, in memory only (nothing survives a stop: every queued task is lost)."""

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
    """A PostgreSQL 15 cluster of this test alone (initdb as the postgres OS user), to stop and start at will."""

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
    """A database of this test alone on the shared PostgreSQL server (the one ``./dev test`` uses)."""

    def __init__(self) -> None:
        shared = urlsplit(os.environ.get("DATABASE_URL") or "postgres://postgres@127.0.0.1:5432/postgres")
        user = shared.username or "postgres"
        auth = f"{user}:{shared.password}@" if shared.password else f"{user}@"
        self.server = f"postgres://{auth}{shared.hostname or '127.0.0.1'}:{shared.port or 5432}"
        self.name = f"registry_fault_{uuid.uuid4().hex[:10]}"
        self.url = f"{self.server}/{self.name}"

    def create(self) -> str:
        psql(f"{self.server}/postgres", f"CREATE DATABASE {self.name}")
        return self.url

    def drop(self) -> None:
        psql(f"{self.server}/postgres", f"DROP DATABASE IF EXISTS {self.name} WITH (FORCE)")


# --- The receiver ---------------------------------------------------------------------------------------


@dataclass
class Accepted:
    at: float
    body: dict


@dataclass
class DedupReceiver:
    """A webhook endpoint on loopback that de-duplicates on ``webhook-id``, as the wire format asks receivers to.

    ``fail_until`` (a ``time.monotonic()`` instant) makes it answer 503 until then: an endpoint that is down.
    ``trickle`` makes it answer 200 with its headers at once and then a body of that many bytes, one a second: an
    endpoint that is up and answers, slowly (a request is accepted when read, before the answer starts).
    """

    fail_until: float = 0.0
    delay: float = 0.0  # seconds each request is held before the answer (requests in flight when a fault hits)
    trickle: int = 0
    accepted: dict[str, Accepted] = field(default_factory=dict)
    duplicates: int = 0
    duplicated_ids: Counter = field(default_factory=Counter)  # webhook-id → times it came again
    in_flight: int = 0  # trickling answers under way
    peak_in_flight: int = 0
    refused: int = 0
    requests: int = 0
    last_new_at: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if receiver.delay:
                    time.sleep(receiver.delay)
                status = receiver._take(self.headers.get("webhook-id") or "", body)
                if status == 200 and receiver.trickle:
                    self._trickle(receiver.trickle)
                    return
                reply = b'{"ok":true}' if status == 200 else b'{"error":"down"}'
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(reply)))
                    self.end_headers()
                    self.wfile.write(reply)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def _trickle(self, size: int) -> None:
                # Counted from the request read to before the last byte leaves: the sender cannot be done with the
                # request sooner, so the peak is a lower bound of the sends it had under way at once.
                receiver._flight(+1)
                counted = True
                try:
                    self.send_response(200)
                    self.send_header("Content-Type", "text/plain")
                    self.send_header("Content-Length", str(size))
                    self.end_headers()  # the status line and headers leave now; the body takes ``size`` seconds
                    for left in range(size, 0, -1):
                        time.sleep(1.0)
                        if left == 1:
                            receiver._flight(-1)
                            counted = False
                        self.wfile.write(b".")
                except (BrokenPipeError, ConnectionResetError):
                    pass
                finally:
                    if counted:
                        receiver._flight(-1)

            def log_message(self, format: str, *args) -> None:
                pass

        class Server(ThreadingHTTPServer):
            request_queue_size = 512
            daemon_threads = True

        self.server = Server(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def _take(self, webhook_id: str, body: bytes) -> int:
        with self._lock:
            self.requests += 1
            if time.monotonic() < self.fail_until:
                self.refused += 1
                return 503
            if webhook_id in self.accepted:
                self.duplicates += 1
                self.duplicated_ids[webhook_id] += 1
            else:
                now = time.monotonic()
                self.accepted[webhook_id] = Accepted(now, json.loads(body or b"{}"))
                self.last_new_at = now
            return 200

    def _flight(self, change: int) -> None:
        with self._lock:
            self.in_flight += change
            self.peak_in_flight = max(self.peak_in_flight, self.in_flight)

    @property
    def url(self) -> str:
        return self.url_for("/hook")

    def url_for(self, path: str) -> str:
        """A URL of this receiver with another path: webhooks that differ but share one destination."""
        return f"http://127.0.0.1:{self.server.server_port}{path}"

    @property
    def delivered(self) -> int:
        return len(self.accepted)

    def payloads(self) -> list[dict]:
        with self._lock:
            return [a.body for a in self.accepted.values()]

    def __enter__(self) -> DedupReceiver:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


# --- The API client -------------------------------------------------------------------------------------


class Api:
    """The REST API as a client program sees it. ``retry_for`` > 0 retries connection errors and 5xx answers the
    way a real client would, with a short backoff, for that many seconds."""

    RETRIED = (500, 502, 503, 504)

    def __init__(self, base: str, *, token: str | None = None) -> None:
        self.base = base.rstrip("/")
        self.session = requests.Session()
        self.session.mount("http://", requests.adapters.HTTPAdapter(pool_connections=4, pool_maxsize=16))
        if token:
            self.session.headers["Authorization"] = f"Token {token}"
        self.retries = 0

    def call(self, method: str, path: str, *, json=None, retry_for: float = 0.0, timeout: float = 15, **kw):
        deadline = time.monotonic() + retry_for
        delay = 0.2
        while True:
            try:
                response = self.session.request(method, f"{self.base}{path}", json=json, timeout=timeout, **kw)
                if response.status_code not in self.RETRIED or time.monotonic() >= deadline:
                    return response
            except requests.RequestException:
                if time.monotonic() >= deadline:
                    raise
            self.retries += 1
            time.sleep(delay)
            delay = min(delay * 2, 1.0)

    def post(self, path: str, body: dict, *, expect: int = 201, **kw) -> dict:
        response = self.call("POST", path, json=body, **kw)
        assert response.status_code == expect, f"POST {path}: {response.status_code} {response.text[:500]}"
        return response.json() if response.content else {}


# --- The stack ------------------------------------------------------------------------------------------


@dataclass
class Fixture:
    """What ``Stack.bootstrap`` made through the API: names to build paths from, and the webhook's id."""

    team: str = "fault"
    model: str = "classifier"
    webhook_id: int = 0
    automations: int = 0
    automation_ids: list[int] = field(default_factory=list)


class Stack:
    """The system as processes on a given database and broker: migrate, web, workers, beat."""

    def __init__(self, *, workdir: Path, database_url: str, broker_url: str, env: dict | None = None) -> None:
        self.workdir = workdir
        self.logs = workdir / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.database_url = database_url
        self.port = free_port()
        self.env = {
            **os.environ,
            "DATABASE_URL": database_url,
            "CELERY_BROKER_URL": broker_url,
            "SECRET_KEY": uuid.uuid4().hex * 2,
            "SECRETS_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
            "VAR_DIR": str(workdir / "var"),
            "PORT": str(self.port),
            "WEB_BIND": "127.0.0.1",
            "PYTHONUNBUFFERED": "1",
            "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}",
            **FAST_ENV,
            **(env or {}),
        }
        self.processes: list[Process] = []
        self.api = Api(f"http://127.0.0.1:{self.port}/api/v1")
        self.fixture = Fixture()
        self._counter = Counter()
        self._lock = threading.Lock()
        self.failures: list[str] = []  # alias calls that got no answer: name and exception, for assertion messages
        self.calls: dict[str, tuple[float, float]] = {}  # alias name → (start, end), time.monotonic()
        self._stopping = threading.Event()
        self.exits: list[str] = []  # every exit the supervisor saw: "name exited CODE (crash|killed)"
        self._supervisor = threading.Thread(target=self._supervise, daemon=True)

    # processes

    def manage(self, *args: str, env: dict | None = None, timeout: float = 120) -> str:
        result = subprocess.run(
            [sys.executable, "manage.py", *args], cwd=BASE_DIR, env={**self.env, **(env or {})}, capture_output=True,
            text=True, timeout=timeout,
        )  # fmt: skip
        assert result.returncode == 0, f"manage.py {' '.join(args)}:\n{result.stdout}\n{result.stderr}"
        return result.stdout

    def run(self, kind: str, *, extra: str = "", env: dict | None = None) -> Process:
        """Start a Procfile line (``web``, ``worker``, ``deliveries``, ``beat``) through a shell, as production
        does; ``extra`` is appended to it."""
        with self._lock:
            self._counter[kind] += 1
            name = f"{kind}-{self._counter[kind]}"
        line = f"exec {procfile()[kind]} {extra}".strip()
        process = Process(name, ["sh", "-c", line], env={**self.env, **(env or {})}, log_dir=self.logs).start()
        with self._lock:
            self.processes.append(process)
        return process

    def _supervise(self) -> None:
        """Start again any process that exits, as production's supervisor does (systemd ``Restart=always``,
        Kubernetes): the README has the Procfile lines run under one. Every exit is recorded in ``exits``."""
        while not self._stopping.wait(0.5):
            with self._lock:
                processes = list(self.processes)
            for process in processes:
                if process.popen is None or process.alive or self._stopping.is_set():
                    continue
                why = "killed" if process.killed_on_purpose else "crash"
                self.exits.append(f"{process.name} exited {process.popen.returncode} ({why})")
                process.restart()

    @property
    def crashes(self) -> list[str]:
        return [e for e in self.exits if e.endswith("(crash)")]

    def start_web(self) -> Process:
        web = self.run("web")
        wait_until(lambda: port_open(self.port), timeout=40, message="gunicorn", details=web.tail)
        return web

    def start_worker(self, kind: str, **env: str) -> Process:
        name = f"{kind}-{uuid.uuid4().hex[:8]}@%h"
        worker = self.run(kind, extra=f"-n {name} --without-mingle --without-gossip", env=env)
        worker.wait_for_log(" ready.")
        return worker

    def start_beat(self) -> Process:
        beat = self.run("beat", extra=f"--schedule {shlex.quote(str(self.workdir / 'beat-schedule'))}")
        beat.wait_for_log("beat: Starting")
        return beat

    def start(self, *, deliveries_workers: int = 1) -> Stack:
        self.manage("migrate", "--noinput")
        self.manage(
            "createsuperuser", "--noinput",
            env={"DJANGO_SUPERUSER_USERNAME": "admin", "DJANGO_SUPERUSER_PASSWORD": PASSWORD,
                 "DJANGO_SUPERUSER_EMAIL": "admin@example.com"},
        )  # fmt: skip
        self.start_web()
        with ThreadPoolExecutor(4) as pool:
            starting = [pool.submit(self.start_worker, "worker")]
            starting += [pool.submit(self.start_worker, "deliveries") for _ in range(deliveries_workers)]
            starting.append(pool.submit(self.start_beat))
            for future in starting:
                future.result()
        self._supervisor.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._supervisor.is_alive():
            self._supervisor.join(timeout=10)
        for process in self.processes:  # all at once: each shuts down in its own time
            process.terminate()
        for process in reversed(self.processes):
            process.stop()

    def tails(self, lines: int = 25) -> str:
        return "\n".join(p.tail(lines) for p in self.processes)

    # the API

    def bootstrap(self, *, receiver_url: str, automations: int = 1) -> Fixture:
        """Log in, make a team with a registered model holding v0, a signing secret, a webhook and ``automations``
        webhook automations on ADD_ARTIFACT_ALIAS whose payload names the alias and the automation."""
        token = self.api.post("/auth/token/", {"username": "admin", "password": PASSWORD})["token"]
        self.api.session.headers["Authorization"] = f"Token {token}"
        self.token = token
        fx = self.fixture
        team = f"/teams/{fx.team}"
        self.api.post("/teams/", {"name": fx.team})
        self.api.post(f"{team}/projects/", {"name": "training"})
        artifact = self.api.post(f"{team}/projects/training/artifacts/{fx.model}/versions/", {"type": "model"})
        self.api.post(f"{team}/registered-models/", {"name": fx.model})
        self.api.post(f"{team}/registered-models/{fx.model}/versions/", {"artifact": artifact["reference"]})
        self.api.post(f"{team}/secrets/", {"name": "SIGNING", "value": "whsec_" + uuid.uuid4().hex})
        fx.webhook_id = self.api.post(f"{team}/webhooks/", {"name": "ci", "url": receiver_url, "secret": "SIGNING"})[
            "id"
        ]
        for n in range(automations):
            made = self.api.post(
                f"{team}/automations/",
                {"name": f"deploy-{n}", "event_type": "ADD_ARTIFACT_ALIAS", "registered_model": fx.model,
                 "action_type": "WEBHOOK", "webhook": fx.webhook_id,
                 "payload": {"alias": "${alias}", "automation": n, "model": "${artifact_version_string}"}},
            )  # fmt: skip
            fx.automation_ids.append(made["id"])
        fx.automations = automations
        return fx

    def alias(self, name: str, *, retry_for: float = 0.0, timeout: float = 15) -> int:
        """Put alias ``name`` on v0 (an ADD_ARTIFACT_ALIAS event); returns the final HTTP status."""
        fx = self.fixture
        path = f"/teams/{fx.team}/registered-models/{fx.model}/versions/v0/aliases/"
        start = time.monotonic()
        try:
            return self.api.call("POST", path, json={"alias": name}, retry_for=retry_for, timeout=timeout).status_code
        except requests.RequestException as exc:
            self.failures.append(f"{name}: {type(exc).__name__}: {exc}")
            return 0
        finally:
            self.calls[name] = (start, time.monotonic())

    def burst(
        self, names: list[str], *, threads: int = 4, retry_for: float = 0.0, timeout: float = 15
    ) -> dict[str, int]:
        """Create one event per name from ``threads`` concurrent clients; returns name → final HTTP status."""
        with ThreadPoolExecutor(threads) as pool:
            statuses = pool.map(lambda name: self.alias(name, retry_for=retry_for, timeout=timeout), names)
            return dict(zip(names, statuses, strict=True))

    # the database, read as an operator would

    def sql(self, query: str) -> str:
        return psql(self.database_url, query)

    def row_counts(self) -> dict[str, int]:
        """Rows of every table of the application, in one psql call."""
        tables = self.sql("SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1").split()
        query = " UNION ALL ".join(f"SELECT '{t}', count(*) FROM {t}" for t in tables)  # noqa: S608 (our tables)
        return {name: int(n) for name, n in (line.split("|") for line in self.sql(query).splitlines())}

    def delivery_states(self) -> dict[str, int]:
        rows = self.sql("SELECT status, count(*) FROM automations_delivery GROUP BY status")
        return {s: int(n) for s, n in (line.split("|") for line in rows.splitlines() if line)}

    def events(self) -> tuple[int, int]:
        """(events, of which undispatched)."""
        row = self.sql("SELECT count(*), count(*) FILTER (WHERE dispatched_at IS NULL) FROM registry_event "
                       "WHERE type = 'ADD_ARTIFACT_ALIAS'")  # fmt: skip
        total, undispatched = row.split("|")
        return int(total), int(undispatched)

    def describe(self) -> str:
        try:
            total, undispatched = self.events()
            state = f"events={total} undispatched={undispatched} deliveries={self.delivery_states()}"
        except Exception as exc:
            state = f"(database unreadable: {exc})"
        return f"{state}\n{self.tails()}"


@dataclass
class Figures:
    """The one-line result every fault test prints."""

    fault: str
    events: int
    delivered: int
    expected: int
    duplicated: int
    recover_seconds: float | None
    note: str = ""
    exits: list[str] = field(default_factory=list)

    @property
    def lost(self) -> int:
        return self.expected - self.delivered

    def line(self) -> str:
        recover = "-" if self.recover_seconds is None else f"{self.recover_seconds:.1f}s"
        notes = [self.note] if self.note else []
        if self.exits:
            notes.append(f"process exits, restarted by the supervisor: {', '.join(self.exits)}")
        return (
            f"FAULT {self.fault}: events={self.events} delivered={self.delivered}/{self.expected} lost={self.lost} "
            f"duplicated={self.duplicated} recover={recover}" + (f" ({'; '.join(notes)})" if notes else "")
        )


# --- The malformed-request storm --------------------------------------------------------------------------


@dataclass
class Shot:
    label: str
    method: str
    path: str
    body: bytes
    content_type: str = "application/json"


def _wrong_value(schema: dict, components: dict) -> object:
    """A value of the wrong JSON type for ``schema``: an object where a scalar or an array belongs, a number where
    an object belongs. None for a property of no declared type (a JSONField takes anything)."""
    while "$ref" in schema:
        schema = components[schema["$ref"].rsplit("/", 1)[-1]]
    if schema.get("type") == "object":
        return 12345
    if not schema or set(schema) <= {"description", "default", "title"}:
        return None
    return {"wrong": ["type", 1, None]}


def storm(openapi: dict, paths: dict[str, str], *, seed: int, huge_bytes: int) -> list[Shot]:
    """Malformed requests for every write operation of the schema: non-object documents, every field of the wrong
    type, broken JSON and UTF-8, deep nesting, non-finite numbers, lone surrogates, bodies over the size limit,
    and the wrong content type. None of them is a valid request, so each must get a 4xx and write nothing."""
    import random

    rng = random.Random(seed)
    components = openapi.get("components", {}).get("schemas", {})
    shots: list[Shot] = []
    for template, operations in openapi["paths"].items():
        path = template
        for name, value in paths.items():
            path = path.replace("{" + name + "}", value)
        path = re.sub(r"\{[a-z_]+\}", lambda _: str(uuid.uuid4()), path)  # ids of nothing: 404
        for method, operation in operations.items():
            if method not in ("post", "put", "patch"):
                continue
            schema = operation.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema", {})
            while "$ref" in schema:
                schema = components[schema["$ref"].rsplit("/", 1)[-1]]
            props = schema.get("properties", {})
            required = schema.get("required", [])
            wrong = {k: v for k, v in ((k, _wrong_value(p, components)) for k, p in props.items()) if v is not None}
            field_name = (required or list(props) or ["name"])[0]
            label = f"{method.upper()} {template}"

            def shot(kind: str, body: bytes, content_type: str = "application/json") -> None:
                shots.append(Shot(f"{label} [{kind}]", method.upper(), path, body, content_type))  # noqa: B023

            if props:  # an operation without a body would be a valid request with any body
                shot("wrong types", json.dumps(wrong).encode())
                junk = {_junk_key(rng): _junk(rng, 4) for _ in range(rng.randint(1, 6))}
                shot("random keys, wrong types", json.dumps({**junk, **wrong}).encode())
                if required:
                    only_required = {k: wrong.get(k, 12345) for k in required}
                    shot("required of the wrong type", json.dumps(only_required).encode())
                shot("padded to 1.5 MB, wrong types", json.dumps({**wrong, "padding": "x" * 1_500_000}).encode())
            shot("document not an object", json.dumps(rng.choice([[], [1, "a"], "text", 42, None, True])).encode())
            shot("truncated JSON", b'{"' + field_name.encode() + b'": "unfinished')
            shot("invalid UTF-8", b'{"' + field_name.encode() + b'": "\xff\xfe\xfd"}')
            shot("nested 100 deep", ('{"' + field_name + '": ' + "[" * 100 + "]" * 100 + "}").encode())
            shot("nested 100,000 deep", b'{"a":' * 100_000 + b"1" + b"}" * 100_000)
            shot("NaN", b'{"' + field_name.encode() + b'": NaN}')
            shot("lone surrogate", b'{"' + field_name.encode() + b'": "\\ud800"}')
            shot("over the size limit", b'{"' + field_name.encode() + b'": "' + b"x" * huge_bytes + b'"}')
            shot("text/plain", json.dumps(wrong or {"x": 1}).encode(), "text/plain")
            shot("form-encoded", b"name=x&url=y", "application/x-www-form-urlencoded")
    return shots


def query_storm(openapi: dict, paths: dict[str, str]) -> list[Shot]:
    """Garbage in the query string of every listing: numbers past 64 bits, negative, not numbers, repeated."""
    shots = []
    for template, operations in openapi["paths"].items():
        if "get" not in operations or not any(
            p.get("name") == "limit" for p in operations["get"].get("parameters", [])
        ):
            continue
        path = template
        for name, value in paths.items():
            path = path.replace("{" + name + "}", value)
        path = re.sub(r"\{[a-z_]+\}", lambda _: str(uuid.uuid4()), path)
        for query in ("limit=99999999999999999999999", "offset=99999999999999999999999", "limit=-1&offset=-5",
                      "limit=abc&offset=1e9", "limit=1&limit=2&offset=%00", "limit=1.5"):  # fmt: skip
            shots.append(Shot(f"GET {template}?{query}", "GET", f"{path}?{query}", b""))
    return shots


@dataclass
class ServerError:
    request: str  # method and URL, query string included
    cause: str  # the last exception line of Django's traceback


def server_errors(web_log: str) -> list[ServerError]:
    """Every 5xx the web process answered (gunicorn's access log), each with the exception Django logged for it;
    a 5xx Django did not log (a worker killed on timeout) is listed too."""
    answered = re.findall(r'"([A-Z]+) (\S+) HTTP/[\d.]+" (5\d\d) ', web_log)
    causes: dict[str, list[str]] = {}
    for record in re.split(r"^\S+ \S+ ERROR django\.request Internal Server Error: ", web_log, flags=re.M)[1:]:
        path, _, rest = record.partition("\n")
        traceback = re.split(r"^(?:\d{4}-\d\d-\d\d |127\.0\.0\.1 - - \[)", rest, maxsplit=1, flags=re.M)[0]
        lines = [line for line in traceback.splitlines() if re.match(r"^[\w.]+(Error|Exception)\w*: ", line)]
        causes.setdefault(path.strip(), []).append(lines[-1] if lines else traceback.strip()[-300:])
    found = []
    for method, url, status in answered:
        logged = causes.get(urlsplit(url).path) or [f"HTTP {status}, no error logged by Django"]
        found.append(ServerError(f"{method} {url}", logged.pop(0) if len(logged) > 1 else logged[0]))
    return found


def _junk_key(rng) -> str:
    return "".join(rng.choice("abcdefghijklmnopqrstuvwxyz_ü✓") for _ in range(rng.randint(1, 12)))


def _junk(rng, depth: int) -> object:
    kind = rng.randint(0, 6 if depth else 3)
    if kind == 0:
        return rng.randint(-(2**70), 2**70)
    if kind == 1:
        return rng.random() * 10 ** rng.randint(-30, 300)
    if kind == 2:
        return "".join(chr(rng.randint(1, 0xD7FF)) for _ in range(rng.randint(0, 40)))
    if kind == 3:
        return rng.choice([None, True, False])
    if kind in (4, 5):
        return [_junk(rng, depth - 1) for _ in range(rng.randint(0, 5))]
    return {_junk_key(rng): _junk(rng, depth - 1) for _ in range(rng.randint(0, 5))}


def fire(api: Api, shot: Shot) -> int:
    """Send one shot; the status, or 0 when the connection broke before an answer could be read."""
    try:
        response = api.session.request(
            shot.method, f"{api.base}{shot.path}", data=shot.body, headers={"Content-Type": shot.content_type},
            timeout=30,
        )  # fmt: skip
    except requests.ConnectionError:
        return 0
    return response.status_code
