"""The outbox: dispatch once, hand events to handlers, stop automation chains, sweep what was never sent."""

from __future__ import annotations

from datetime import timedelta

import pytest
import redis
from django.conf import settings
from django.utils import timezone

from registry import events as event_registry
from registry import outbox, services
from registry.models import Event
from tests.factories import add_member, api_client, link, make_registered_model, make_team

pytestmark = pytest.mark.django_db


@pytest.fixture
def recorded():
    """A dispatch handler, registered for the test like an app registers one in ready()."""
    seen: list[Event] = []

    def handler(event):
        seen.append(event)

    event_registry.event_handler_register(handler)
    yield seen
    event_registry._HANDLERS.remove(handler)


def events_queue_length() -> int:
    return redis.Redis.from_url(settings.CELERY_BROKER_URL).llen("events")


def test_event_types_are_a_registry():
    names = [t.name for t in event_registry.event_types()]
    assert names[:2] == ["LINK_ARTIFACT", "ADD_ARTIFACT_ALIAS"]
    assert [v.name for v in event_registry.event_type_get("ADD_ARTIFACT_ALIAS").extra_variables] == ["alias"]
    with pytest.raises(ValueError, match="already registered"):
        event_registry.EventType("LINK_ARTIFACT", "dup", "dup").register()


def test_dispatch_hands_the_event_to_handlers_once(recorded):
    event = Event.objects.get(model_version=link(make_registered_model(make_team())))

    assert outbox.event_dispatch(event_id=event.pk) is True
    assert outbox.event_dispatch(event_id=event.pk) is False  # a redelivered task is a no-op

    event.refresh_from_db()
    assert [e.pk for e in recorded] == [event.pk]
    assert event.dispatched_at is not None and event.dispatch_attempts == 1


def test_a_failing_handler_leaves_the_event_undispatched_with_a_note():
    event = Event.objects.get(model_version=link(make_registered_model(make_team())))

    def broken(event):
        raise ConnectionError("the database of a downstream app hiccuped")

    event_registry.event_handler_register(broken)
    try:
        with pytest.raises(ConnectionError):
            outbox.event_dispatch(event_id=event.pk)
    finally:
        event_registry._HANDLERS.remove(broken)

    event.refresh_from_db()
    assert event.dispatched_at is None
    assert "Dispatch failed (ConnectionError)" in event.dispatch_note
    assert outbox.event_dispatch(event_id=event.pk) is True  # and it goes through once the cause is gone


def test_events_deeper_than_the_chain_limit_are_recorded_but_not_dispatched(settings, recorded):
    settings.EVENT_CHAIN_LIMIT = 2
    team = make_team()
    model = make_registered_model(team)
    first = Event.objects.get(model_version=link(model))
    cause = first
    chain = [first]
    for _ in range(3):  # an automation's job aliasing again, and again...
        mv = link(model)
        alias, _ = services.alias_add(model_version=mv, name="candidate", user=None, caused_by=cause)
        cause = Event.objects.get(model_version=alias.model_version, alias="candidate")
        chain.append(cause)

    assert [e.depth for e in chain] == [0, 1, 2, 3]
    for event in chain:
        outbox.event_dispatch(event_id=event.pk)

    dispatched_to_handlers = {e.pk for e in recorded}
    assert {e.pk for e in chain[:3]} <= dispatched_to_handlers
    assert chain[3].pk not in dispatched_to_handlers
    chain[3].refresh_from_db()
    assert chain[3].dispatched_at is not None  # settled, so the sweeper leaves it alone
    assert "exceeds the limit of 2" in chain[3].dispatch_note


def test_caused_by_header_links_the_new_event_to_its_cause():
    team = make_team()
    model = make_registered_model(team)
    cause = Event.objects.get(model_version=link(model))
    mv = link(model)
    client = api_client(add_member(team))

    response = client.post(
        f"/api/v1/teams/{team.name}/registered-models/{model.name}/versions/{mv.version}/aliases/",
        {"alias": "staging"},
        format="json",
        HTTP_X_REGISTRY_CAUSED_BY=str(cause.pk),
    )

    assert response.status_code == 201, response.content
    event = Event.objects.get(alias="staging")
    assert event.caused_by_id == cause.pk and event.depth == 1


@pytest.mark.django_db(transaction=True)
def test_sweeper_resends_stale_undispatched_events_once_per_interval(settings, purge_broker):
    settings.EVENT_REDISPATCH_AFTER = 30
    model = make_registered_model(make_team())
    stale = Event.objects.get(model_version=link(model))
    fresh = Event.objects.get(model_version=link(model))
    done = Event.objects.get(model_version=link(model))
    Event.objects.filter(pk__in=[stale.pk, done.pk]).update(created_at=timezone.now() - timedelta(minutes=5))
    Event.objects.filter(pk=done.pk).update(dispatched_at=timezone.now())
    redis.Redis.from_url(settings.CELERY_BROKER_URL).flushdb()  # the on-commit sends were lost

    assert outbox.events_sweep() == 1
    assert events_queue_length() == 1
    assert outbox.events_sweep() == 0  # just resent: not again until the interval has passed
    stale.refresh_from_db()
    assert stale.dispatch_scheduled_at is not None
    assert fresh.pk != stale.pk
