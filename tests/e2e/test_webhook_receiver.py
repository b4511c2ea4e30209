"""The receiver command people use to check their setup, fed by the production signing path."""

from __future__ import annotations

import re
import subprocess
import sys
import time

import pytest
from django.conf import settings

from automations import services, webhook_testing
from secrets_vault import services as vault
from tests.factories import make_team, make_user

pytestmark = [pytest.mark.e2e, pytest.mark.django_db]


def start_receiver(*args: str) -> tuple[subprocess.Popen, int]:
    process = subprocess.Popen(
        [sys.executable, "manage.py", "webhook_receiver", "--port", "0", "--max-requests", "1", *args],
        cwd=settings.BASE_DIR, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    first = process.stdout.readline()
    match = re.search(r"http://127\.0\.0\.1:(\d+)/", first)
    assert match, first
    return process, int(match.group(1))


@pytest.mark.parametrize(
    ("receiver_secret", "expected"),
    [("the-signing-secret", "X-Wandb-Signature: valid"), ("another-secret", "X-Wandb-Signature: INVALID")],
)
def test_the_receiver_verifies_what_a_webhook_sends(settings, receiver_secret, expected):
    settings.WEBHOOK_ALLOWED_NETWORKS = ["127.0.0.1/32"]
    admin = make_user()
    team = make_team(admin=admin)
    vault.secret_create(team=team, name="SIGNING", value="the-signing-secret", user=admin)
    vault.secret_create(team=team, name="TOKEN", value="the-access-token", user=admin)
    process, port = start_receiver("--secret", receiver_secret, "--token", "the-access-token")
    try:
        webhook = services.webhook_create(
            team=team, name="local", url=f"http://127.0.0.1:{port}/", secret="SIGNING", access_token="TOKEN", user=admin
        )
        result = webhook_testing.webhook_test(webhook=webhook, payload={"hello": "wörld"}, context={})
        output, _ = process.communicate(timeout=20)
    finally:
        process.kill()

    assert result["status_code"] == 200, (result, output)
    assert expected in output
    assert "Authorization: valid" in output
    assert '{"hello":"wörld"}' in output
    assert "the-access-token" not in output  # the bearer token is masked in the printout
    valid_standard = "webhook-signature: valid" in output
    assert valid_standard == (receiver_secret == "the-signing-secret")


def test_the_receiver_listens_on_loopback_only():
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "manage.py", "webhook_receiver", "--host", "0.0.0.0"],
        cwd=settings.BASE_DIR, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode != 0
    assert "loopback only" in result.stderr
    assert time.monotonic() - started < 60
