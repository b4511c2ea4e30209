"""Testing a webhook is bounded: its own deadline (``WEBHOOK_TEST_DEADLINE``), at most ``WEBHOOK_TEST_MAX_PER_TEAM``
tests of a team at once across every process and ``WEBHOOK_TEST_MAX_PER_PROCESS`` in one web process; more are
refused with a 429 naming the limit, in the API and on the admin's Test page.

The endpoints are real sockets on loopback that accept a connection and never answer, or answer slowly; concurrent
tests are concurrent requests through the Django test client from threads, so those tests commit their data
(``transaction=True``) for the other threads' connections to see.
"""

from __future__ import annotations

import socket
import threading
import time
from datetime import timedelta

import pytest
from django.db import connection
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from automations import services
from automations.models import Delivery, DeliveryAttempt, SendSlot
from harness.receiver import Receiver
from harness.util import wait_until
from registry import services as registry_services
from registry.models import Event
from tests.factories import make_team, make_user

DEADLINE = 1.5
PAYLOAD = {"event": "${event_type}", "fixed": 1}


class Endpoint:
    """A webhook endpoint on loopback. With ``trickle=0`` it accepts every connection and holds it without reading
    or answering; otherwise it answers 200 with its headers at once and then a body of ``trickle`` bytes, one every
    ``interval`` seconds."""

    def __init__(self, *, trickle: int = 0, interval: float = 0.5) -> None:
        self.trickle, self.interval = trickle, interval
        self.server = socket.create_server(("127.0.0.1", 0))
        self.server.settimeout(0.05)
        self.connections: list[socket.socket] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.getsockname()[1]}/hook"

    @property
    def accepted(self) -> int:
        with self._lock:
            return len(self.connections)

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self.connections.append(conn)
            if self.trickle:
                threading.Thread(target=self._answer_slowly, args=(conn,), daemon=True).start()

    def _answer_slowly(self, conn: socket.socket) -> None:
        try:
            conn.recv(65536)  # the request (headers and the small body)
            conn.sendall(f"HTTP/1.1 200 OK\r\nContent-Length: {self.trickle}\r\n\r\n".encode())
            for _ in range(self.trickle):
                if self._stop.wait(self.interval):
                    return
                conn.sendall(b".")
        except OSError:
            pass  # the client gave up

    def __enter__(self) -> Endpoint:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.server.close()
        with self._lock:
            for conn in self.connections:
                conn.close()


@pytest.fixture
def limits(settings):
    settings.WEBHOOK_ALLOWED_NETWORKS = ["127.0.0.1/32"]
    settings.WEBHOOK_TEST_DEADLINE = DEADLINE
    settings.WEBHOOK_TEST_MAX_PER_TEAM = 2
    settings.WEBHOOK_TEST_MAX_PER_PROCESS = 10
    return settings


class Admin:
    """An admin of a team and an API token of theirs, made in the test's thread; ``test`` works from any thread."""

    def __init__(self, name: str) -> None:
        self.user = make_user()
        self.team = make_team(name, admin=self.user)
        _, self.token = registry_services.api_token_create(user=self.user)

    def webhook(self, url: str, name: str = "hook") -> int:
        return services.webhook_create(team=self.team, name=name, url=url, user=self.user).pk

    def test(self, webhook_id: int, payload: object = PAYLOAD):
        path = f"/api/v1/teams/{self.team.name}/webhooks/{webhook_id}/test/"
        client = APIClient()  # one per request: a client is not shared between threads
        client.credentials(HTTP_AUTHORIZATION=f"Token {self.token}")
        return client.post(path, {"payload": payload}, format="json")


class Running:
    """Tests sent from threads, each with its own database connection (closed when it ends)."""

    def __init__(self) -> None:
        self.results: list = []
        self.threads: list[threading.Thread] = []

    def start(self, admin: Admin, webhook_id: int) -> None:
        def run() -> None:
            try:
                started = time.monotonic()
                response = admin.test(webhook_id)
                self.results.append((response, time.monotonic() - started))
            finally:
                connection.close()

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        self.threads.append(thread)

    def join(self) -> list:
        for thread in self.threads:
            thread.join(timeout=DEADLINE + 20)
        assert not any(t.is_alive() for t in self.threads), "a test outlived its deadline"
        return self.results


def slots_held() -> int:
    return SendSlot.objects.filter(kind=SendSlot.Kind.TEST).count()


def records() -> tuple[int, int, int]:
    return Delivery.objects.count(), DeliveryAttempt.objects.count(), Event.objects.count()


