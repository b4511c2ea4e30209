"""Testing a webhook from the admin: the payload editor, the real send through the API's path, the answer shown.

The receiver is a real HTTP server on loopback (harness/receiver.py); the page is fetched with the Django test client
as a superuser, and must never show a secret value, even when the endpoint echoes the ones it was sent.
"""

from __future__ import annotations

import html
import json
import re

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse
from registry_client.webhooks import verify

from automations import services
from automations.models import Delivery
from automations.presets import preset_payload
from core.roles import Role
from harness.receiver import Receiver, Reply
from registry.models import Event
from secrets_vault import services as vault
from tests.factories import add_member, make_team, make_user

pytestmark = pytest.mark.django_db

SIGNING_VALUE = "admin-test-SIGNING-4c3b2a-never-shown"
TOKEN_VALUE = "admin-test-TOKEN-9f8e7d-never-shown"
TEST_PAYLOAD = {
    "event": "${event_type}",
    "author": "${event_author}",
    "version": "${artifact_version_string}",
    "fixed": [1, True, None],
}


@pytest.fixture
def root(client):
    user = make_user(superuser=True)
    client.force_login(user)
    return user


@pytest.fixture
def team(settings, root):
    settings.WEBHOOK_ALLOWED_NETWORKS = ["127.0.0.1/32"]
    team = make_team(admin=root)
    vault.secret_create(team=team, name="SIGNING", value=SIGNING_VALUE, user=root)
    vault.secret_create(team=team, name="TOKEN", value=TOKEN_VALUE, user=root)
    return team


def webhook_for(team, receiver: Receiver, *, user):
    return services.webhook_create(
        team=team, name="ci", url=receiver.url, secret="SIGNING", access_token="TOKEN", user=user
    )


def page_url(webhook) -> str:
    return reverse("admin:automations_webhook_test", args=[webhook.pk])


def send(client, webhook, payload):
    text = payload if isinstance(payload, str) else json.dumps(payload)
    return client.post(page_url(webhook), {"payload": text})


def header(received, name: str) -> str | None:
    return next((v for k, v in received.headers.items() if k.lower() == name.lower()), None)


def shown_status(page: str) -> tuple[str, str]:
    """The colour class and the text of the status the page shows."""
    match = re.search(r'class="webhook-test-status (ok|failed)">([^<]*)<', page)
    assert match, page
    return match.group(1), match.group(2)


def test_the_page_opens_with_an_example_payload_in_the_editor(client, team, root):
    with Receiver() as receiver:
        webhook = webhook_for(team, receiver, user=root)

        response = client.get(page_url(webhook))

    assert response.status_code == 200
    page = response.content.decode()
    assert '<textarea name="payload"' in page
    assert json.loads(response.context["form"]["payload"].value()) == preset_payload("slack")
    assert "${event_type}" in page and "${artifact_version_string}" in page
    assert 'value="Test webhook"' in page
    assert "webhook-test-result" not in page  # nothing sent, nothing shown
    assert receiver.requests == []


