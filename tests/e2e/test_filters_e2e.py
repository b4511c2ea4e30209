"""Filter expressions end to end: a real Celery worker dispatches each link, and a loopback receiver gets a delivery
only for the version whose metadata passes the automation's filter."""

from __future__ import annotations

import json
import time

import pytest

from automations import services
from harness.receiver import Receiver
from harness.util import wait_until
from registry.models import Event
from tests.factories import link, make_registered_model, make_team, make_user

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

WORKER_ENV = {"WEBHOOK_ALLOWED_NETWORKS": "127.0.0.1/32"}
DELIVERY_WORKER = {"queues": "events,deliveries", "pool": "threads", "concurrency": 4}


def test_a_link_is_delivered_only_for_the_version_accurate_enough(worker_factory, settings):
    settings.WEBHOOK_ALLOWED_NETWORKS = ["127.0.0.1/32"]
    with Receiver() as receiver:
        admin = make_user()
        team = make_team(admin=admin)
        model = make_registered_model(team)
        webhook = services.webhook_create(team=team, name="ci", url=receiver.url, user=admin)
        services.automation_create(
            team=team, user=admin, name="accurate", event_type="LINK_ARTIFACT", action_type="WEBHOOK",
            webhook=webhook.pk, filter={"artifact_metadata.accuracy": {"$gte": 0.9}},
            payload={"version": "${artifact_version_string}", "accuracy": "${artifact_metadata.accuracy}"},
        )  # fmt: skip
        worker_factory(**DELIVERY_WORKER, extra_env=WORKER_ENV)

        link(model, user=admin, metadata={"accuracy": 0.5})
        link(model, user=admin, metadata={"accuracy": 0.95})

        wait_until(lambda: len(receiver.requests) >= 1, timeout=30, message="the accurate version's delivery")
        wait_until(
            lambda: not Event.objects.filter(team=team, dispatched_at__isnull=True).exists(),
            timeout=30,
            message="every event dispatched",
        )
        time.sleep(1)  # a delivery for the other version, had one been written, would have arrived by now

    assert [json.loads(r.body) for r in receiver.requests] == [
        {"version": f"{team.name}/model-registry/{model.name}:v1", "accuracy": 0.95}
    ]