@pytest.mark.django_db(transaction=True)
def test_a_team_beyond_its_concurrent_tests_is_refused_while_another_team_is_not(limits):
    a, b = Admin("team-a"), Admin("team-b")
    with Endpoint() as hanging, Receiver() as quick:
        a_hanging, a_quick, b_hanging = a.webhook(hanging.url), a.webhook(quick.url, "quick"), b.webhook(hanging.url)
        running = Running()
        for _ in range(2):
            running.start(a, a_hanging)
        wait_until(lambda: hanging.accepted == 2, timeout=10, message="two tests of team-a to reach the endpoint")

        # A third test of team-a is refused at once, even to another of its webhooks, and nothing is sent
        started = time.monotonic()
        refused = a.test(a_quick)
        refused_in = time.monotonic() - started
        # Team-b is not: its test goes out while team-a's two still hang
        running.start(b, b_hanging)
        wait_until(lambda: hanging.accepted == 3, timeout=10, message="team-b's test to reach the endpoint")
        results = running.join()

        assert refused.status_code == 429, refused.content
        body = refused.json()
        assert body["code"] == "too_many_tests"
        assert body["detail"] == "team-a already has 2 webhook tests under way (at most 2); try again when one ends."
        assert refused["Retry-After"] == "5"
        assert refused_in < 1.0
        assert quick.requests == []
        # The three that went out waited for the endpoint until the test deadline, no longer
        assert sorted(r.status_code for r, _ in results) == [200, 200, 200]
        for response, seconds in results:
            answer = response.json()
            assert answer["status_code"] is None
            assert f"{DEADLINE:.1f} s" in answer["error"], answer
            assert DEADLINE <= seconds < DEADLINE + 3
        # They hold no slot any more: team-a's tests go out again
        assert slots_held() == 0
        again = a.test(a_quick)
        assert again.status_code == 200, again.content
        assert again.json()["status_code"] == 200
        assert len(quick.requests) == 1
        assert slots_held() == 0


@pytest.mark.django_db(transaction=True)
def test_a_process_beyond_its_concurrent_tests_refuses_any_team(limits):
    limits.WEBHOOK_TEST_MAX_PER_PROCESS = 2
    a, b = Admin("team-a"), Admin("team-b")
    with Endpoint() as hanging:
        a_hanging, b_hanging = a.webhook(hanging.url), b.webhook(hanging.url)
        running = Running()
        running.start(a, a_hanging)
        running.start(b, b_hanging)
        wait_until(lambda: hanging.accepted == 2, timeout=10, message="two tests to reach the endpoint")

        refused = b.test(b_hanging)
        results = running.join()

        assert refused.status_code == 429, refused.content
        assert refused.json()["code"] == "too_many_tests"
        assert refused.json()["detail"] == (
            "Too many webhook tests are under way on this server (at most 2 at once); try again in a few seconds."
        )
        assert refused["Retry-After"] == "5"
        assert hanging.accepted == 2  # the refused test sent nothing
        assert sorted(r.status_code for r, _ in results) == [200, 200]
        assert slots_held() == 0


@pytest.mark.django_db
def test_a_test_on_a_trickling_endpoint_ends_at_the_test_deadline_and_records_nothing(limits):
    a = Admin("team-a")
    with Endpoint(trickle=40, interval=0.5) as trickling:
        webhook = a.webhook(trickling.url)
        before = records()

        started = time.monotonic()
        response = a.test(webhook)
        seconds = time.monotonic() - started

    assert response.status_code == 200, response.content
    answer = response.json()
    # The status line came at once; the body did not come in time
    assert answer["status_code"] == 200
    assert answer["error"] == f"deadline of {DEADLINE:.1f} s exceeded reading the response body", answer
    assert DEADLINE <= seconds < DEADLINE + 2
    assert DEADLINE * 1000 <= answer["duration_ms"] < (DEADLINE + 1) * 1000
    assert records() == before
    assert slots_held() == 0


def _held_elsewhere(team, n: int, *, expires_in: float = 30) -> None:
    """Test slots held by other web processes."""
    expires = timezone.now() + timedelta(seconds=expires_in)
    SendSlot.objects.bulk_create([SendSlot(kind=SendSlot.Kind.TEST, team=team, expires_at=expires) for _ in range(n)])


@pytest.mark.django_db
def test_tests_under_way_in_other_processes_count_and_lapse_with_their_lease(limits):
    a = Admin("team-a")
    with Receiver() as quick:
        webhook = a.webhook(quick.url)
        _held_elsewhere(a.team, 2)

        refused = a.test(webhook)
        assert refused.status_code == 429, refused.content
        assert refused.json()["code"] == "too_many_tests"
        assert quick.requests == []

        SendSlot.objects.update(expires_at=timezone.now() - timedelta(seconds=1))  # their holders died
        response = a.test(webhook)

    assert response.status_code == 200, response.content
    assert response.json()["status_code"] == 200
    assert len(quick.requests) == 1


@pytest.mark.django_db
def test_a_bad_payload_is_refused_as_such_while_the_team_is_at_its_limit(limits):
    a = Admin("team-a")
    with Receiver() as quick:
        webhook = a.webhook(quick.url)
        _held_elsewhere(a.team, 2)

        response = a.test(webhook, {"x": "${nope}"})

    assert response.status_code == 400, response.content
    assert list(response.json()["errors"]) == ["payload"]
    assert quick.requests == []
    assert slots_held() == 2  # none taken


@pytest.mark.django_db
def test_the_admin_test_page_shows_a_refusal(client, limits):
    root = make_user(superuser=True)
    client.force_login(root)
    team = make_team("team-a", admin=root)
    with Receiver() as quick:
        webhook = services.webhook_create(team=team, name="hook", url=quick.url, user=root)
        _held_elsewhere(team, 2)

        response = client.post(
            reverse("admin:automations_webhook_test", args=[webhook.pk]), {"payload": '{"a": "${event_type}"}'}
        )

    assert response.status_code == 200
    form = response.context["form"]
    message = "team-a already has 2 webhook tests under way (at most 2); try again when one ends."
    assert form.non_field_errors() == [message]
    assert message in response.content.decode()
    assert response.context["result"] is None
    assert quick.requests == []
