"""/metrics: who may read it, that recorded attempts move its counters (the real recording path, PostgreSQL and a
loopback receiver), and the gauges it reads from the database at scrape time."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from automations import metrics
from automations.models import Destination
from config.metrics_files import dead_files_remove
from harness.receiver import DOWN, Receiver
from launch.models import Agent
from registry.models import Event
from tests.factories import make_team
from tests.unit.test_delivery_path import dispatch_link, team_with_hooks

TOKEN = "metrics-token-0123456789"


def scrape(client: Client, **extra) -> dict[str, float]:
    response = client.get("/metrics", **extra)
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain")
    return {
        (sample.name + "".join(f"|{k}={v}" for k, v in sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.content.decode())
        for sample in family.samples
    }


def attempts(outcome: str) -> float:
    """This process's own count (the scrape sums every process of the machine, test workers included)."""
    return REGISTRY.get_sample_value("registry_delivery_attempts_total", {"outcome": outcome}) or 0.0


# --- Access -----------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_loopback_reads_the_metrics_by_default():
    found = scrape(Client())
    assert "registry_delivery_attempts_total|outcome=succeeded" in found
    assert "registry_delivery_oldest_due_age_seconds" in found


@pytest.mark.django_db
def test_another_address_is_refused_and_sees_no_metric():
    response = Client(REMOTE_ADDR="203.0.113.9").get("/metrics")
    assert response.status_code == 403
    assert b"registry_" not in response.content


@pytest.mark.django_db
def test_with_a_token_a_missing_or_wrong_one_gets_401(settings):
    settings.METRICS_TOKEN = TOKEN
    client = Client()
    for headers in ({}, {"HTTP_AUTHORIZATION": "Bearer wrong"}, {"HTTP_AUTHORIZATION": f"Basic {TOKEN}"}):
        response = client.get("/metrics", **headers)
        assert response.status_code == 401, headers
        assert response["WWW-Authenticate"].startswith("Bearer")
        assert b"registry_" not in response.content
    assert "registry_launch_agents_online" in scrape(client, HTTP_AUTHORIZATION=f"Bearer {TOKEN}")


@pytest.mark.django_db
def test_the_token_does_not_open_an_address_outside_the_networks(settings):
    settings.METRICS_TOKEN = TOKEN
    response = Client(REMOTE_ADDR="203.0.113.9").get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 403


@pytest.mark.django_db
def test_without_networks_any_address_with_the_token_reads_them(settings):
    settings.METRICS_TOKEN, settings.METRICS_ALLOWED_NETWORKS = TOKEN, []
    remote = Client(REMOTE_ADDR="203.0.113.9")
    assert remote.get("/metrics").status_code == 401
    assert "registry_destination_breakers_open" in scrape(remote, HTTP_AUTHORIZATION=f"Bearer {TOKEN}")


@pytest.mark.django_db
def test_with_neither_networks_nor_token_nobody_reads_them(settings):
    settings.METRICS_ALLOWED_NETWORKS = []
    response = Client().get("/metrics")
    assert response.status_code == 403
    assert b"registry_" not in response.content


@pytest.mark.django_db
def test_a_listed_network_other_than_loopback_is_let_in(settings):
    settings.METRICS_ALLOWED_NETWORKS = ["10.0.0.0/8"]
    assert Client(REMOTE_ADDR="127.0.0.1").get("/metrics").status_code == 403
    scrape(Client(REMOTE_ADDR="10.1.2.3"))


@pytest.mark.django_db
def test_behind_a_proxy_on_this_machine_the_network_check_is_on_the_client_it_forwarded(settings):
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "NUM_PROXIES": 1}
    # nginx on this machine: the connection is from loopback, the client is the address it appended
    through_proxy = Client(REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR="127.0.0.1, 203.0.113.9")
    assert through_proxy.get("/metrics").status_code == 403
    # Prometheus scraping the web process directly, without the proxy
    scrape(Client(REMOTE_ADDR="127.0.0.1"))


@pytest.mark.django_db
def test_only_get_and_head():
    assert Client().post("/metrics").status_code == 405


# --- Counters --------------------------------------------------------------------------------------------


@pytest.fixture
def loopback(settings):
    settings.WEBHOOK_ALLOWED_NETWORKS = ["127.0.0.1/32"]


