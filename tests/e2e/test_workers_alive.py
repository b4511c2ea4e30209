"""``manage.py workers_alive`` against real Celery worker and beat processes on Redis."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from django.conf import settings

from harness.util import ROOT
from tests.conftest import _test_database_url

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def workers_alive(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "DATABASE_URL": _test_database_url(), "CELERY_BROKER_URL": settings.CELERY_BROKER_URL}
    return subprocess.run(
        [sys.executable, "manage.py", "workers_alive", *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_alive_while_the_workers_and_beat_run_and_not_once_they_stopped(worker_factory, tmp_path):
    worker = worker_factory(queues="events,deliveries", beat=True, pool="threads", concurrency=2)
    schedule = str(tmp_path / f"{worker.name}.beat")
    worker.wait_for_log("beat: Starting", timeout=20)

    alive = workers_alive("--beat-schedule", schedule)
    assert alive.returncode == 0, alive.stderr
    assert "alive: workers (events, deliveries) and beat" in alive.stdout

    other_host = workers_alive("--no-beat", "--hostname", "another-machine")
    assert other_host.returncode == 1
    assert "no worker of another-machine consuming events, deliveries" in other_host.stderr

    worker.stop()
    dead = workers_alive("--beat-schedule", schedule, "--beat-max-age", "0.5", "--timeout", "1")
    assert dead.returncode == 1
    assert "consuming events, deliveries answered within 1 s" in dead.stderr
    assert "beat's heartbeat is" in dead.stderr


def test_a_missing_queue_and_a_missing_beat_are_named(worker_factory, tmp_path):
    worker_factory(queues="events", pool="threads", concurrency=1)
    result = workers_alive("--beat-schedule", str(tmp_path / "no-beat-here"))
    assert result.returncode == 1
    assert "consuming deliveries answered" in result.stderr
    assert "consuming events" not in result.stderr
    assert "beat has no heartbeat" in result.stderr

    events_only = workers_alive("--queues", "events", "--no-beat")
    assert events_only.returncode == 0, events_only.stderr
