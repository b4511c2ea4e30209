"""What config/sentry.py sends of an error event: no secret value in any encoding, no credential header."""

from __future__ import annotations

import base64
import json

import pytest

from config import sentry
from secrets_vault.services import secret_create
from tests.factories import make_team, make_user

pytestmark = pytest.mark.django_db

STORED = 'whsec_"quoted"\\back/slash+team-secret-7f3a'
API_TOKEN = "rk_live_API_TOKEN_in_a_header_0042"


@pytest.fixture(autouse=True)
def _fresh_values(monkeypatch):
    monkeypatch.setattr(sentry, "_values", (float("-inf"), []))


def encodings(value: str) -> list[str]:
    raw = value.encode()
    return [value, json.dumps(value)[1:-1], base64.b64encode(raw).decode().rstrip("="),
            base64.urlsafe_b64encode(raw).decode().rstrip("=")]  # fmt: skip


def test_team_secret_values_and_credential_headers_are_scrubbed_from_an_event(settings):
    admin = make_user()
    secret_create(team=make_team(admin=admin), name="SIGNING", value=STORED, user=admin)
    quoted = " | ".join(encodings(STORED))
    event = {
        "message": f"endpoint echoed {quoted}",
        "exception": {"values": [{"type": "ValueError", "value": f"bad answer: {json.dumps({'v': STORED})}"}]},
        "request": {
            "url": "http://registry/api/v1/teams/t/secrets/",
            "query_string": f"token={API_TOKEN}",
            "data": {"value": STORED},
            "cookies": {"sessionid": "abc"},
            "headers": {"Authorization": f"Token {API_TOKEN}", "Webhook-Signature": "v1,sig", "Accept": "*/*"},
        },
        "breadcrumbs": {"values": [{"message": f"sent with {STORED}", "data": {"access_token": API_TOKEN}}]},
        "extra": {"pairs": [["X-Api-Key", API_TOKEN], ["X-Other", "kept"]], "db": settings.SECRET_KEY},
    }
    sent = json.dumps(sentry.scrubbed(event, {}))
    for secret in (STORED, API_TOKEN, settings.SECRET_KEY):
        for form in encodings(secret):
            assert form not in sent, form
    cleaned = json.loads(sent)
    assert cleaned["request"]["headers"]["Accept"] == "*/*"
    assert cleaned["request"]["headers"]["Authorization"] == sentry.FILTERED
    assert "data" not in cleaned["request"] and "cookies" not in cleaned["request"]
    assert cleaned["exception"]["values"][0]["value"].startswith("bad answer: ")
    assert cleaned["extra"]["pairs"] == [["X-Api-Key", sentry.FILTERED], ["X-Other", "kept"]]


def test_a_database_that_cannot_be_read_still_scrubs_with_the_values_last_read(monkeypatch):
    monkeypatch.setattr(sentry, "_values", (float("-inf"), ["last-known-team-secret"]))

    def unreadable() -> list[str]:
        raise RuntimeError("database down")

    monkeypatch.setattr(sentry, "_team_secret_values", unreadable)
    cleaned = sentry.scrubbed({"message": "quoting last-known-team-secret"}, {})
    assert cleaned["message"] == f"quoting {sentry.FILTERED}"
