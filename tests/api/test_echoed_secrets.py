"""An endpoint that echoes a secret back, in whatever encoding, never gets it stored or shown: not in a delivery
attempt's record, not in the deliveries API, not in the admin, not in a Test answer.

The secrets hold the characters that encodings change (quotes, backslashes, spaces, non-ASCII); the endpoint is a
real HTTP receiver on loopback that answers with them raw, JSON-escaped, URL-encoded and base64-encoded, in its
headers and its body. The real delivery path sends to it and records the answer.
"""

from __future__ import annotations

import base64
import html
import json
import re
from urllib.parse import quote, quote_plus, urlencode

import pytest
from django.urls import reverse

from automations import prepare, services
from automations.models import Delivery, DeliveryAttempt
from automations.safe_http import SendError
from harness.receiver import Receiver, Reply
from secrets_vault import services as vault
from tests import factories as f

pytestmark = pytest.mark.django_db(transaction=True)

SIGNING_VALUE = 'sig "quoted" \\back\\slash/ñ+=%'
TOKEN_VALUE = 'tok "en" with \\ and spaces'
PAYLOAD_VALUE = 'clé secrète «naïve» 秘密 / \\ "'
VALUES = (SIGNING_VALUE, TOKEN_VALUE, PAYLOAD_VALUE)


def encodings(value: str) -> dict[str, str]:
    """A secret as endpoints echo it: each form made by the library an endpoint would use."""
    raw = value.encode()
    return {
        "raw": value,
        "json": json.dumps({"v": value}),
        "json-unicode": json.dumps({"v": value}, ensure_ascii=False),
        "json-slashes": json.dumps({"v": value}).replace("/", "\\/"),
        "form": urlencode({"v": value}),
        "quote": "/echo?v=" + quote(value),
        "quote-all": quote(value, safe=""),
        "quote_plus": quote_plus(value),
        "base64": base64.b64encode(raw).decode(),
        "base64-nopad": base64.b64encode(raw).decode().rstrip("="),
        "urlsafe": base64.urlsafe_b64encode(raw).decode(),
        "urlsafe-nopad": base64.urlsafe_b64encode(raw).decode().rstrip("="),
        # inside a larger base64 text, at each of the three byte offsets: a Basic credential, an encoded document
        "basic": "Basic " + base64.b64encode(b"deploy:" + raw).decode(),
        **{
            f"base64-document-{shift}": base64.b64encode(
                json.dumps({"p": "x" * shift, "auth": value}).encode()
            ).decode()
            for shift in range(3)
        },
        "urlsafe-document": base64.urlsafe_b64encode(b"user=ab&token=" + raw + b"&x=1").decode(),
    }


_BASE64_RUN = re.compile(r"[A-Za-z0-9+/_=-]{8,}")


def decodable(text: str, value: str) -> bool:
    """Whether ``value`` (raw or JSON-escaped) can be read back by base64-decoding any run of ``text``, from any
    character offset: the check that does not depend on knowing how it was encoded."""
    wanted = (value.encode(), json.dumps(value)[1:-1].encode())
    for run in _BASE64_RUN.findall(text):
        for start in range(4):
            piece = run[start:].rstrip("=")
            piece = piece[: len(piece) - len(piece) % 4]
            for decode in (base64.b64decode, base64.urlsafe_b64decode):
                try:
                    decoded = decode(piece)
                except ValueError:
                    continue
                if any(w in decoded for w in wanted):
                    return True
    return False


def leaked_forms(value: str) -> set[str]:
    """The encoded secret itself (what must not appear), without the framing the echo adds around it."""
    raw = value.encode()
    return {
        value,
        json.dumps(value)[1:-1],
        json.dumps(value, ensure_ascii=False)[1:-1],
        json.dumps(value)[1:-1].replace("/", "\\/"),
        quote(value),
        quote(value, safe=""),
        quote_plus(value),
        base64.b64encode(raw).decode().rstrip("="),
        base64.urlsafe_b64encode(raw).decode().rstrip("="),
    }


