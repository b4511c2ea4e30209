"""End to end through real processes: the API on a live server, a Celery worker subprocess, Redis, PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import pytest
import redis
import requests
from django.conf import settings
from django.utils import timezone

from harness.util import wait_until
from registry.models import Event
from tests.factories import link, make_registered_model, make_team, make_user

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_a_link_through_the_api_is_dispatched_by_a_real_worker(live_server, worker_factory):
    worker = worker_factory()
    admin = make_user("engineer")
    team = make_team("acme", admin=admin)
    make_registered_model(team, "classifier")
    api = requests.Session()
    token = api.post(
        f"{live_server.url}/api/v1/auth/token/", json={"username": "engineer", "password": "correct-horse-battery-9"}
    ).json()["token"]
    api.headers["Authorization"] = f"Token {token}"
    base = f"{live_server.url}/api/v1/teams/acme"

    logged = api.post(f"{base}/projects/", json={"name": "training"})
    assert logged.status_code == 201, logged.text
    artifact = api.post(f"{base}/projects/training/artifacts/classifier/versions/", json={"type": "model"})
    assert artifact.status_code == 201, artifact.text
    linked = api.post(
        f"{base}/registered-models/classifier/versions/",
        json={"artifact": artifact.json()["reference"], "aliases": ["production"]},
    )
    assert linked.status_code == 201, linked.text

    def all_dispatched():
        events = api.get(f"{base}/events/").json()["results"]
        return len(events) == 3 and all(e["dispatched_at"] for e in events) and events

    events = wait_until(all_dispatched, timeout=20, message="the worker to dispatch the three events")
    assert sorted(e["type"] for e in events) == ["ADD_ARTIFACT_ALIAS", "CREATE_ARTIFACT", "LINK_ARTIFACT"]
    assert worker.log().count("registry.tasks.event_dispatch") >= 3


def test_the_sweeper_dispatches_an_event_whose_task_never_reached_the_broker(worker_factory):
    model = make_registered_model(make_team())
    event = Event.objects.get(model_version=link(model))
    # The on-commit send was lost (the broker died with it): nothing in the queue, the event still pending.
    redis.Redis.from_url(settings.CELERY_BROKER_URL).flushdb()
    Event.objects.filter(pk=event.pk).update(created_at=timezone.now() - timedelta(minutes=1))

    worker_factory(beat=True, extra_env={"EVENT_SWEEP_INTERVAL": "0.5", "EVENT_REDISPATCH_AFTER": "1"})

    def dispatched():
        event.refresh_from_db()
        return event.dispatched_at

    wait_until(dispatched, timeout=30, message="the sweeper to resend the event and a worker to dispatch it")
    assert event.dispatch_scheduled_at is not None  # it was the sweeper that sent it
    assert event.dispatch_attempts == 1
