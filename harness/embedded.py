"""The embedded default as a user runs it: ``./dev up`` on SQLite and the filesystem broker, driven over HTTP.

Shared by the soak test and the ``embedded`` benchmark, which only differ in size. Nothing here touches the database
the test suite uses.
"""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import subprocess
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import requests

from .api import Api
from .receiver import Receiver
from .util import ROOT, free_port, tail

PASSWORD = "embedded-admin-pass-4e1f"
# Everything that would point the stack at the suite's PostgreSQL and Redis, or at the test run's own settings.
_NOT_INHERITED = ("DATABASE_URL", "CELERY_BROKER_URL", "SECRETS_ENCRYPTION_KEYS", "DJANGO_SETTINGS_MODULE")
# Lines a healthy stack never prints.
TROUBLE = re.compile(r"database is locked|Traceback|CRITICAL|ERROR/|exited with code|giving up|killing")


@dataclass
class EmbeddedStack:
    """``./dev up`` in a folder of its own (VAR_DIR), listening on a free port."""

    var_dir: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.var_dir.parent / "dev-up.log"

    def start(self, timeout: float = 120) -> EmbeddedStack:
        env = {k: v for k, v in os.environ.items() if k not in _NOT_INHERITED and not k.startswith("PYTEST")}
        env.update(
            VAR_DIR=str(self.var_dir),
            PORT=str(self.port),
            WEB_BIND="127.0.0.1",
            DEMO_ADMIN_PASSWORD=PASSWORD,
            WEBHOOK_ALLOWED_NETWORKS="127.0.0.1/32",
        )
        self._log = open(self.log_path, "wb")  # noqa: SIM115 (closed in stop)
        self.process = subprocess.Popen(
            [str(ROOT / "dev"), "up"], cwd=ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"./dev up exited with {self.process.returncode}:\n{tail(self.log())}")
            try:
                if requests.get(f"{self.base}/admin/login/", timeout=5).status_code == 200 and self.ready():
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"./dev up did not serve within {timeout:.0f} s:\n{tail(self.log())}")

    def ready(self) -> bool:
        """Every Celery process has said it is up (beat says nothing of the kind until it sends)."""
        return self.log().count("ready.") >= 2

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def roots(self) -> dict[str, int]:
        """Each Procfile process's pid, as the supervisor last reported it."""
        return {
            m["name"]: int(m["pid"]) for m in re.finditer(r"\| (?P<name>\w+) started \(pid (?P<pid>\d+)\)", self.log())
        }

    def trouble(self) -> list[str]:
        return [line for line in self.log().splitlines() if TROUBLE.search(line)]

    def interrupt(self, timeout: float = 60) -> int:
        """Ctrl-C, as a user stops it: the exit status of ``./dev up``."""
        assert self.process is not None
        self.process.send_signal(signal.SIGINT)
        try:
            return self.process.wait(timeout=timeout)
        finally:
            self._log.close()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
        if not self._log.closed:
            self._log.close()

    def database(self) -> sqlite3.Connection:
        return sqlite3.connect(f"file:{self.var_dir / 'db.sqlite3'}?mode=ro", uri=True, timeout=30)


def login(base: str) -> Api:
    """The demo's admin, logged in."""
    api = Api(f"{base}/api/v1", timeout=60)
    api.login("admin", PASSWORD)
    return api


@dataclass
class SoakResult:
    events: int
    deliveries_expected: int
    seconds_api: float
    seconds_total: float
    ids: Counter[str]


def soak(stack: EmbeddedStack, receiver: Receiver, *, events: int, webhooks: int = 3, clients: int = 4) -> SoakResult:
    """Three (``webhooks``) automations on ADD_ARTIFACT_ALIAS, then ``events`` alias moves through the API from
    ``clients`` threads at once, each moving its own alias between the demo's two linked versions. Waits until the
    receiver has every delivery, or two minutes plus a little per event."""
    api = login(stack.base)
    team = "teams/demo"
    api.call("POST", f"{team}/projects/training/artifacts/classifier/versions/", json={"type": "model"})
    for version in ("v0", "v1"):
        api.call(
            "POST",
            f"{team}/registered-models/classifier/versions/",
            json={"artifact": f"demo/training/classifier:{version}"},
        )
    for n in range(webhooks):
        hook = api.call("POST", f"{team}/webhooks/", json={"name": f"soak {n}", "url": receiver.url_for(f"hook-{n}")})
        api.call(
            "POST",
            f"{team}/automations/",
            json={
                "name": f"soak {n}",
                "event_type": "ADD_ARTIFACT_ALIAS",
                "registered_model": "classifier",
                "action_type": "WEBHOOK",
                "webhook": hook["id"],
                "payload": {"model": "${artifact_version_string}", "by": "${event_author}"},
            },
        )
    failures: list[BaseException] = []

    def client(index: int, count: int) -> None:
        try:
            session = login(stack.base)
            for move in range(count):
                session.call(
                    "POST",
                    f"{team}/registered-models/classifier/versions/v{move % 2}/aliases/",
                    json={"alias": f"stage-{index}"},
                )
        except BaseException as exc:  # surfaced by the caller
            failures.append(exc)

    started = time.monotonic()
    shares = [events // clients + (1 if i < events % clients else 0) for i in range(clients)]
    threads = [threading.Thread(target=client, args=(i, share)) for i, share in enumerate(shares)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    api_done = time.monotonic()
    if failures:
        raise failures[0]
    expected = events * webhooks
    deadline = time.monotonic() + 120 + events * 0.1
    while receiver.delivered < expected and time.monotonic() < deadline:
        time.sleep(0.2)
    done = time.monotonic()
    time.sleep(2)  # a duplicate would arrive shortly after
    ids = receiver.ids()
    return SoakResult(events, expected, api_done - started, done - started, ids)
