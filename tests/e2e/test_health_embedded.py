"""Health on the embedded default (``./dev up``: SQLite, the filesystem broker, the Procfile's two workers under one
default node name, beat): /readyz and ``manage.py workers_alive`` as a supervisor of that machine would use them."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import requests

from harness.embedded import _NOT_INHERITED, EmbeddedStack
from harness.util import ROOT, tail, wait_until

pytestmark = [pytest.mark.e2e]


def workers_alive(var_dir, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in _NOT_INHERITED and not k.startswith("PYTEST")}
    return subprocess.run(
        [sys.executable, "manage.py", "workers_alive", *args],
        cwd=ROOT, env={**env, "VAR_DIR": str(var_dir)}, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_the_embedded_stack_is_ready_and_its_workers_and_beat_alive_until_it_stops(tmp_path):
    stack = EmbeddedStack(var_dir=tmp_path / "var").start()
    try:
        assert requests.get(f"{stack.base}/healthz", timeout=5).json() == {"status": "ok"}
        ready = requests.get(f"{stack.base}/readyz", timeout=5)
        assert ready.status_code == 200, ready.text
        assert ready.json()["checks"] == {"database": "ok", "broker": "ok"}
        # beat's first tick comes once it has started, shortly after the workers said they were ready
        alive = wait_until(
            lambda: (r := workers_alive(stack.var_dir)).returncode == 0 and r,
            timeout=30, message="workers_alive to pass", details=lambda: tail(stack.log()),
        )  # fmt: skip
        assert "alive: workers (events, deliveries) and beat" in alive.stdout
    finally:
        assert stack.interrupt() == 0
    dead = workers_alive(stack.var_dir, "--timeout", "1", "--beat-max-age", "1")
    assert dead.returncode == 1
    assert "consuming events, deliveries answered within 1 s" in dead.stderr
    assert "beat's heartbeat is" in dead.stderr
