"""Team scoping in the admin: a staff user who is admin of team A sees and chooses only team A's objects."""

from __future__ import annotations

import pytest
from django.urls import reverse

from automations import services as automations
from core.roles import Role
from launch import services as launch
from secrets_vault import services as vault
from tests.factories import add_member, make_project, make_registered_model, make_team, make_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def two_teams(settings):
    settings.WEBHOOK_ALLOWED_NETWORKS = ["127.0.0.1/32"]
    alice = make_user("alice", staff=True)
    a = make_team("team-a", admin=alice)
    b = make_team("team-b", admin=make_user("bella", staff=True))
    for team in (a, b):
        name = f"{team.name.upper().replace('-', '_')}_KEY"
        secret = vault.secret_create(team=team, name=name, value="v" * 12, user=None)
        webhook = automations.webhook_create(
            team=team, name=f"hook of {team.name}", url="http://127.0.0.1:9/hook", secret=secret.name, user=None
        )
        make_registered_model(team, name=f"model-of-{team.name}")
        make_project(team, "evaluation")
        launch.run_queue_create(team=team, name=f"queue-of-{team.name}")
        automations.automation_create(
            team=team, user=None, name=f"automation of {team.name}", event_type="LINK_ARTIFACT",
            action_type="WEBHOOK", webhook=webhook.pk, payload={"text": "${event_type}"},
        )  # fmt: skip
    return alice, a, b


def changelist(client, model: str) -> str:
    response = client.get(reverse(f"admin:{model}_changelist"))
    assert response.status_code == 200, (model, response.status_code)
    return response.content.decode()


@pytest.mark.parametrize(
    "model",
    [
        "secrets_vault_secret",
        "automations_webhook",
        "automations_automation",
        "registry_registeredmodel",
        "launch_runqueue",
        "registry_team",
    ],
)
def test_a_team_admin_lists_only_their_teams_objects(client, two_teams, model):
    alice, _, _ = two_teams
    client.force_login(alice)
    page = changelist(client, model)
    assert "team-a" in page.lower().replace("_", "-")
    assert "team-b" not in page.lower().replace("_", "-")


def test_another_teams_object_is_out_of_reach_by_url(client, two_teams):
    alice, _, b = two_teams
    client.force_login(alice)
    for obj, model in (
        (b.secrets.get(), "secrets_vault_secret"),
        (b.webhooks.get(), "automations_webhook"),
        (b.automations.get(), "automations_automation"),
        (b.registered_models.get(), "registry_registeredmodel"),
    ):
        for view in ("change", "delete"):
            response = client.get(reverse(f"admin:{model}_{view}", args=[obj.pk]))
            # The admin answers a missing object with a redirect to the index and a message.
            assert response.status_code == 302 and response.url == reverse("admin:index"), (model, view)
        response = client.post(reverse(f"admin:{model}_delete", args=[obj.pk]), {"post": "yes"})
        assert type(obj).objects.filter(pk=obj.pk).exists()


def test_form_choices_are_only_the_teams_own_and_a_forged_choice_is_refused(client, two_teams):
    alice, a, b = two_teams
    client.force_login(alice)
    page = client.get(reverse("admin:automations_webhook_add")).content.decode()
    assert "TEAM_A_KEY" in page and "TEAM_B_KEY" not in page
    assert f'value="{b.pk}"' not in page

    response = client.post(
        reverse("admin:automations_webhook_add"),
        {"team": b.pk, "name": "sneaky", "url": "http://127.0.0.1:9/x", "secret": b.secrets.get().pk, "enabled": "on"},
    )
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert "team" in errors and "secret" in errors
    assert not b.webhooks.filter(name="sneaky").exists() and not a.webhooks.filter(name="sneaky").exists()


def test_autocomplete_answers_only_teams_the_user_may_write_for(client, two_teams):
    alice, _a, b = two_teams
    add_member(b, alice, Role.VIEWER)  # alice may look at team B's models but not create them there
    client.force_login(alice)
    response = client.get(
        reverse("admin:autocomplete"),
        {"app_label": "registry", "model_name": "registeredmodel", "field_name": "team", "term": "team"},
    )
    assert response.status_code == 200
    assert [row["text"] for row in response.json()["results"]] == ["team-a"]


def test_a_viewer_of_another_team_sees_its_models_but_cannot_change_them(client, two_teams):
    alice, _, b = two_teams
    add_member(b, alice, Role.VIEWER)
    client.force_login(alice)
    theirs = b.registered_models.get()
    assert "model-of-team-b" in changelist(client, "registry_registeredmodel")
    url = reverse("admin:registry_registeredmodel_change", args=[theirs.pk])
    page = client.get(url)
    assert page.status_code == 200 and b'name="description"' not in page.content  # the view-only page
    client.post(url, {"name": "renamed", "description": "x"})
    theirs.refresh_from_db()
    assert theirs.name == "model-of-team-b"
    assert "TEAM_B_KEY" not in changelist(client, "secrets_vault_secret")  # a viewer sees no secrets


def test_members_who_are_not_admins_have_no_secrets_or_webhooks(client, two_teams):
    _, a, _ = two_teams
    member = make_user("max", staff=True)
    add_member(a, member, Role.MEMBER)
    client.force_login(member)
    for model in ("secrets_vault_secret", "automations_webhook", "automations_automation", "automations_delivery"):
        assert client.get(reverse(f"admin:{model}_changelist")).status_code == 403
        assert client.get(reverse(f"admin:{model}_change", args=[1])).status_code in (302, 403)
    index = client.get(reverse("admin:index")).content.decode()
    assert "Registered models" in index and "Secrets" not in index and "Webhooks" not in index


def test_a_superuser_sees_every_team(client, two_teams):
    client.force_login(make_user("root", superuser=True))
    page = changelist(client, "automations_webhook")
    assert "hook of team-a" in page and "hook of team-b" in page


def test_a_staff_user_without_teams_sees_nothing(client, two_teams):
    client.force_login(make_user("lonely", staff=True))
    index = client.get(reverse("admin:index"))
    assert index.status_code == 200 and "Secrets" not in index.content.decode()
    assert client.get(reverse("admin:secrets_vault_secret_changelist")).status_code == 403


def test_a_team_admin_adds_a_member_by_username_to_their_team_only(client, two_teams):
    alice, a, b = two_teams
    make_user("newcomer")
    client.force_login(alice)
    url = reverse("admin:registry_membership_add")
    response = client.post(url, {"team": a.pk, "username": "newcomer", "role": Role.MEMBER})
    assert response.status_code == 302
    assert a.memberships.filter(user__username="newcomer", role=Role.MEMBER).exists()
    response = client.post(url, {"team": b.pk, "username": "newcomer", "role": Role.ADMIN})
    assert response.status_code == 200 and "team" in response.context["adminform"].form.errors
    response = client.post(url, {"team": a.pk, "username": "nobody", "role": Role.MEMBER})
    assert "No user named" in str(response.context["adminform"].form.errors["username"])
    assert not b.memberships.filter(user__username="newcomer").exists()
