"""Engineers list their own API tokens (never the secret) and revoke them; another user's tokens stay out of reach."""

from __future__ import annotations

import pytest
from django.urls import reverse

from registry import services
from registry.models import ApiToken
from tests import factories as f

pytestmark = pytest.mark.django_db


def rows(response) -> list[dict]:
    body = response.json()
    return body["results"] if isinstance(body, dict) else body


def test_a_user_lists_their_own_tokens_without_the_secret():
    alice, bob = f.make_user(), f.make_user()
    client = f.api_client(alice)  # the token this client uses
    laptop, raw = services.api_token_create(user=alice, name="laptop")
    services.api_token_create(user=bob, name="bob's")

    response = client.get(reverse("auth-tokens"))

    assert response.status_code == 200, response.content
    listed = rows(response)
    assert {row["name"] for row in listed} == {"", "laptop"}
    shown = next(row for row in listed if row["id"] == laptop.pk)
    assert set(shown) == {"id", "name", "prefix", "created_at", "last_used_at"}
    assert shown["prefix"] == raw[:10]
    assert raw not in response.content.decode()
    assert laptop.key_hash not in response.content.decode()


def test_a_revoked_token_stops_working_at_once():
    alice = f.make_user()
    client = f.api_client(alice)
    doomed, raw = services.api_token_create(user=alice, name="ci")

    response = client.delete(reverse("auth-token-detail", kwargs={"token_id": doomed.pk}))

    assert response.status_code == 204, response.content
    assert not ApiToken.objects.filter(pk=doomed.pk).exists()
    revoked = f.api_client()
    revoked.credentials(HTTP_AUTHORIZATION=f"Token {raw}")
    assert revoked.get(reverse("auth-tokens")).status_code == 401
    assert client.get(reverse("auth-tokens")).status_code == 200  # the caller's own token is untouched


def test_a_user_cannot_revoke_another_users_token():
    alice, bob = f.make_user(), f.make_user(superuser=True)
    theirs, _ = services.api_token_create(user=bob, name="bob's")

    response = f.api_client(alice).delete(reverse("auth-token-detail", kwargs={"token_id": theirs.pk}))

    assert response.status_code == 404, response.content
    assert ApiToken.objects.filter(pk=theirs.pk).exists()


def test_token_routes_need_authentication():
    assert f.api_client().get(reverse("auth-tokens")).status_code == 401