def test_a_test_reaches_the_receiver_signed_and_the_page_shows_its_answer(client, team, root):
    answer = b'{"accepted": "by <the> receiver"}'
    counts = (Delivery.objects.count(), Event.objects.count())
    with Receiver(Reply(status=202, headers={"X-Receiver-Says": "hello-from-receiver"}, body=answer)) as receiver:
        webhook = webhook_for(team, receiver, user=root)

        response = send(client, webhook, TEST_PAYLOAD)

    # The receiver got the rendered payload with the token and both signatures valid
    (got,) = receiver.requests
    assert json.loads(got.body) == {
        "event": "LINK_ARTIFACT",
        "author": root.username,
        "version": f"{team.name}/model-registry/example-model:v0",
        "fixed": [1, True, None],
    }
    assert header(got, "Authorization") == f"Bearer {TOKEN_VALUE}"
    assert header(got, "X-Wandb-Signature") and header(got, "webhook-signature")
    verify(SIGNING_VALUE, got.body, got.headers)  # raises unless both hold
    # The page shows every part of the answer: status (green), timing, headers, body (escaped), no error
    assert response.status_code == 200
    page = response.content.decode()
    result = response.context["result"]
    assert set(result) == {"status_code", "headers", "body", "duration_ms", "error", "request"}
    assert shown_status(page) == ("ok", "202")
    assert f"{result['duration_ms']} ms" in page
    assert "<td>X-Receiver-Says</td><td>hello-from-receiver</td>" in page
    assert f'<pre class="webhook-test-body">{html.escape(answer.decode())}</pre>' in page
    assert result["error"] == "" and '<th scope="row">Error</th>' not in page
    # The request is shown as sent: the body's bytes, every header, those made with a secret masked
    assert (
        f'<pre class="webhook-test-sent" id="webhook-test-request-body">{html.escape(got.body.decode())}</pre>' in page
    )
    shown = dict(re.findall(r"<tr><td>([^<]+)</td><td><code>([^<]*)</code></td></tr>", page))
    assert set(shown) == {name for name in got.headers if name.lower() not in ("host", "content-length", "connection",
                                                                                "accept-encoding")}  # fmt: skip
    assert shown["Authorization"] == "Bearer ••••••••"
    assert shown["X-Wandb-Signature"] == "••••••••"
    assert shown["webhook-signature"] == "v1,••••••••"
    assert shown["webhook-id"] == header(got, "webhook-id") and shown["Content-Type"] == "application/json"
    assert SIGNING_VALUE not in page and TOKEN_VALUE not in page
    assert header(got, "X-Wandb-Signature") not in page and header(got, "webhook-signature") not in page
    # The payload stays in the editor for another try, and nothing is recorded
    assert json.loads(response.context["form"]["payload"].value()) == TEST_PAYLOAD
    assert (Delivery.objects.count(), Event.objects.count()) == counts


@pytest.mark.parametrize(
    ("payload", "named"),
    [
        ({"x": "${nope}"}, "${nope}"),
        ('{"x": ', "Invalid JSON"),
        ('["not", "an", "object"]', "JSON object"),
        ("", "required"),
    ],
    ids=["unknown-variable", "invalid-json", "not-an-object", "empty"],
)
def test_an_invalid_payload_is_a_form_error_on_the_field_and_nothing_is_sent(client, team, root, payload, named):
    with Receiver() as receiver:
        webhook = webhook_for(team, receiver, user=root)

        response = send(client, webhook, payload)

    assert response.status_code == 200
    errors = response.context["form"].errors
    assert list(errors) == ["payload"]
    assert named in errors["payload"][0]
    page = response.content.decode()
    assert re.search(r'<ul class="errorlist"[^>]*>\s*<li>[^<]*' + re.escape(html.escape(named)), page), page
    assert "webhook-test-result" not in page
    assert receiver.requests == []


def test_an_endpoint_answering_500_is_shown_in_red(client, team, root):
    with Receiver(Reply(status=500, body=b"internal trouble")) as receiver:
        webhook = webhook_for(team, receiver, user=root)

        response = send(client, webhook, TEST_PAYLOAD)

    assert len(receiver.requests) == 1
    page = response.content.decode()
    assert shown_status(page) == ("failed", "500")
    assert "internal trouble" in page


def test_a_refused_address_is_shown_as_the_error(client, team, root, settings):
    with Receiver() as receiver:
        webhook = webhook_for(team, receiver, user=root)
        settings.WEBHOOK_ALLOWED_NETWORKS = []

        response = send(client, webhook, TEST_PAYLOAD)

    assert receiver.requests == []
    page = response.content.decode()
    assert shown_status(page) == ("failed", "no response")
    error = response.context["result"]["error"]
    assert error.startswith("refused") and "loopback" in error
    assert f'<td class="webhook-test-status failed">{html.escape(error)}</td>' in page


