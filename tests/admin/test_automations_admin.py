"""The admin for webhooks, automations and deliveries: same rules as the API, secrets never shown."""

from __future__ import annotations

import pytest

from automations import services
from automations.models import Automation, Delivery, Webhook
from registry import outbox
from registry.models import Event
from secrets_vault import services as vault
from tests.factories import link, make_registered_model, make_team, make_user

pytestmark = pytest.mark.django_db
VALUE = "admin-page-secret-value-0987"


@pytest.fixture
def scenario(settings, client):
    settings.WEBHOOK_ALLOWED_NETWORKS = ["127.0.0.1/32"]
    root = make_user(superuser=True)
    client.force_login(root)
    team = make_team(admin=root)
    model = make_registered_model(team)
    secret = vault.secret_create(team=team, name="TOKEN", value=VALUE, user=root)
    webhook = services.webhook_create(team=team, name="ci", url="http://127.0.0.1:9/", access_token="TOKEN", user=root)
    services.automation_create(
        team=team, user=root, name="notify", event_type="LINK_ARTIFACT", action_type="WEBHOOK",
        webhook=webhook.pk, payload={"v": "${artifact_version_string}", "k": "${TOKEN}"},
    )  # fmt: skip
    outbox.event_dispatch(event_id=Event.objects.get(model_version=link(model)).pk)
    return team, model, webhook, secret


def test_lists_and_pages_open_and_never_show_a_secret(client, scenario):
    delivery = Delivery.objects.get()
    pages = [
        "/admin/automations/webhook/", f"/admin/automations/webhook/{scenario[2].pk}/change/",
        "/admin/automations/automation/", f"/admin/automations/automation/{Automation.objects.get().pk}/change/",
        "/admin/automations/delivery/", f"/admin/automations/delivery/{delivery.pk}/change/",
        "/admin/secrets_vault/secret/", f"/admin/secrets_vault/secret/{scenario[3].pk}/change/",
    ]  # fmt: skip
    for page in pages:
        response = client.get(page)
        assert response.status_code == 200, page
        assert VALUE not in response.content.decode(), page
    detail = client.get(pages[5]).content.decode()
    assert "${TOKEN}" in detail and ":v0" in detail  # the payload as sent, secrets as ${NAME}


def test_an_unsafe_url_is_a_form_error(client, scenario, settings):
    settings.WEBHOOK_ALLOWED_NETWORKS = []
    response = client.post(
        "/admin/automations/webhook/add/",
        {"team": scenario[0].pk, "name": "meta", "url": "http://169.254.169.254/latest", "enabled": "on"},
    )
    assert response.status_code == 200
    assert "URL refused" in response.content.decode()
    assert not Webhook.objects.filter(name="meta").exists()


def test_an_unknown_variable_is_a_form_error_naming_it(client, scenario):
    team, _, webhook, _ = scenario
    response = client.post(
        "/admin/automations/automation/add/",
        {
            "team": team.pk, "name": "bad", "event_type": "LINK_ARTIFACT", "action_type": "WEBHOOK",
            "webhook": webhook.pk, "payload": '{"x": "${nope}"}', "enabled": "on",
        },
    )  # fmt: skip
    assert response.status_code == 200
    assert "nope" in response.content.decode()
    assert not Automation.objects.filter(name="bad").exists()


def test_redeliver_action_queues_the_delivery_again(client, scenario):
    Delivery.objects.update(status="failed")
    delivery = Delivery.objects.get()
    response = client.post(
        "/admin/automations/delivery/", {"action": "redeliver", "_selected_action": [str(delivery.pk)]}, follow=True
    )
    assert response.status_code == 200
    delivery.refresh_from_db()
    assert delivery.status == "pending"
    assert "1 delivery queued again" in response.content.decode()


def test_a_used_secret_cannot_be_deleted_from_the_admin(client, scenario):
    secret = scenario[3]
    response = client.post(f"/admin/secrets_vault/secret/{secret.pk}/delete/", {"post": "yes"}, follow=True)
    assert response.status_code == 200
    page = response.content.decode()
    assert "Cannot delete secret" in page and "ci" in page  # Django names the protected webhook
    assert type(secret).objects.filter(pk=secret.pk).exists()
