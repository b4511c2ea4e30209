"""Webhook tests hanging on a trickling endpoint leave the web process answering everything else on time.

The Procfile's ``web`` line (gunicorn, its default workers and threads) runs as a process on a database of its own
and a private Redis (harness/stack.py). Two teams each test a webhook twice at once against an endpoint that
answers its headers and then one byte a second; while those tests wait for their ``WEBHOOK_TEST_DEADLINE``, a client
reads a team 50 times in a row, each on a new connection (so any web worker may take it), and every answer must come
at its usual speed: a test may hold only ``WEBHOOK_TEST_MAX_PER_PROCESS`` of a worker's threads, and tests beyond
that are refused with a 429 at once instead of queueing ahead of everybody else.
"""

from __future__ import annotations

import statistics
import threading
import time
from dataclasses import dataclass, field

import pytest
import requests

from harness.processes import PrivateRedis, SharedServerDatabase
from harness.receiver import Receiver
from harness.stack import PASSWORD, Stack, fast_stack
from harness.util import wait_until

pytestmark = [pytest.mark.e2e]

TEST_DEADLINE = 8.0
TEAMS = ("alpha", "beta")


@dataclass
class WebhookTestCall:
    team: str
    status: int = 0
    seconds: float = 0.0
    body: dict = field(default_factory=dict)
    retry_after: str | None = None


@dataclass
class Measured:
    tests: list[WebhookTestCall]
    get_seconds: list[float]
    get_statuses: list[int]
    hanging_after_gets: int  # tests still waiting on the endpoint when the last read answered

    @property
    def hung(self) -> list[WebhookTestCall]:
        return [t for t in self.tests if t.status == 200]

    @property
    def refused(self) -> list[WebhookTestCall]:
        return [t for t in self.tests if t.status == 429]

    def quantile(self, q: float) -> float:
        ordered = sorted(self.get_seconds)
        return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]

    def line(self, label: str) -> str:
        ms = [s * 1000 for s in self.get_seconds]
        return (
            f"{label}: {len(self.tests)} tests ({len(self.hung)} hung until the deadline, {len(self.refused)} refused "
            f"429); {len(ms)} GET /teams/<t>/ while they hung: p50={statistics.median(ms):.0f} ms "
            f"p99={self.quantile(0.99) * 1000:.0f} ms max={max(ms):.0f} ms; "
            f"{self.hanging_after_gets} tests still hanging after the last GET"
        )


def web_stack(tmp_path, env: dict[str, str]):
    """Start the Procfile's web line on a fresh database; returns (stack, cleanup)."""
    redis = PrivateRedis(tmp_path).start()
    database = SharedServerDatabase()
    database.create()
    stack = fast_stack(tmp_path / "stack", database_url=database.url, broker_url=redis.url, env=env, roles=("web",))

    def cleanup() -> None:
        stack.stop()
        database.drop()
        redis.stop()

    try:
        stack.start()  # migrate, the superuser, the web line
    except BaseException:
        cleanup()
        raise
    return stack, cleanup


def measure(stack: Stack, receiver: Receiver, *, tests_per_team: int = 2, gets: int = 50) -> Measured:
    """Start ``tests_per_team`` tests of each team against ``receiver`` at once; once each has reached the
    endpoint or been refused, read a team ``gets`` times in a row, each on a new connection."""
    api = stack.api
    token = api.post("/auth/token/", {"username": "admin", "password": PASSWORD})["token"]
    auth = {"Authorization": f"Token {token}"}
    api.session.headers.update(auth)
    webhooks = {}
    for team in TEAMS:
        api.post("/teams/", {"name": team})
        webhooks[team] = api.post(f"/teams/{team}/webhooks/", {"name": "slow", "url": receiver.url})["id"]

    def read(team: str) -> tuple[int, float]:
        started = time.monotonic()
        response = requests.get(f"{api.base}/teams/{team}/", headers={**auth, "Connection": "close"}, timeout=120)
        return response.status_code, time.monotonic() - started

    for n in range(10):  # every web worker's first requests are slow; they are not what is measured
        assert read(TEAMS[n % 2])[0] == 200

    calls = [WebhookTestCall(team) for team in TEAMS for _ in range(tests_per_team)]

    def test(call: WebhookTestCall) -> None:
        started = time.monotonic()
        response = requests.post(
            f"{api.base}/teams/{call.team}/webhooks/{webhooks[call.team]}/test/",
            json={"payload": {"event": "${event_type}"}}, headers=auth, timeout=TEST_DEADLINE + 120,
        )  # fmt: skip
        call.status, call.seconds = response.status_code, time.monotonic() - started
        call.body, call.retry_after = response.json(), response.headers.get("Retry-After")

    threads = [threading.Thread(target=test, args=(call,), daemon=True) for call in calls]
    for thread in threads:
        thread.start()
    wait_until(
        lambda: len(receiver.requests) + sum(c.status == 429 for c in calls) == len(calls), timeout=TEST_DEADLINE / 2,
        message="every test to reach the endpoint or be refused",
        details=lambda: f"endpoint got {len(receiver.requests)}; {calls}\n{stack.tails()}",
    )  # fmt: skip
    statuses, seconds = zip(*(read(TEAMS[n % 2]) for n in range(gets)), strict=True)
    hanging = sum(thread.is_alive() for thread in threads)
    for thread in threads:
        thread.join(timeout=TEST_DEADLINE + 150)
    return Measured(calls, list(seconds), list(statuses), hanging)


@pytest.fixture
def stack(tmp_path):
    stack, cleanup = web_stack(tmp_path, {"WEBHOOK_TEST_DEADLINE": str(TEST_DEADLINE)})
    yield stack
    cleanup()


def test_reads_answer_at_their_usual_speed_while_four_tests_hang_on_a_trickling_endpoint(stack, request):
    with Receiver(trickle=int(TEST_DEADLINE) * 4) as trickling:
        measured = measure(stack, trickling)
    line = measured.line(f"web tests hanging, WEBHOOK_TEST_DEADLINE={TEST_DEADLINE:g}")
    request.node.user_properties.append(("figures", line))
    print(line)

    # The reads came while tests were still waiting on the endpoint, and none of them waited for one
    assert measured.hanging_after_gets > 0, line
    assert set(measured.get_statuses) == {200}, line
    assert measured.quantile(0.99) < 0.5, line
    assert max(measured.get_seconds) < 1.0, line
    # A web worker lets at most WEBHOOK_TEST_MAX_PER_PROCESS (2) tests wait at once: with two workers at least two
    # tests went out; any beyond a worker's share were refused at once, with the reason and when to try again
    assert len(measured.hung) + len(measured.refused) == 4, line
    assert len(measured.hung) >= 2, line
    for call in measured.refused:
        assert call.body["code"] == "too_many_tests", call
        assert call.retry_after == "5", call
        assert call.seconds < 2, call
    # Those that went out ended at the test deadline, with the status line the endpoint sent and why it stopped
    for call in measured.hung:
        assert call.body["status_code"] == 200, call
        assert call.body["error"] == f"deadline of {TEST_DEADLINE:.1f} s exceeded reading the response body", call
        assert TEST_DEADLINE <= call.seconds < TEST_DEADLINE + 4, call
    assert len(trickling.requests) == len(measured.hung)
    assert stack.sql("SELECT count(*) FROM automations_sendslot WHERE kind = 'test'") == "0"