def test_a_timeout_is_shown_as_the_error(client, team, root, settings):
    settings.WEBHOOK_READ_TIMEOUT = 0.3
    with Receiver(Reply(delay=2)) as receiver:
        webhook = webhook_for(team, receiver, user=root)

        response = send(client, webhook, TEST_PAYLOAD)

    assert len(receiver.requests) == 1
    error = response.context["result"]["error"]
    assert error
    page = response.content.decode()
    assert shown_status(page)[0] == "failed"
    assert html.escape(error) in page


def test_echoed_secrets_appear_nowhere_in_the_page(client, team, root):
    # The endpoint answers with the bearer token it was sent and the signing secret, in a header and in its body
    echo = json.dumps({"authorization": f"Bearer {TOKEN_VALUE}", "secret": SIGNING_VALUE}).encode()
    with Receiver(Reply(headers={"X-Echo-Authorization": f"Bearer {TOKEN_VALUE}"}, body=echo)) as receiver:
        webhook = webhook_for(team, receiver, user=root)

        pages = {
            "test (GET)": client.get(page_url(webhook)),
            "test (POST)": send(client, webhook, {**TEST_PAYLOAD, "token": "${TOKEN}"}),
            "change": client.get(reverse("admin:automations_webhook_change", args=[webhook.pk])),
            "list": client.get(reverse("admin:automations_webhook_changelist")),
        }

    (got,) = receiver.requests
    assert header(got, "Authorization") == f"Bearer {TOKEN_VALUE}"  # the real values went out
    assert json.loads(got.body)["token"] == TOKEN_VALUE
    for name, response in pages.items():
        assert response.status_code == 200, name
        page = response.content.decode()
        for value in (SIGNING_VALUE, TOKEN_VALUE):
            assert value not in page, name
    posted = pages["test (POST)"].content.decode()
    assert "<td>X-Echo-Authorization</td><td>Bearer ${TOKEN}</td>" in posted
    assert html.escape(json.dumps({"authorization": "Bearer ${TOKEN}", "secret": "${SIGNING}"})) in posted


def test_the_change_page_and_the_list_link_to_the_test_page(client, team, root):
    with Receiver() as receiver:
        webhook = webhook_for(team, receiver, user=root)

    change = client.get(reverse("admin:automations_webhook_change", args=[webhook.pk])).content.decode()
    listing = client.get(reverse("admin:automations_webhook_changelist")).content.decode()

    assert f'<li><a href="{page_url(webhook)}">Test webhook</a></li>' in change
    assert f'<a href="{page_url(webhook)}">Test</a>' in listing


def _view_only(user):
    user.user_permissions.add(Permission.objects.get(codename="view_webhook", content_type__app_label="automations"))
    return user


@pytest.mark.parametrize(
    "who",
    ["staff-without-permissions", "staff-with-view-permission", "member-of-the-team", "admin-of-another-team"],
)
def test_a_user_who_may_not_change_the_webhook_cannot_open_or_send_a_test(client, team, root, who):
    if who == "staff-without-permissions":
        user = make_user(staff=True)
    elif who == "staff-with-view-permission":
        user = _view_only(make_user(staff=True))
    elif who == "member-of-the-team":
        user = add_member(team, make_user(staff=True), Role.MEMBER)
    else:
        user = make_user(staff=True)
        make_team(admin=user)
    with Receiver() as receiver:
        webhook = webhook_for(team, receiver, user=root)
        client.force_login(user)

        opened = client.get(page_url(webhook))
        sent = send(client, webhook, TEST_PAYLOAD)

    assert opened.status_code in (403, 404)
    assert sent.status_code in (403, 404)
    assert receiver.requests == []


def test_a_missing_webhook_is_404(client, root):
    assert client.get(reverse("admin:automations_webhook_test", args=[987654])).status_code == 404
    assert client.get("/admin/automations/webhook/not-a-number/test/").status_code == 404
