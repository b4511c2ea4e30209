"""Automation and webhook names: labels people read, so ordinary punctuation is welcome; one rule
(``core.validators.label_validate``) refuses what cannot be seen or stored as typed, in the API and the admin alike.
"""

from __future__ import annotations

import pytest

from automations import services
from automations.models import Automation, Webhook
from core.errors import ApplicationError
from tests import factories as f

pytestmark = pytest.mark.django_db

URL = "http://127.0.0.1:9/hook"  # admitted by the loopback allow-list below; nothing is sent to it

GOOD_NAMES = [
    "deploy on production (GitHub)",
    "a -> b",
    "notify #ml-team: v2 [staging] & prod, 50% rollout!",
    'it\'s "quoted" <b>not bold</b> / slash \\ back',
    "déploiement → prod ✓",
    "n" * 128,
    "x",
]
GOOD_IDS = ["parentheses", "arrow", "assorted", "quotes-html-slashes", "unicode", "128-characters", "one-character"]

# (name, words the refusal must contain)
BAD_NAMES = [
    ("", "blank"),
    ("   ", "only spaces"),
    ("\u00a0\u2003", "only spaces"),
    (" padded", "start or end with a space"),
    ("padded ", "start or end with a space"),
    ("n" * 129, "128"),
    ("tab\there", "U+0009"),
    ("two\nlines", "U+000A"),
    ("bell\u0007", "U+0007"),
    ("nul\u0000", "Null characters"),
    ("del\u007f", "U+007F"),
    ("zero\u200bwidth", "U+200B"),
    ("evil\u202eKCAB", "U+202E"),
    ("line\u2028separator", "U+2028"),
    (None, "null"),
    (["deploy"], "string"),
]
BAD_IDS = [
    "empty",
    "spaces-only",
    "unicode-spaces-only",
    "leading-space",
    "trailing-space",
    "129-characters",
    "tab",
    "newline",
    "bell",
    "nul",
    "delete",
    "zero-width-space",
    "right-to-left-override",
    "line-separator",
    "null",
    "list",
]


@pytest.fixture
def team(settings):
    settings.WEBHOOK_ALLOWED_NETWORKS = ["127.0.0.1/32"]
    admin = f.make_user("acme-admin", staff=True)
    team = f.make_team("acme", admin=admin)
    f.make_registered_model(team, "classifier")
    return team


@pytest.fixture
def admin(team):
    return team.memberships.get().user


@pytest.fixture
def api(admin):
    return f.api_client(admin)


@pytest.fixture
def webhook(team, admin) -> Webhook:
    return services.webhook_create(team=team, name="deploy", url=URL, user=admin)


@pytest.fixture
def automation(team, webhook) -> Automation:
    return services.automation_create(
        team=team, user=None, name="notify", event_type="LINK_ARTIFACT", action_type="WEBHOOK",
        webhook=webhook.pk, payload={"text": "${artifact_version_string}"},
    )  # fmt: skip


def automation_body(webhook: Webhook, name) -> dict:
    return {
        "name": name, "event_type": "LINK_ARTIFACT", "registered_model": "classifier", "action_type": "WEBHOOK",
        "webhook": webhook.pk, "payload": {"text": "${artifact_version_string}"},
    }  # fmt: skip


def names() -> dict[str, list[str]]:
    return {
        "webhooks": sorted(Webhook.objects.values_list("name", flat=True)),
        "automations": sorted(Automation.objects.values_list("name", flat=True)),
    }


def assert_name_refused(response, words: str, before: dict) -> None:
    """A 400 whose only field at fault is ``name``, with a reason, and nothing written."""
    assert response.status_code == 400, response.content
    body = response.json()
    assert list(body["errors"]) == ["name"], body
    assert words in body["errors"]["name"][0], body
    assert "name" in body["detail"], body
    assert names() == before


# --- API ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", GOOD_NAMES, ids=GOOD_IDS)
def test_a_webhook_name_with_ordinary_punctuation_is_created_and_renamed_to(api, webhook, name):
    created = api.post("/api/v1/teams/acme/webhooks/", {"name": name, "url": URL}, format="json")
    assert created.status_code == 201, created.content
    assert created.json()["name"] == name
    assert Webhook.objects.get(pk=created.json()["id"]).name == name

    renamed = api.patch(f"/api/v1/teams/acme/webhooks/{webhook.pk}/", {"name": f"{name[:120]} (old)"}, format="json")

    assert renamed.status_code == 200, renamed.content
    webhook.refresh_from_db()
    assert webhook.name == renamed.json()["name"] == f"{name[:120]} (old)"


