"""A chain of automations through CI, stopped: the webhook's payload carries ``${event_id}``, and the receiver (a
stand-in for a CI workflow) moves the alias back through the API with it as ``X-Registry-Caused-By``. Each move
fires the automation again, one level deeper, until ``EVENT_CHAIN_LIMIT``."""

from __future__ import annotations

import itertools
import json
import threading

import pytest
import requests

from automations import services as automations
from harness.receiver import Received, Receiver
from harness.util import wait_until
from registry import services as registry_services
from registry.models import Event
from tests.factories import link, make_registered_model, make_team, make_user

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

LIMIT = 3


def test_a_ci_workflow_calling_back_with_the_event_id_stops_at_the_chain_limit(live_server, worker_factory, settings):
    settings.WEBHOOK_ALLOWED_NETWORKS = ["127.0.0.1/32"]
    settings.EVENT_CHAIN_LIMIT = LIMIT
    admin = make_user()
    team = make_team(admin=admin)
    model = make_registered_model(team)
    for _ in range(2):
        link(model, user=admin)
    _, token = registry_services.api_token_create(user=admin)
    aliases = f"{live_server.url}/api/v1/teams/{team.name}/registered-models/{model.name}/versions/{{}}/aliases/"
    calls: list[requests.Response] = []

    def ci_workflow(received: Received) -> None:
        """What a workflow does with the payload: move production to the other version, naming the event."""
        payload = json.loads(received.body)
        # Counted here, in arrival order: the next delivery may arrive before this call's answer does.
        other = "v1" if len(receiver.requests) % 2 == 1 else "v0"  # the first move put it on v0

        def call() -> None:
            headers = {"Authorization": f"Token {token}", "X-Registry-Caused-By": payload["event_id"]}
            calls.append(
                requests.post(aliases.format(other), json={"alias": "production"}, headers=headers, timeout=20)
            )

        threading.Thread(target=call, daemon=True).start()  # not under the receiver's lock

    with Receiver(on_request=ci_workflow) as receiver:
        webhook = automations.webhook_create(team=team, name="ci", url=receiver.url, user=admin)
        automations.automation_create(
            team=team, user=admin, webhook=webhook.pk, name="deploy", event_type="ADD_ARTIFACT_ALIAS",
            registered_model=model.name, alias_regex="production", action_type="WEBHOOK",
            payload={"event_id": "${event_id}", "model": "${artifact_version_string}"},
        )  # fmt: skip
        worker_factory(
            queues="events,deliveries", pool="threads", concurrency=4,
            extra_env={"WEBHOOK_ALLOWED_NETWORKS": "127.0.0.1/32", "EVENT_CHAIN_LIMIT": str(LIMIT)},
        )  # fmt: skip
        first = requests.post(
            aliases.format("v0"), json={"alias": "production"}, headers={"Authorization": f"Token {token}"}, timeout=20
        )
        assert first.status_code == 201, first.text

        def stopped() -> Event | None:
            return Event.objects.filter(depth=LIMIT + 1).exclude(dispatched_at=None).first()

        def state() -> str:
            events = Event.objects.order_by("created_at").values_list("type", "depth", "dispatched_at", "dispatch_note")
            return f"events: {list(events)}\ncalls: {[(c.status_code, c.text[:200]) for c in calls]}"

        last = wait_until(stopped, timeout=60, message="the chain to reach its limit", details=state)
        assert len(receiver.requests) == LIMIT + 1  # depths 0 to LIMIT were dispatched, each sent once

    chain = list(Event.objects.filter(type="ADD_ARTIFACT_ALIAS").order_by("depth"))
    assert [e.depth for e in chain] == list(range(LIMIT + 2))
    assert all(e.caused_by_id == cause.pk for cause, e in itertools.pairwise(chain))
    assert [json.loads(r.body)["event_id"] for r in receiver.requests] == [str(e.pk) for e in chain[:-1]]
    assert "exceeds the limit" in last.dispatch_note and not last.deliveries.exists()
    assert all(call.status_code == 201 for call in calls)
