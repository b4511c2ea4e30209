"""A receiver that has only the client (or only the official Standard Webhooks library) verifies a real delivery:
a real Celery worker sends it to a real HTTP receiver on loopback."""

from __future__ import annotations

import base64
import time

import pytest
import standardwebhooks
from registry_client.webhooks import WebhookVerificationError, verify

from automations import services
from automations.models import Delivery
from harness.receiver import Receiver
from harness.util import wait_until
from secrets_vault import services as vault
from tests.factories import link, make_registered_model, make_team, make_user

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

WHSEC = "whsec_" + base64.b64encode(b"a 24-byte signing key!!!").decode()
PLAIN = "a plain secret, ünïcode & spaces"


def test_a_real_delivery_verifies_with_the_client_and_with_the_official_standard_webhooks_library(
    worker_factory, settings
):
    settings.WEBHOOK_ALLOWED_NETWORKS = ["127.0.0.1/32"]
    admin = make_user()
    team = make_team(admin=admin)
    model = make_registered_model(team)
    vault.secret_create(team=team, name="WHSEC", value=WHSEC, user=admin)
    vault.secret_create(team=team, name="PLAIN", value=PLAIN, user=admin)
    with Receiver() as receiver:
        for secret in ("WHSEC", "PLAIN"):
            webhook = services.webhook_create(
                team=team, name=secret.lower(), url=f"{receiver.url}/{secret}", secret=secret, user=admin
            )
            services.automation_create(
                team=team, user=admin, name=f"notify {secret}", event_type="LINK_ARTIFACT", action_type="WEBHOOK",
                webhook=webhook.pk, payload={"version": "${artifact_version_string}", "by": "${event_author}"},
            )  # fmt: skip
        worker_factory(queues="events,deliveries", extra_env={"WEBHOOK_ALLOWED_NETWORKS": "127.0.0.1/32"})

        link(model, user=admin)
        wait_until(lambda: len(receiver.requests) == 2, message="both deliveries")

    received = {request.path.rsplit("/", 1)[1]: request for request in receiver.requests}
    for name, secret, official_key in (("WHSEC", WHSEC, WHSEC), ("PLAIN", PLAIN, PLAIN.encode())):
        request = received[name]
        # The client's helpers check both schemes, the id and the timestamp.
        verify(secret, request.body, request.headers)
        # The official library (which takes a non-whsec_ secret as raw key bytes) agrees and parses the body.
        payload = standardwebhooks.Webhook(official_key).verify(request.body, request.headers)
        assert payload == {"version": f"{team.name}/model-registry/{model.name}:v0", "by": admin.username}
        # Both refuse the same request under another secret, or replayed outside the tolerance.
        with pytest.raises(WebhookVerificationError):
            verify(WHSEC if name == "PLAIN" else PLAIN, request.body, request.headers)
        with pytest.raises(standardwebhooks.webhooks.WebhookVerificationError):
            standardwebhooks.Webhook(b"another key").verify(request.body, request.headers)
        with pytest.raises(WebhookVerificationError, match="tolerance"):
            verify(secret, request.body, request.headers, now=time.time() + 301)
    delivery_ids = {str(pk) for pk in Delivery.objects.values_list("pk", flat=True)}
    assert {request.headers["webhook-id"] for request in receiver.requests} == delivery_ids
