"""The login limit on the production web line: two gunicorn workers, the cache they share in Redis, and a client
that writes a new X-Forwarded-For on every try from a new connection."""

from __future__ import annotations

import pytest
import requests

from harness.processes import PrivateRedis, SharedServerDatabase
from harness.stack import fast_stack

pytestmark = [pytest.mark.e2e]

LIMIT = 5


def test_the_login_limit_holds_across_two_gunicorn_workers_and_a_rotating_forwarded_for(tmp_path):
    redis = PrivateRedis(tmp_path).start()
    database = SharedServerDatabase()
    database.create()
    env = {"WEB_CONCURRENCY": "2", "LOGIN_THROTTLE_RATE": f"{LIMIT}/min"}
    stack = fast_stack(tmp_path / "stack", database_url=database.url, broker_url=redis.url, env=env, roles=("web",))
    try:
        stack.start()  # migrate, the superuser admin, the web line
        assert len(stack.pids()["web"]) == 3, stack.pids()  # the master and two workers

        answers = []
        for n in range(4 * LIMIT):
            # A fresh connection each time, so the attempts spread over both workers.
            with requests.Session() as fresh:
                response = fresh.post(
                    f"{stack.base_url}/api/v1/auth/token/",
                    json={"username": "admin", "password": f"guess-{n}"},
                    headers={"X-Forwarded-For": f"198.51.100.{n}", "Connection": "close"},
                    timeout=15,
                )
            answers.append(response.status_code)
    finally:
        stack.stop()
        database.drop()
        redis.stop()

    # One budget for the machine's client address, whichever worker answered and whatever the header claimed; a
    # per-process count would have let up to twice the limit through.
    assert answers[:LIMIT] == [400] * LIMIT, answers
    assert set(answers[LIMIT:]) == {429}, answers
