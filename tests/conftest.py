"""Test setup. The suite runs on PostgreSQL and Redis (``./dev test`` points it there); see tests/README."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid

import pytest
from django.conf import settings
from django.db import connection


def pytest_report_header(config) -> list[str]:
    db = settings.DATABASES["default"]
    return [
        f"database: {db['ENGINE'].rsplit('.', 1)[-1]} {db.get('HOST') or ''}:{db.get('PORT') or ''}/{db['NAME']}",
        f"broker: {settings.CELERY_BROKER_URL.split('@')[-1]}",
    ]


@pytest.fixture(autouse=True, scope="session")
def _real_services(django_db_setup, django_db_blocker) -> None:
    """Refuse to pass on SQLite unless asked to: the bar is the production stack."""
    if os.environ.get("ALLOW_SQLITE_TESTS") == "1":
        return
    with django_db_blocker.unblock():
        vendor = connection.vendor
    assert vendor == "postgresql", (
        "The suite runs on PostgreSQL: run it with ./dev test, or set DATABASE_URL=postgres://... "
        "(ALLOW_SQLITE_TESTS=1 to run on SQLite anyway)."
    )
    assert settings.CELERY_BROKER_URL.startswith("redis://"), "The suite runs with a Redis broker (./dev test)."


@pytest.fixture(autouse=True)
def _test_settings(settings) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    # Events of the test process go through the broker to the test's workers; inline dispatch has its own tests.
    settings.DISPATCH_INLINE = False
    # Pages rendered in tests need no collectstatic run (production's manifest storage does).
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }


# --- Real processes ---------------------------------------------------------------------------------------


def _test_database_url() -> str:
    """The URL of the test database pytest-django created, for processes started by the tests."""
    db = connection.settings_dict
    return f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


class WorkerProcess:
    """A real ``celery worker`` subprocess on the test database and broker; its log is kept for assertions."""

    def __init__(
        self,
        *,
        log_path,
        queues: str = "events",
        beat: bool = False,
        extra_env: dict | None = None,
        pool: str = "prefork",
        concurrency: int = 2,
    ):
        self.log_path = log_path
        self.env = {
            **os.environ,
            "DATABASE_URL": _test_database_url(),
            "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
            "PYTHONUNBUFFERED": "1",
            **(extra_env or {}),
        }
        self.args = [
            sys.executable, "-m", "celery", "-A", "config", "worker", "-Q", queues, "-l", "INFO",
            "--pool", pool, "--concurrency", str(concurrency), "-n", f"test-{uuid.uuid4().hex[:8]}@%h",
            "--without-gossip", "--without-mingle",
        ]  # fmt: skip
        if beat:
            self.args += ["-B", "--schedule", str(log_path.with_suffix(".beat"))]
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 40) -> WorkerProcess:
        self._log = open(self.log_path, "ab")  # noqa: SIM115 (closed in stop)
        self.process = subprocess.Popen(
            self.args, env=self.env, stdout=self._log, stderr=subprocess.STDOUT, cwd=settings.BASE_DIR
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if b" ready." in self.log_path.read_bytes():
                return self
            if self.process.poll() is not None:
                break
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"celery worker did not start:\n{self.log()}")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if getattr(self, "_log", None):
            self._log.close()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def wait_until(predicate, *, timeout: float = 20, interval: float = 0.05, message: str = "condition", details=None):
    """Poll ``predicate`` until it returns something true (returned), or fail naming ``message`` and, when given,
    what ``details()`` says of the state."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(interval)
    extra = f"\n{details()}" if details else ""
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {message}{extra}")


@pytest.fixture
def purge_broker():
    """Empty the test broker's queues so a test sees only its own messages."""
    import redis

    client = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    client.flushdb()
    yield
    client.flushdb()


@pytest.fixture
def worker_factory(transactional_db, tmp_path, purge_broker):
    started: list[WorkerProcess] = []

    def start(**kwargs) -> WorkerProcess:
        worker = WorkerProcess(log_path=tmp_path / f"worker-{len(started)}.log", **kwargs).start()
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()


@pytest.fixture(autouse=True)
def _live_server_closes_connections(request):
    """The live server answers each request on a new thread; persistent connections would pile up per thread."""
    if "live_server" not in request.fixturenames:
        yield
        return
    from django.db import connections

    db = connections.settings["default"]
    previous = db["CONN_MAX_AGE"]
    db["CONN_MAX_AGE"] = 0
    yield
    db["CONN_MAX_AGE"] = previous
