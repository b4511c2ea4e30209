"""Each event type end to end: a change made through the API, its event, and a signed delivery that a receiver on
loopback gets and verifies, sent by a real Celery worker."""

from __future__ import annotations

import json

import pytest
import requests

from automations import services
from automations.models import Delivery
from harness.receiver import Receiver
from harness.util import wait_until
from registry import outbox
from registry.models import Event
from secrets_vault import services as vault
from tests.e2e.test_deliveries_e2e import DELIVERY_WORKER, SIGNING, WORKER_ENV, openssl_signature, standard_signature
from tests.factories import PASSWORD, link, make_artifact_version, make_registered_model, make_team, make_user

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

COMMON = {"type": "${event_type}", "id": "${event_id}", "by": "${event_author}", "v": "${artifact_version_string}"}
# name -> (event type, scope, the payload's own variables)
AUTOMATIONS = {
    "created": ("CREATE_ARTIFACT", {"project": "training"}, {}),
    "linked": ("LINK_ARTIFACT", {"registered_model": "classifier"}, {}),
    "aliased": ("ADD_ARTIFACT_ALIAS", {}, {"alias": "${alias}"}),
    "unaliased": ("REMOVE_ARTIFACT_ALIAS", {"registered_model": "classifier"}, {"alias": "${alias}"}),
    "unlinked": ("UNLINK_ARTIFACT", {}, {}),
    "tagged": ("ADD_ARTIFACT_TAG", {"project": "training", "collection": "classifier"}, {"tag": "${tag}"}),
    "untagged": ("REMOVE_ARTIFACT_TAG", {"project": "training"}, {"tag": "${tag}"}),
}


def test_every_event_type_reaches_its_endpoint_signed(live_server, worker_factory, settings):
    settings.WEBHOOK_ALLOWED_NETWORKS = ["127.0.0.1/32"]
    with Receiver() as receiver:
        author = make_user("ada")
        team = make_team("acme", admin=author)
        model = make_registered_model(team, "classifier")
        link(model, user=author)  # v0, training/classifier:v0
        for event in Event.objects.all():  # dispatched before any automation exists: they match none
            outbox.event_dispatch(event_id=event.pk)
        vault.secret_create(team=team, name="SIGNING", value=SIGNING, user=author)
        webhook = services.webhook_create(team=team, name="ci", url=receiver.url, secret="SIGNING", user=author)
        for name, (event_type, scope, own) in AUTOMATIONS.items():
            services.automation_create(
                team=team, user=author, name=name, event_type=event_type, action_type="WEBHOOK",
                webhook=webhook.pk, payload={**COMMON, **own}, **scope,
            )  # fmt: skip
        worker_factory(**DELIVERY_WORKER, extra_env=WORKER_ENV)
        api = requests.Session()
        token = api.post(f"{live_server.url}/api/v1/auth/token/", json={"username": "ada", "password": PASSWORD})
        api.headers["Authorization"] = f"Token {token.json()['token']}"
        root = f"{live_server.url}/api/v1/teams/acme/"
        tags = root + "projects/training/artifacts/classifier/versions/v1/tags/"

        created = make_artifact_version(team, user=author)  # training/classifier:v1, committed: CREATE_ARTIFACT
        answers = [
            api.post(root + "registered-models/classifier/versions/", json={"artifact": created.reference}),
            api.post(root + "registered-models/classifier/versions/v1/aliases/", json={"alias": "production"}),
            api.delete(root + "registered-models/classifier/aliases/production/"),
            api.delete(root + "registered-models/classifier/versions/v0/"),
            api.post(tags, json={"tag": "reviewed"}),
            api.delete(tags + "reviewed/"),
        ]
        assert [a.status_code for a in answers] == [201, 201, 204, 204, 201, 204], [a.text for a in answers]
        wait_until(lambda: len(receiver.requests) >= len(AUTOMATIONS), timeout=60, message="every delivery")

    received = {json.loads(r.body)["type"]: r for r in receiver.requests}
    assert len(receiver.requests) == len(AUTOMATIONS) and set(received) == {t for t, _, _ in AUTOMATIONS.values()}
    expected = {
        "CREATE_ARTIFACT": {"v": "acme/training/classifier:v1"},
        "LINK_ARTIFACT": {"v": "acme/model-registry/classifier:v1"},
        "ADD_ARTIFACT_ALIAS": {"v": "acme/model-registry/classifier:production", "alias": "production"},
        "REMOVE_ARTIFACT_ALIAS": {"v": "acme/model-registry/classifier:production", "alias": "production"},
        "UNLINK_ARTIFACT": {"v": "acme/model-registry/classifier:v0"},
        "ADD_ARTIFACT_TAG": {"v": "acme/training/classifier:v1", "tag": "reviewed"},
        "REMOVE_ARTIFACT_TAG": {"v": "acme/training/classifier:v1", "tag": "reviewed"},
    }
    for event_type, request in received.items():
        body = json.loads(request.body)
        headers = {k.lower(): v for k, v in request.headers.items()}
        assert headers["x-wandb-signature"] == openssl_signature(SIGNING, request.body)
        assert headers["webhook-signature"] == standard_signature(SIGNING, headers, request.body)
        delivery = Delivery.objects.select_related("event").get(pk=headers["webhook-id"])
        assert delivery.event.type == event_type and body["id"] == str(delivery.event.pk)
        assert {k: v for k, v in body.items() if k not in ("type", "id", "by")} == expected[event_type]
        assert body["by"] == "ada"


def test_a_run_by_hand_is_delivered_by_the_worker_and_recorded_in_the_history(live_server, worker_factory, settings):
    settings.WEBHOOK_ALLOWED_NETWORKS = ["127.0.0.1/32"]
    with Receiver() as receiver:
        author = make_user("ada")
        team = make_team("acme", admin=author)
        link(make_registered_model(team, "classifier"), user=author, aliases=["production"])
        for event in Event.objects.all():
            outbox.event_dispatch(event_id=event.pk)
        webhook = services.webhook_create(team=team, name="ci", url=receiver.url, user=author)
        deploy = services.automation_create(
            team=team, user=author, name="deploy", event_type="ADD_ARTIFACT_ALIAS", action_type="WEBHOOK",
            webhook=webhook.pk, payload={**COMMON, "alias": "${alias}"}, throttle_runs=1, throttle_window=3600,
        )  # fmt: skip
        worker_factory(**DELIVERY_WORKER, extra_env=WORKER_ENV)
        api = requests.Session()
        token = api.post(f"{live_server.url}/api/v1/auth/token/", json={"username": "ada", "password": PASSWORD})
        api.headers["Authorization"] = f"Token {token.json()['token']}"
        runs = f"{live_server.url}/api/v1/teams/acme/automations/{deploy.pk}/"

        answers = [api.post(runs + "run/", json={"version": "classifier:production"}) for _ in range(2)]
        assert [a.status_code for a in answers] == [202, 202], answers[0].text
        wait_until(lambda: len(receiver.requests) >= 2, timeout=60, message="both runs delivered")

        def settled():
            history = api.get(runs + "runs/").json()["results"]
            return history if {r["delivery_status"] for r in history} == {"succeeded"} else None

        history = wait_until(settled, timeout=30, message="both runs succeeded")

    assert sorted(json.loads(r.body)["id"] for r in receiver.requests) == sorted(
        a.json()["events"][0]["id"] for a in answers
    )
    # Both went out although the throttle allows one an hour: runs by hand are outside it.
    assert [(r["manual"], r["outcome"], r["version"]) for r in history] == [
        (True, "delivery", "acme/model-registry/classifier:production")
    ] * 2
