"""A real Prometheus (Debian's ``prometheus``) scrapes the Procfile's processes (gunicorn, the events and deliveries
Celery workers) with the README's scrape configuration, token included, and counts a delivery made to a loopback
receiver: the counter is written by a Celery worker and served by a gunicorn worker from the shared directory."""

from __future__ import annotations

import shutil
import time

import pytest
import requests

from harness.processes import PrivateRedis, Process, SharedServerDatabase
from harness.receiver import Receiver
from harness.stack import fast_stack
from harness.util import free_port, wait_until

pytestmark = pytest.mark.e2e

TOKEN = "scrape-token-e2e-0123456789"

SCRAPE_CONFIG = """\
global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: registry
    metrics_path: /metrics
    authorization:
      credentials: {token}
    static_configs:
      - targets: ["127.0.0.1:{port}"]
"""


def prometheus_binary() -> str:
    found = shutil.which("prometheus")
    if found is None:
        pytest.fail(
            "the prometheus binary is not installed: apt-get install prometheus (.ci/run installs it); "
            "this test runs a real Prometheus server and is not skipped without one",
            pytrace=False,
        )
    return found


@pytest.fixture
def prometheus_factory(tmp_path):
    started: list[Process] = []

    def start(target_port: int) -> str:
        binary = prometheus_binary()
        port = free_port()
        config = tmp_path / "prometheus.yml"
        config.write_text(SCRAPE_CONFIG.format(token=TOKEN, port=target_port))
        process = Process(
            "prometheus",
            [binary, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
            env={"PATH": "/usr/bin:/bin"}, log_dir=tmp_path,
        )  # fmt: skip
        started.append(process.start())
        url = f"http://127.0.0.1:{port}"

        def ready() -> bool:
            if not process.alive:
                raise AssertionError(f"prometheus exited:\n{process.tail()}")
            try:
                return requests.get(f"{url}/-/ready", timeout=2).status_code == 200
            except requests.RequestException:
                return False

        wait_until(ready, timeout=30, interval=0.2, message="prometheus to be ready", details=process.tail)
        return url

    yield start
    for process in started:
        process.stop()


def query(prometheus: str, expression: str) -> list[dict]:
    answer = requests.get(f"{prometheus}/api/v1/query", params={"query": expression}, timeout=5).json()
    assert answer["status"] == "success", answer
    return answer["data"]["result"]


def value(prometheus: str, expression: str) -> float | None:
    result = query(prometheus, expression)
    return float(result[0]["value"][1]) if result else None


def wait_for(prometheus: str, expression: str, expected: float, *, details) -> None:
    wait_until(
        lambda: value(prometheus, expression) == expected,
        timeout=30, interval=0.5, message=f"Prometheus to answer {expression} = {expected}",
        details=lambda: f"{query(prometheus, expression)}\n{details()}",
    )  # fmt: skip


def test_prometheus_scrapes_a_delivery_counted_by_a_celery_worker(tmp_path, prometheus_factory):
    redis = PrivateRedis(tmp_path).start()
    database = SharedServerDatabase(prefix="registry_metrics")
    database.create()
    stack = fast_stack(
        tmp_path / "stack", database_url=database.url, broker_url=redis.url, env={"METRICS_TOKEN": TOKEN},
        roles=("web", "worker", "deliveries"),
    )  # fmt: skip
    try:
        stack.start()
        prometheus = prometheus_factory(stack.port)
        # given Prometheus scraping the web process, with the token
        wait_for(prometheus, 'up{job="registry"}', 1, details=stack.tails)
        assert value(prometheus, 'registry_delivery_attempts_total{outcome="succeeded"}') == 0
        assert value(prometheus, "registry_launch_agents_online") == 0

        # when a change fires an automation whose webhook answers 200
        with Receiver() as receiver:
            stack.bootstrap(receiver_url=receiver.url)
            assert stack.alias("production") == 201
            wait_until(lambda: len(receiver.requests) == 1, timeout=30, message="the delivery", details=stack.describe)
            time.sleep(0.5)
            assert len(receiver.requests) == 1

        # then Prometheus shows it counted, timed, and nothing waiting
        wait_for(prometheus, 'registry_delivery_attempts_total{outcome="succeeded"}', 1, details=stack.tails)
        assert value(prometheus, "registry_delivery_attempt_duration_seconds_count") == 1
        assert value(prometheus, "registry_delivery_first_attempt_delay_seconds_count") == 1
        assert value(prometheus, 'registry_delivery_attempts_total{outcome="retrying"}') == 0
        assert value(prometheus, "registry_event_oldest_undispatched_age_seconds") == 0
        assert value(prometheus, "registry_delivery_oldest_due_age_seconds") == 0

        # and without the token the same endpoint gives nothing away
        refused = requests.get(f"{stack.base_url}/metrics", timeout=5)
        assert refused.status_code == 401 and b"registry_" not in refused.content
    finally:
        stack.stop()
        database.drop()
        redis.stop()
