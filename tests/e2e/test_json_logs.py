"""LOG_FORMAT=json in real processes: a Celery worker sending a delivery, and the Procfile's gunicorn web process."""

from __future__ import annotations

import json
import os

import pytest
import requests
from django.conf import settings

from harness.processes import procfile_process
from harness.receiver import Receiver, Reply
from harness.util import free_port, wait_until
from tests.conftest import _test_database_url
from tests.factories import link, make_registered_model
from tests.unit.test_attempt_log import TOKEN, hook_with_token

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def json_lines(log: str) -> list[dict]:
    """Every log line (those starting with "{"; Celery's start-up banner is printed, not logged), parsed."""
    return [json.loads(line) for line in log.splitlines() if line.startswith("{")]


def test_a_worker_logs_json_lines_and_the_attempt_line_carries_its_fields(worker_factory, settings):
    settings.WEBHOOK_ALLOWED_NETWORKS = ["127.0.0.1/32"]
    env = {"LOG_FORMAT": "json", "WEBHOOK_ALLOWED_NETWORKS": "127.0.0.1/32"}
    worker = worker_factory(queues="events,deliveries", pool="threads", concurrency=4, extra_env=env)
    with Receiver(Reply(200, {"X-Echo": TOKEN}, TOKEN.encode())) as receiver:
        webhook = hook_with_token(receiver.url)
        link(make_registered_model(webhook.team))
        worker.wait_for_log('"verdict": "succeeded"', timeout=30)
    lines = json_lines(worker.log())
    assert any(line["logger"] == "celery.apps.worker" and line["message"].endswith(" ready.") for line in lines)
    (sent,) = [line for line in lines if "verdict" in line]
    assert {"time", "level", "logger", "message"} <= sent.keys()
    assert sent["status_code"] == 200 and sent["webhook_id"] == webhook.pk
    assert sent["destination"] == f"http://127.0.0.1:{receiver.port}"
    assert TOKEN not in worker.log()


def answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).ok
    except requests.RequestException:
        return False


def test_the_web_process_logs_json_lines(tmp_path):
    port = free_port()
    env = {
        **os.environ, "DATABASE_URL": _test_database_url(), "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
        "LOG_FORMAT": "json", "PORT": str(port), "WEB_BIND": "127.0.0.1", "WEB_CONCURRENCY": "1",
    }  # fmt: skip
    web = procfile_process("web", name="web", env=env, log_dir=tmp_path).start()
    try:
        wait_until(lambda: answers(f"http://127.0.0.1:{port}/healthz"), timeout=30, message="web", details=web.tail)
        assert requests.get(f"http://127.0.0.1:{port}/api/v1/no-such-thing", timeout=5).status_code == 404
        wait_until(lambda: "no-such-thing" in web.log() and '"gunicorn.access"' in web.log(), timeout=10,
                   message="the request logged", details=web.tail)  # fmt: skip
    finally:
        web.stop()
    lines = json_lines(web.log())
    assert any(line["logger"] == "django.request" and "/api/v1/no-such-thing" in line["message"] for line in lines)
    assert any(line["logger"] == "gunicorn.access" and "no-such-thing" in line["message"] for line in lines)
