"""Team secrets: encrypted at rest, write-only, admin-only, rotatable."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from cryptography.fernet import Fernet
from django.conf import settings
from django.core.management import call_command

from core.roles import Role
from secrets_vault import crypto, services
from secrets_vault.models import Secret
from secrets_vault.usage import reserved_names_register
from tests.factories import add_member, api_client, make_team, make_user

pytestmark = pytest.mark.django_db

VALUE = "ghp_s3cr3t-VALUE-that-must-never-leak"


@pytest.fixture
def team_admin():
    admin = make_user()
    return make_team(admin=admin), admin


def test_a_secret_is_stored_encrypted_and_decrypts_at_send_time(team_admin):
    team, admin = team_admin
    services.secret_create(team=team, name="GITHUB_TOKEN", value=VALUE, user=admin)

    row = Secret.objects.get(team=team, name="GITHUB_TOKEN")
    assert VALUE not in row.ciphertext
    assert services.secret_values(team=team, names=["GITHUB_TOKEN", "MISSING"]) == {"GITHUB_TOKEN": VALUE}


def test_the_api_never_returns_a_value(team_admin):
    team, admin = team_admin
    client = api_client(admin)
    base = f"/api/v1/teams/{team.name}/secrets/"

    responses = [
        client.post(base, {"name": "GITHUB_TOKEN", "value": VALUE}, format="json"),
        client.put(f"{base}GITHUB_TOKEN/", {"value": VALUE + "2"}, format="json"),
        client.put(f"{base}NEW_ONE/", {"value": VALUE}, format="json"),
        client.get(base),
        client.post(base, {"name": "GITHUB_TOKEN", "value": VALUE}, format="json"),  # 409
        client.post(base, {"name": "bad name", "value": VALUE}, format="json"),  # 400
    ]

    assert [r.status_code for r in responses] == [201, 200, 201, 200, 409, 400]
    for response in responses:
        assert VALUE not in response.content.decode()
    assert sorted(s["name"] for s in responses[3].json()["results"]) == ["GITHUB_TOKEN", "NEW_ONE"]
    assert "value" not in responses[3].json()["results"][0]


def test_only_admins_manage_secrets_and_outsiders_see_nothing(team_admin):
    team, _ = team_admin
    member = add_member(team, role=Role.MEMBER)
    outsider = make_user()
    make_team(admin=outsider)
    base = f"/api/v1/teams/{team.name}/secrets/"
    services.secret_create(team=team, name="TOKEN", value=VALUE, user=None)

    assert api_client(member).get(base).status_code == 403
    assert api_client(member).post(base, {"name": "X", "value": "v"}, format="json").status_code == 403
    assert api_client(member).delete(f"{base}TOKEN/").status_code == 403
    assert api_client(outsider).get(base).status_code == 404
    assert api_client(outsider).put(f"{base}TOKEN/", {"value": "v"}, format="json").status_code == 404
    assert services.secret_values(team=team, names=["TOKEN"]) == {"TOKEN": VALUE}
    assert not Secret.objects.filter(name="X").exists()


@pytest.mark.parametrize(
    ("name", "reason"),
    [("bad name", "Invalid secret name"), ("9LIVES", "Invalid secret name"), ("", "Invalid secret name")],
)
def test_secret_names_are_checked(team_admin, name, reason):
    team, admin = team_admin
    response = api_client(admin).post(
        f"/api/v1/teams/{team.name}/secrets/", {"name": name, "value": "v"}, format="json"
    )
    assert response.status_code == 400
    assert "name" in response.json()["errors"]
    assert not Secret.objects.exists()


def test_a_secret_cannot_shadow_a_reserved_name(team_admin):
    team, admin = team_admin
    reserved_names_register({"event_author": "it is a payload variable."})
    response = api_client(admin).post(
        f"/api/v1/teams/{team.name}/secrets/", {"name": "EVENT_AUTHOR", "value": "v"}, format="json"
    )
    assert response.status_code == 400
    assert "payload variable" in response.json()["errors"]["name"][0]


def test_bad_values_are_refused_without_echoing_them(team_admin):
    team, admin = team_admin
    base = f"/api/v1/teams/{team.name}/secrets/"
    for value in ["", "with\u0000nul", "x" * 9000]:
        response = api_client(admin).post(base, {"name": "T", "value": value}, format="json")
        assert response.status_code == 400, value[:10]
        assert "value" in response.json()["errors"]
    assert not Secret.objects.exists()


def test_rotation_reencrypts_every_secret_with_the_newest_key(team_admin, settings):
    team, admin = team_admin
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    settings.SECRETS_ENCRYPTION_KEYS = [old]
    services.secret_create(team=team, name="A", value="alpha", user=admin)
    services.secret_create(team=team, name="B", value="beta", user=admin)

    settings.SECRETS_ENCRYPTION_KEYS = [new, old]  # a new key is prepended; old tokens still decrypt
    assert services.secret_values(team=team, names=["A", "B"]) == {"A": "alpha", "B": "beta"}
    call_command("secrets_reencrypt", stdout=open(os.devnull, "w"))  # noqa: SIM115

    settings.SECRETS_ENCRYPTION_KEYS = [new]  # the old key is retired
    assert services.secret_values(team=team, names=["A", "B"]) == {"A": "alpha", "B": "beta"}
    settings.SECRETS_ENCRYPTION_KEYS = [old]
    with pytest.raises(crypto.DecryptionError) as exc:
        services.secret_values(team=team, names=["A"])
    assert "alpha" not in str(exc.value)


@pytest.mark.e2e
def test_a_server_database_without_keys_refuses_to_start():
    env = {
        **os.environ,
        "DATABASE_URL": "postgres://postgres@127.0.0.1:5432/postgres",
        "SECRETS_ENCRYPTION_KEYS": "",
        "SECRETS_ALLOW_KEY_FILE": "0",
        "DJANGO_SETTINGS_MODULE": "config.settings",
    }
    result = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        env=env, capture_output=True, text=True, cwd=settings.BASE_DIR, timeout=60,
    )  # fmt: skip
    assert result.returncode != 0
    assert "SECRETS_ENCRYPTION_KEYS is required" in result.stderr


def test_secret_listing_is_names_only_json(team_admin):
    team, admin = team_admin
    services.secret_create(team=team, name="SLACK_TOKEN", value=VALUE, user=admin)
    body = json.dumps(api_client(admin).get(f"/api/v1/teams/{team.name}/secrets/").json())
    assert "SLACK_TOKEN" in body and VALUE not in body
