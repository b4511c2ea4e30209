"""The system as production runs it: the Procfile's lines (gunicorn, the ``events`` and ``deliveries`` Celery
workers, beat) as processes on a given database and broker, driven through the REST API, read with psql.

The fault tests run it on private services they break (with a supervisor that restarts any process that exits, as
production's does); the benchmarks run it on their own database and measure it.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import requests

from .api import Api
from .processes import Process, procfile_process, psql
from .util import ROOT, free_port, wait_until

ROLES = ("web", "worker", "deliveries", "beat")
PASSWORD = "fault-injection-Passw0rd"  # the superuser ``admin`` a prepared stack has

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


def stack_env(
    *, database_url: str, broker_url: str, var_dir: Path, secrets_key: str | None = None, **overrides: str
) -> dict[str, str]:
    """Production settings pointed at a database, a broker and a state directory of their own, with this Python's
    scripts first on PATH. Receivers listen on loopback, so webhooks may go there."""
    from cryptography.fernet import Fernet

    secrets_key = secrets_key or Fernet.generate_key().decode()
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DATABASE_URL": database_url,
        "CELERY_BROKER_URL": broker_url,
        "SECRET_KEY": uuid.uuid4().hex * 2,
        "SECRETS_ENCRYPTION_KEYS": secrets_key,
        "VAR_DIR": str(var_dir),
        "PROMETHEUS_MULTIPROC_DIR": str(var_dir / "metrics"),  # never the test process's own
        "PYTHONUNBUFFERED": "1",
        "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '/usr/bin:/bin')}",
        "WEBHOOK_ALLOWED_NETWORKS": "127.0.0.1/32",
        **overrides,
    }


@dataclass
class Fixture:
    """What ``Stack.bootstrap`` made through the API: names to build paths from, and the webhook's id."""

    team: str = "fault"
    model: str = "classifier"
    webhook_id: int = 0
    automations: int = 0
    automation_ids: list[int] = field(default_factory=list)


