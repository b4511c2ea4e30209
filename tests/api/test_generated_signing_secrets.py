"""Signing secrets generated in the Standard Webhooks form (``whsec_`` and base64), from the API and the admin:
the value is answered once, and a real delivery signed with it verifies with the official ``standardwebhooks``
library as it is, while ``X-Wandb-Signature`` keeps its plain HMAC over the whole secret."""

from __future__ import annotations

import base64
import re

import pytest
import standardwebhooks
from django.urls import reverse
from registry_client.webhooks import verify, wandb_signature
from rest_framework.test import APIClient

from harness.receiver import Receiver
from secrets_vault.models import Secret
from secrets_vault.services import secret_values
from tests import factories as f

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def team_admin(settings):
    settings.WEBHOOK_ALLOWED_NETWORKS = ["127.0.0.1/32"]
    admin = f.make_user(staff=True)
    f.make_team("acme", admin=admin)
    return admin


def secrets_url() -> str:
    return reverse("secrets", kwargs={"team": "acme"})


def admin_add_secret(client, admin, **fields: str):
    """Post the admin's add-secret form for the admin's team, named SIGNING."""
    client.force_login(admin)
    team = admin.memberships.get().team
    url = reverse("admin:secrets_vault_secret_add") + f"?team={team.pk}"
    return client.post(url, {"team": team.pk, "name": "SIGNING", **fields})


def test_a_generated_secret_is_answered_once_in_the_whsec_form(team_admin):
    api = f.api_client(team_admin)

    created = api.post(secrets_url(), {"name": "SIGNING", "generate": "whsec"}, format="json")

    assert created.status_code == 201, created.content
    value = created.json()["value"]
    assert re.fullmatch(r"whsec_[A-Za-z0-9+/]+=*", value)
    assert len(base64.b64decode(value.removeprefix("whsec_"))) == 32
    team = Secret.objects.get().team
    assert secret_values(team=team, names={"SIGNING"}) == {"SIGNING": value}
    assert value not in api.get(secrets_url()).content.decode()
    again = api.post(secrets_url(), {"name": "OTHER", "generate": "whsec"}, format="json").json()["value"]
    assert again != value


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "S", "generate": "whsec", "value": "v"}, "generate"),
        ({"name": "S"}, "value"),
        ({"name": "S", "generate": "rsa"}, "generate"),
        ({"name": "9bad", "generate": "whsec"}, "name"),
    ],
    ids=["both", "neither", "unknown-kind", "bad-name"],
)
def test_a_bad_generate_request_names_the_field_and_writes_nothing(team_admin, body, field):
    response = f.api_client(team_admin).post(secrets_url(), body, format="json")

    assert response.status_code == 400, response.content
    assert field in response.json()["errors"]
    assert not Secret.objects.exists()


def test_the_admin_generates_a_secret_and_shows_it_on_the_answering_page_only(team_admin, client):
    team = team_admin.memberships.get().team

    page = admin_add_secret(client, team_admin, value="", generate="on")

    assert page.status_code == 200, page.content
    value = secret_values(team=team, names={"SIGNING"})["SIGNING"]
    assert value.startswith("whsec_") and value in page.content.decode()
    assert "no-cache" in page["Cache-Control"] or "no-store" in page["Cache-Control"]
    assert value not in client.get(reverse("admin:secrets_vault_secret_changelist")).content.decode()
    secret = Secret.objects.get(name="SIGNING")
    assert value not in client.get(reverse("admin:secrets_vault_secret_change", args=[secret.pk])).content.decode()


def test_the_admin_refuses_both_a_value_and_generate(team_admin, client):
    page = admin_add_secret(client, team_admin, value="typed", generate="on")

    assert page.status_code == 200 and "not both" in page.content.decode()
    assert not Secret.objects.exists()


def test_a_delivery_signed_with_a_generated_secret_verifies_with_the_official_library(team_admin, purge_broker):
    api = f.api_client(team_admin)
    generated = api.post(secrets_url(), {"name": "SIGNING", "generate": "whsec"}, format="json").json()["value"]
    team = team_admin.memberships.get().team
    with Receiver() as receiver:
        event = f.link_delivered(
            team, user=team_admin, url=receiver.url, payload={"v": "${artifact_version_string}"}, secret="SIGNING"
        )

    (got,) = receiver.requests
    # The official library takes the whsec_ secret as it is, as its documentation shows
    payload = standardwebhooks.Webhook(generated).verify(got.body, got.headers)
    assert payload == {"v": f"acme/model-registry/{event.model_version.registered_model.name}:v0"}
    with pytest.raises(standardwebhooks.webhooks.WebhookVerificationError):
        standardwebhooks.Webhook("whsec_" + base64.b64encode(b"another key").decode()).verify(got.body, got.headers)
    # X-Wandb-Signature stays the HMAC keyed by the secret's own text, whsec_ prefix and all
    assert got.headers["X-Wandb-Signature"] == wandb_signature(generated, got.body)
    verify(generated, got.body, got.headers)


def test_the_schema_documents_the_generated_value_in_the_create_answer(team_admin):
    schema = APIClient().get("/api/schema/", {"format": "json"}).json()
    created = schema["paths"]["/api/v1/teams/{team}/secrets/"]["post"]["responses"]["201"]
    reference = created["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[-1]
    properties = schema["components"]["schemas"][reference]["properties"]
    assert properties["value"]["readOnly"] is True and "once" in properties["value"]["description"]
    assert "generate" in schema["components"]["schemas"]["SecretCreateRequest"]["properties"]