@pytest.mark.parametrize("name", GOOD_NAMES, ids=GOOD_IDS)
def test_an_automation_name_with_ordinary_punctuation_is_created_and_renamed_to(api, webhook, automation, name):
    created = api.post("/api/v1/teams/acme/automations/", automation_body(webhook, name), format="json")
    assert created.status_code == 201, created.content
    assert created.json()["name"] == name
    assert api.get(f"/api/v1/teams/acme/automations/{created.json()['id']}/").json()["name"] == name

    renamed = api.patch(
        f"/api/v1/teams/acme/automations/{automation.pk}/", {"name": f"{name[:120]} (old)"}, format="json"
    )

    assert renamed.status_code == 200, renamed.content
    automation.refresh_from_db()
    assert automation.name == renamed.json()["name"] == f"{name[:120]} (old)"


@pytest.mark.parametrize(("name", "words"), BAD_NAMES, ids=BAD_IDS)
def test_a_bad_webhook_name_is_a_400_naming_the_field_on_create_and_rename(api, webhook, name, words):
    before = names()

    created = api.post("/api/v1/teams/acme/webhooks/", {"name": name, "url": URL}, format="json")
    renamed = api.patch(f"/api/v1/teams/acme/webhooks/{webhook.pk}/", {"name": name}, format="json")

    assert_name_refused(created, words, before)
    assert_name_refused(renamed, words, before)


@pytest.mark.parametrize(("name", "words"), BAD_NAMES, ids=BAD_IDS)
def test_a_bad_automation_name_is_a_400_naming_the_field_on_create_and_rename(api, webhook, automation, name, words):
    before = names()

    created = api.post("/api/v1/teams/acme/automations/", automation_body(webhook, name), format="json")
    renamed = api.patch(f"/api/v1/teams/acme/automations/{automation.pk}/", {"name": name}, format="json")

    assert_name_refused(created, words, before)
    assert_name_refused(renamed, words, before)


def test_the_service_refusal_names_what_is_named_and_why(team):
    with pytest.raises(ApplicationError) as refused:
        services.webhook_create(team=team, name="tab\there", url=URL, user=None)

    assert refused.value.field == "name"
    assert refused.value.message == (
        "The webhook name may not contain control or invisible characters (it has U+0009)."
    )


# --- Admin: the same rule through the same services -----------------------------------------------------


def admin_webhook_form(team, name) -> dict:
    return {"team": team.pk, "name": name, "url": URL, "enabled": "on"}


def admin_automation_form(team, webhook, name) -> dict:
    return {
        "team": team.pk, "event_type": "LINK_ARTIFACT", "action_type": "WEBHOOK", "webhook": webhook.pk,
        "payload": '{"text": "${artifact_version_string}"}', "name": name, "enabled": "on",
    }  # fmt: skip


@pytest.mark.parametrize("name", GOOD_NAMES, ids=GOOD_IDS)
def test_the_admin_saves_webhooks_and_automations_with_punctuated_names(client, admin, team, webhook, name):
    client.force_login(admin)

    hook = client.post("/admin/automations/webhook/add/", admin_webhook_form(team, name))
    automation = client.post(
        f"/admin/automations/automation/add/?team={team.pk}", admin_automation_form(team, webhook, name)
    )

    assert hook.status_code == 302, hook.context["adminform"].form.errors
    assert automation.status_code == 302, automation.context["adminform"].form.errors
    assert names() == {"webhooks": sorted(["deploy", name]), "automations": [name]}


# The admin's text fields drop surrounding spaces before any rule sees them ("  " is then missing and " padded"
# is "padded"), as every Django form does; what is left must pass the same rule.
ADMIN_BAD_NAMES = [
    ("", "required"),
    ("\u00a0\u2003", "required"),
    ("n" * 129, "128"),
    ("tab\there", "U+0009"),
    ("nul\u0000", "Null characters"),
    ("zero\u200bwidth", "U+200B"),
    ("evil\u202eKCAB", "U+202E"),
]


@pytest.mark.parametrize(("name", "words"), ADMIN_BAD_NAMES, ids=[repr(n[0])[:20] for n in ADMIN_BAD_NAMES])
def test_the_admin_refuses_bad_names_next_to_the_name_field(client, admin, team, webhook, name, words):
    client.force_login(admin)
    before = names()

    hook = client.post("/admin/automations/webhook/add/", admin_webhook_form(team, name))
    automation = client.post(
        f"/admin/automations/automation/add/?team={team.pk}", admin_automation_form(team, webhook, name)
    )

    for response in (hook, automation):
        assert response.status_code == 200
        errors = response.context["adminform"].form.errors
        assert list(errors) == ["name"], errors
        assert words in str(errors["name"]), errors
    assert names() == before