def echo_reply(status: int = 200) -> Reply:
    # One line per secret and encoding, so that each encoded form appears exactly as its encoder made it.
    lines = [f"{form}: {echoed}" for value in VALUES for form, echoed in encodings(value).items()]
    body = "\n".join(lines)
    headers = {
        "Content-Type": "text/plain; charset=utf-8",
        "X-Echo-Token": base64.b64encode(TOKEN_VALUE.encode()).decode(),
        "X-Echo-Query": "v=" + quote_plus(PAYLOAD_VALUE),
    }
    return Reply(status=status, headers=headers, body=body.encode())


def assert_no_secret(text: str, where: str) -> None:
    """No form of any secret in ``text``, nor as an HTML page or a JSON answer would escape it."""
    for value in VALUES:
        for form in leaked_forms(value):
            for shown in (form, html.escape(form), json.dumps(form)[1:-1]):
                assert shown not in text, (where, form)
        assert not decodable(text, value), (where, value)


@pytest.fixture
def setup(settings):
    settings.WEBHOOK_ALLOWED_NETWORKS = ["127.0.0.1/32"]
    admin = f.make_user(superuser=True)
    team = f.make_team("acme", admin=admin)
    for name, value in (("SIGNING", SIGNING_VALUE), ("TOKEN", TOKEN_VALUE), ("PAYLOAD_KEY", PAYLOAD_VALUE)):
        vault.secret_create(team=team, name=name, value=value, user=admin)
    return team, admin


def test_a_delivery_answer_echoing_secrets_in_every_encoding_is_stored_and_shown_without_them(setup, client):
    team, admin = setup
    with Receiver(echo_reply(status=503)) as receiver:
        event = f.link_delivered(
            team, user=admin, url=receiver.url, payload={"k": "${PAYLOAD_KEY}"}, secret="SIGNING", access_token="TOKEN"
        )

    (got,) = receiver.requests
    assert json.loads(got.body) == {"k": PAYLOAD_VALUE}  # the real value went out
    (attempt,) = DeliveryAttempt.objects.filter(delivery__event=event)
    assert attempt.status_code == 503
    assert "${TOKEN}" in attempt.response_body and "${PAYLOAD_KEY}" in attempt.response_body
    assert attempt.response_headers["X-Echo-Token"] == "${TOKEN}"
    assert_no_secret(attempt.response_body + json.dumps(attempt.response_headers) + attempt.error, "attempt row")

    delivery = Delivery.objects.get(event=event)
    api = f.api_client(admin).get(reverse("delivery", kwargs={"team": "acme", "delivery_id": delivery.pk}))
    assert api.status_code == 200 and api.json()["attempts"]
    assert_no_secret(api.content.decode(), "deliveries API")
    client.force_login(admin)
    page = client.get(reverse("admin:automations_delivery_change", args=[delivery.pk]))
    assert page.status_code == 200
    assert_no_secret(page.content.decode(), "delivery admin page")


def test_a_test_answer_echoing_secrets_in_every_encoding_shows_them_by_name(setup, client):
    team, admin = setup
    with Receiver(echo_reply()) as receiver:
        webhook = services.webhook_create(
            team=team, name="echo", url=receiver.url, secret="SIGNING", access_token="TOKEN", user=admin
        )
        api = f.api_client(admin).post(
            reverse("webhook-test", kwargs={"team": "acme", "webhook_id": webhook.pk}),
            {"payload": {"k": "${PAYLOAD_KEY}"}},
            format="json",
        )
        client.force_login(admin)
        page = client.post(
            reverse("admin:automations_webhook_test", args=[webhook.pk]), {"payload": '{"k": "${PAYLOAD_KEY}"}'}
        )

    assert len(receiver.requests) == 2
    assert api.status_code == 200, api.content
    assert "${SIGNING}" in api.json()["body"]
    assert_no_secret(api.content.decode(), "test API answer")
    assert page.status_code == 200
    assert_no_secret(page.content.decode(), "admin test page")


def test_an_error_text_quoting_an_encoded_secret_is_scrubbed():
    secrets = {"TOKEN": TOKEN_VALUE, "PAYLOAD_KEY": PAYLOAD_VALUE}
    message = "refused: " + " | ".join(form for value in VALUES[1:] for form in encodings(value).values())

    scrubbed = prepare.outcome_scrubbed(SendError(message, permanent=True), secrets)

    assert_no_secret(scrubbed.message, "error text")
    assert scrubbed.message.startswith("refused: ${TOKEN}")