@pytest.mark.django_db(transaction=True)
def test_a_recorded_success_is_counted_with_its_duration_and_first_attempt_delay(loopback, purge_broker):
    succeeded, durations, delays = (
        attempts("succeeded"),
        REGISTRY.get_sample_value("registry_delivery_attempt_duration_seconds_count") or 0.0,
        REGISTRY.get_sample_value("registry_delivery_first_attempt_delay_seconds_count") or 0.0,
    )
    with Receiver() as receiver:
        _, model, _ = team_with_hooks(receiver.url)
        dispatch_link(model)
        assert len(receiver.requests) == 1
    assert attempts("succeeded") == succeeded + 1
    assert REGISTRY.get_sample_value("registry_delivery_attempt_duration_seconds_count") == durations + 1
    assert REGISTRY.get_sample_value("registry_delivery_first_attempt_delay_seconds_count") == delays + 1
    # and /metrics, which sums the processes' files, shows at least this process's count
    assert scrape(Client())["registry_delivery_attempts_total|outcome=succeeded"] >= succeeded + 1


@pytest.mark.django_db(transaction=True)
def test_a_failed_answer_is_counted_as_retrying(loopback, purge_broker):
    retrying, succeeded = attempts("retrying"), attempts("succeeded")
    with Receiver(DOWN) as receiver:
        _, model, _ = team_with_hooks(receiver.url)
        dispatch_link(model)
        assert len(receiver.requests) == 1
    assert (attempts("retrying"), attempts("succeeded")) == (retrying + 1, succeeded)


@pytest.mark.django_db(transaction=True)
def test_counting_adds_no_query_to_the_record(loopback, purge_broker):
    """The count is taken from what the attempt holds: the recording path runs as many queries with it as without."""
    from automations import attempts as attempts_module

    def queries_of_one_delivery() -> int:
        with Receiver() as receiver, CaptureQueriesContext(connection) as captured:
            _, model, _ = team_with_hooks(receiver.url)
            dispatch_link(model)
        return len(captured)

    queries_of_one_delivery()  # warm up (content types, first-use caches)
    counted = queries_of_one_delivery()
    original = attempts_module._counted
    attempts_module._counted = lambda outcome: metrics.Counted(outcome="succeeded", duration=None, first_delay=None)
    try:
        uncounted = queries_of_one_delivery()
    finally:
        attempts_module._counted = original
    assert counted == uncounted


# --- Gauges ----------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_gauges_read_the_waiting_work_from_the_database():
    client = Client()
    before = scrape(client)
    assert before["registry_event_oldest_undispatched_age_seconds"] == 0
    assert before["registry_destination_breakers_open"] == 0
    assert before["registry_launch_items|state=pending"] == 0

    team = make_team()
    event = Event.objects.create(type="LINK_ARTIFACT", team=team, context={})
    Event.objects.filter(pk=event.pk).update(created_at=timezone.now() - timedelta(seconds=120))
    Destination.objects.create(key="https://ci.example.com:443", open_until=timezone.now() + timedelta(minutes=1))
    Destination.objects.create(key="https://closed.example.com:443")
    now = timezone.now()
    Agent.objects.create(team=team, name="online", token_hash="a" * 64, token_prefix="a", last_seen_at=now)
    Agent.objects.create(
        team=team, name="lost", token_hash="b" * 64, token_prefix="b", last_seen_at=now - timedelta(hours=1)
    )

    after = scrape(client)
    assert 120 <= after["registry_event_oldest_undispatched_age_seconds"] < 180
    assert after["registry_destination_breakers_open"] == 1
    assert after["registry_launch_agents_online"] == 1
    # and the URL of an open destination never appears
    assert "ci.example.com" not in client.get("/metrics").content.decode()


@pytest.mark.django_db(transaction=True)
def test_a_delivery_due_but_not_sent_shows_its_age(loopback, purge_broker, settings):
    settings.DISPATCH_SEND_MAX = 0  # the dispatch leaves it to the deliveries queue, which nothing consumes here
    from automations.models import Delivery

    with Receiver() as receiver:
        _, model, _ = team_with_hooks(receiver.url)
        event = dispatch_link(model)
    delivery = Delivery.objects.get(event=event)
    Delivery.objects.filter(pk=delivery.pk).update(
        next_attempt_at=timezone.now() - timedelta(seconds=300), claimed_until=None
    )
    assert 300 <= scrape(Client())["registry_delivery_oldest_due_age_seconds"] < 360


def test_files_of_processes_that_ended_are_removed_and_live_ones_kept(tmp_path):
    import os

    live, dead = tmp_path / f"counter_{os.getpid()}.db", tmp_path / "histogram_999999999.db"
    live.write_bytes(b"x")
    dead.write_bytes(b"x")
    assert dead_files_remove(tmp_path) == [dead]
    assert live.exists() and not dead.exists()
