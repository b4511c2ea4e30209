"""Password guessing is limited per client address, across the API's token exchange and the admin's login page,
and an X-Forwarded-For the client writes itself does not buy it more tries."""

from __future__ import annotations

import logging

import pytest
from django.conf import settings
from django.contrib.auth import SESSION_KEY
from django.test import Client
from django.urls import reverse

from registry.models import ApiToken
from tests import factories as f

pytestmark = pytest.mark.django_db

LIMIT = int(settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]["login"].split("/")[0])


def token_attempt(client, user, password: str, **headers: str) -> int:
    body = {"username": user.username, "password": password}
    return client.post(reverse("auth-token"), body, format="json", headers=headers).status_code


def admin_attempt(user, password: str, **headers: str) -> Client:
    """A login on the admin page from a fresh browser; returns the client (logged in or not) with the answer."""
    client = Client()
    client.answer = client.post(
        "/admin/login/?next=/admin/", {"username": user.username, "password": password}, headers=headers
    )
    return client


def test_a_forwarded_for_header_the_client_writes_does_not_reset_its_count():
    user = f.make_user()
    client = f.api_client()

    answers = [
        token_attempt(client, user, "guess", x_forwarded_for=f"198.51.100.{n}") for n in range(LIMIT)
    ]  # fmt: skip
    last = token_attempt(client, user, f.PASSWORD, x_forwarded_for="198.51.100.250")

    assert set(answers) == {400}
    assert last == 429
    assert not ApiToken.objects.exists()


def test_behind_a_trusted_proxy_the_address_it_appended_is_counted(settings):
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "NUM_PROXIES": 1}
    user = f.make_user()
    client = f.api_client()

    # The client writes what it likes in front; the proxy appends the address it saw.
    answers = [
        token_attempt(client, user, "guess", x_forwarded_for=f"10.0.0.{n}, 203.0.113.7") for n in range(LIMIT)
    ]  # fmt: skip
    from_the_same_client = token_attempt(client, user, f.PASSWORD, x_forwarded_for="10.9.9.9, 203.0.113.7")
    from_another_client = token_attempt(client, user, f.PASSWORD, x_forwarded_for="10.9.9.9, 203.0.113.8")

    assert set(answers) == {400}
    assert from_the_same_client == 429
    assert from_another_client == 201


def test_the_admin_login_is_limited_and_refuses_even_the_right_password_over_it():
    user = f.make_user(staff=True)

    wrong = [admin_attempt(user, "guess", x_forwarded_for=f"198.51.100.{n}") for n in range(LIMIT)]
    right = admin_attempt(user, f.PASSWORD)

    assert all(SESSION_KEY not in c.session for c in wrong)
    assert SESSION_KEY not in right.session
    assert right.answer.status_code == 200  # the login page again, with the reason as a form error
    assert "Too many login attempts from your address" in right.answer.content.decode()


def test_the_api_and_the_admin_share_one_budget():
    user = f.make_user(staff=True)
    client = f.api_client()

    half = LIMIT // 2
    api_answers = [token_attempt(client, user, "guess") for _ in range(half)]
    admin_answers = [admin_attempt(user, "guess").answer.status_code for _ in range(LIMIT - half)]

    assert set(api_answers) == {400} and set(admin_answers) == {200}
    assert token_attempt(client, user, f.PASSWORD) == 429
    assert SESSION_KEY not in admin_attempt(user, f.PASSWORD).session


def test_under_the_limit_the_right_password_still_logs_in():
    user = f.make_user(staff=True)
    client = f.api_client()

    assert token_attempt(client, user, "guess") == 400
    assert token_attempt(client, user, f.PASSWORD) == 201
    assert SESSION_KEY in admin_attempt(user, f.PASSWORD).session


def test_an_unreachable_cache_lets_logins_through_and_says_so(settings, caplog):
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": "redis://127.0.0.1:1/0",  # nothing listens on port 1
            "OPTIONS": {"socket_connect_timeout": 0.2, "socket_timeout": 0.2},
        }
    }
    user = f.make_user()
    caplog.set_level(logging.WARNING, logger="core.throttling")

    assert token_attempt(f.api_client(), user, f.PASSWORD) == 201
    assert "login throttle skipped: the cache is unreachable" in caplog.text