class Stack:
    """The Procfile's ``roles`` as processes, with logs under ``workdir/logs``.

    ``prepare``: ``start`` migrates and creates the superuser ``admin`` (password ``PASSWORD``) first.
    ``supervise``: any process that exits is started again (every exit is recorded in ``exits``).
    ``distinct_workers``: each Celery worker gets a node name of its own and skips mingle and gossip, so that
    several of a kind start fast side by side; without it the lines run exactly as the Procfile has them.
    """

    def __init__(
        self,
        workdir: Path,
        env: dict[str, str],
        *,
        roles: Iterable[str] = ROLES,
        prepare: bool = False,
        supervise: bool = False,
        distinct_workers: bool = False,
        api_timeout: float = 15,
    ) -> None:
        self.workdir = workdir
        self.logs = workdir / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.roles = tuple(roles)
        self.prepare, self.supervise, self.distinct_workers = prepare, supervise, distinct_workers
        self.port = free_port()
        self.env = {**env, "PORT": str(self.port), "WEB_BIND": "127.0.0.1"}
        self.database_url = self.env["DATABASE_URL"]
        self.processes: list[Process] = []
        self.api = Api(f"{self.base_url}/api/v1", timeout=api_timeout)
        self.token = ""
        self.fixture = Fixture()
        self._counter: Counter[str] = Counter()
        self._lock = threading.Lock()
        self.failures: list[str] = []  # alias calls that got no answer: name and exception, for assertion messages
        self.calls: dict[str, tuple[float, float]] = {}  # alias name → (start, end), time.monotonic()
        self._stopping = threading.Event()
        self.exits: list[str] = []  # every exit the supervisor saw: "name exited CODE (crash|killed)"
        self._supervisor = threading.Thread(target=self._supervise, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def web_workers(self) -> int:
        return int(self.env.get("WEB_CONCURRENCY", "2"))

    # processes

    def manage(self, *args: str, env: dict | None = None, timeout: float = 120) -> str:
        result = subprocess.run(
            [sys.executable, "manage.py", *args], cwd=ROOT, env={**self.env, **(env or {})}, capture_output=True,
            text=True, timeout=timeout,
        )  # fmt: skip
        assert result.returncode == 0, f"manage.py {' '.join(args)}:\n{result.stdout}\n{result.stderr}"
        return result.stdout

    def run(self, kind: str, *, extra: str = "", env: dict | None = None) -> Process:
        """Start a Procfile line (``web``, ``worker``, ``deliveries``, ``beat``); ``extra`` is appended to it."""
        with self._lock:
            self._counter[kind] += 1
            name = f"{kind}-{self._counter[kind]}"
        process = procfile_process(kind, name=name, env={**self.env, **(env or {})}, log_dir=self.logs, extra=extra)
        process.start()
        with self._lock:
            self.processes.append(process)
        return process

    def process(self, kind: str) -> Process:
        """The first process started of this kind."""
        return next(p for p in self.processes if p.kind == kind)

    def _supervise(self) -> None:
        """Start again any process that exits, as production's supervisor does (systemd ``Restart=always``,
        Kubernetes): the README has the Procfile lines run under one."""
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

    def start_web(self, *, timeout: float = 40) -> Process:
        """gunicorn, once it answers with all its workers booted; each is then warmed up (a worker imports Django
        lazily, on its first request)."""
        web = self.run("web")

        def ready() -> bool:
            if not web.alive:
                raise AssertionError(f"{web.name} exited with {web.popen.returncode}:\n{web.tail()}")
            booted = len(re.findall(r"Booting worker with pid", web.log())) >= self.web_workers
            return booted and self._web_answers()

        wait_until(ready, timeout=timeout, interval=0.2, message="gunicorn", details=web.tail)
        for _ in range(self.web_workers * 4):
            self._web_answers()
        return web

    def _web_answers(self) -> bool:
        try:
            return requests.get(f"{self.base_url}/api/v1/teams/", timeout=5).status_code in (401, 403)
        except requests.RequestException:
            return False

    def start_worker(self, kind: str, *, timeout: float = 40, **env: str) -> Process:
        extra = (
            f"-n {kind}-{uuid.uuid4().hex[:8]}@%h --without-mingle --without-gossip" if self.distinct_workers else ""
        )
        worker = self.run(kind, extra=extra, env=env)
        worker.wait_for_log(" ready.", timeout=timeout)
        return worker

    def start_beat(self, *, timeout: float = 40) -> Process:
        beat = self.run("beat", extra=f"--schedule {shlex.quote(str(self.workdir / 'beat-schedule'))}")
        beat.wait_for_log("beat: Starting", timeout=timeout)
        return beat

    def start(self, *, deliveries_workers: int = 1, timeout: float = 90) -> Stack:
        try:
            if self.prepare:
                self.manage("migrate", "--noinput")
                self.manage(
                    "createsuperuser", "--noinput",
                    env={"DJANGO_SUPERUSER_USERNAME": "admin", "DJANGO_SUPERUSER_PASSWORD": PASSWORD,
                         "DJANGO_SUPERUSER_EMAIL": "admin@example.com"},
                )  # fmt: skip
            with ThreadPoolExecutor(4) as pool:
                starting = []
                if "web" in self.roles:
                    starting.append(pool.submit(self.start_web, timeout=timeout))
                if "worker" in self.roles:
                    starting.append(pool.submit(self.start_worker, "worker", timeout=timeout))
                if "deliveries" in self.roles:
                    starting += [
                        pool.submit(self.start_worker, "deliveries", timeout=timeout) for _ in range(deliveries_workers)
                    ]
                if "beat" in self.roles:
                    starting.append(pool.submit(self.start_beat, timeout=timeout))
                for future in starting:
                    future.result()
        except BaseException:
            self.stop()
            raise
        if self.supervise:
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

    def __enter__(self) -> Stack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def roots(self) -> dict[str, int]:
        """Procfile process → pid of the first one of its kind that is running."""
        found: dict[str, int] = {}
        for process in self.processes:
            if process.alive:
                found.setdefault(process.kind, process.pid)
        return found

    def pids(self) -> dict[str, list[int]]:
        """Procfile process → pids of every process of its kind and their descendants (gunicorn workers, pool
        children)."""
        found: dict[str, list[int]] = {}
        for process in self.processes:
            if process.alive:
                found.setdefault(process.kind, []).extend([process.pid, *process.descendants()])
        return found

    def tails(self, lines: int = 25) -> str:
        return "\n".join(p.tail(lines) for p in self.processes)

    # the API

    def bootstrap(self, *, receiver_url: str, automations: int = 1) -> Fixture:
        """Log in, make a team with a registered model holding v0, a signing secret, a webhook and ``automations``
        webhook automations on ADD_ARTIFACT_ALIAS whose payload names the alias and the automation."""
        self.token = self.api.login("admin", PASSWORD)
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
            return self.api.request(
                "POST", path, json={"alias": name}, retry_for=retry_for, timeout=timeout
            ).status_code
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


def fast_stack(
    workdir: Path, *, database_url: str, broker_url: str, env: dict[str, str] | None = None, **options: object
) -> Stack:
    """A prepared stack whose sweeps and timeouts take seconds (``FAST_ENV``), workers named apart: how the tests
    run it. ``env`` adds to or overrides its settings; ``options`` go to ``Stack``."""
    settings = {**FAST_ENV, **(env or {})}
    full = stack_env(database_url=database_url, broker_url=broker_url, var_dir=workdir / "var", **settings)
    return Stack(workdir, full, prepare=True, distinct_workers=True, **options)
