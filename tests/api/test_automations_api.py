"""The automations API as its users meet it: webhooks, testing a webhook, automations, deliveries and redelivery.

Who may do what (admins write, viewers read automations, other teams see nothing), outbound safety when a URL is
saved, secrets referred to by name and never shown, templates refused with the field at fault, a real loopback
receiver for "test a webhook", and the deliveries an event leaves behind. Every response body of this file is kept
and checked for secret values.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from django.test import override_settings
from django.utils import timezone

from automations.models import Automation, Delivery, Webhook
from automations.presets import PRESETS
from core.roles import Role
from registry.models import Event, RegisteredModel, Team
from registry.outbox import event_dispatch
from secrets_vault import services as vault
from secrets_vault.models import Secret
from tests import factories as f

# One xdist worker runs the whole file, in order: its last test checks every response the others received.
pytestmark = [pytest.mark.django_db, pytest.mark.xdist_group("test_automations_api")]

SIGNING_VALUE = "signing-VALUE-5f1c0de-must-never-be-shown"
TOKEN_VALUE = "ghp_TOKEN-VALUE-8a7b6c5d-must-never-be-shown"
PAYLOAD_VALUE = "payload-VALUE-3e2d1c0b-must-never-be-shown"
OTHER_VALUE = "other-team-VALUE-77aa99-must-never-be-shown"
SECRET_VALUES = (SIGNING_VALUE, TOKEN_VALUE, PAYLOAD_VALUE, OTHER_VALUE)

LOOPBACK = ["127.0.0.1/32"]
PARKED_URL = "http://127.0.0.1:9/hook"  # admitted by LOOPBACK; nothing is ever sent to it in this file

# Every response body seen in this file, checked at the end of each test and once more at the end of the file.
SEEN: list[str] = []


# --- Clients, world and helpers -------------------------------------------------------------------------


def keep(response):
    SEEN.append(response.content.decode("utf-8", errors="replace"))
    return response


class Client:
    """One user's API client, rooted at a team, that keeps every response body it receives."""

    def __init__(self, user, team: Team) -> None:
        self._client = f.api_client(user)
        self.root = f"/api/v1/teams/{team.name}/"

    def get(self, path: str, params: dict | None = None):
        return keep(self._client.get(self.root + path, params or {}))

    def send(self, method: str, path: str, body: Any = None):
        return keep(getattr(self._client, method.lower())(self.root + path, body, format="json"))

    def post(self, path: str, body: Any = None):
        return self.send("POST", path, body)

    def patch(self, path: str, body: Any = None):
        return self.send("PATCH", path, body)

    def put(self, path: str, body: Any = None):
        return self.send("PUT", path, body)

    def delete(self, path: str):
        return self.send("DELETE", path)


def presets_get(user):
    return keep(f.api_client(user).get("/api/v1/automation-presets/"))


@pytest.fixture(autouse=True)
def _no_secret_value_in_any_response():
    start = len(SEEN)
    yield
    leaks = [(value, body[:200]) for body in SEEN[start:] for value in SECRET_VALUES if value in body]
    assert not leaks, f"a secret value was returned: {leaks}"


@pytest.fixture
def loopback(settings):
    """The operator allow-list admits loopback, so webhooks may point at a receiver started by the test."""
    settings.WEBHOOK_ALLOWED_NETWORKS = LOOPBACK
    return settings


@dataclass
class World:
    """Team acme (admin, member, viewer; webhook 'deploy' signed and with a token; automation 'notify-link' on
    model 'classifier'), and team globex apart, with its own webhook, automation, model and secret."""

    team: Team
    admin: Any
    member: Any
    viewer: Any
    model: RegisteredModel
    webhook: Webhook
    automation: Automation
    other_team: Team
    other_admin: Any
    other_model: RegisteredModel
    other_webhook: Webhook
    other_automation: Automation
    clients: dict = field(default_factory=dict)

    def client(self, user, team: Team | None = None) -> Client:
        key = (user.pk, (team or self.team).pk)
        if key not in self.clients:
            self.clients[key] = Client(user, team or self.team)
        return self.clients[key]

    @property
    def api(self) -> Client:
        """Acme's admin."""
        return self.client(self.admin)


def _automation(team: Team, *, name: str, webhook: Webhook, model: RegisteredModel | None, payload: dict, **extra):
    from automations import services

    return services.automation_create(
        team=team,
        user=None,
        name=name,
        event_type=extra.pop("event_type", "LINK_ARTIFACT"),
        action_type="WEBHOOK",
        registered_model=model.name if model else None,
        webhook=webhook.pk,
        payload=payload,
        **extra,
    )


@pytest.fixture
def world(loopback) -> World:
    from automations import services

    admin = f.make_user("acme-admin")
    team = f.make_team("acme", admin=admin)
    member = f.add_member(team, f.make_user("acme-member"), Role.MEMBER)
    viewer = f.add_member(team, f.make_user("acme-viewer"), Role.VIEWER)
    for name, value in (("SIGNING_KEY", SIGNING_VALUE), ("DEPLOY_TOKEN", TOKEN_VALUE), ("PAYLOAD_KEY", PAYLOAD_VALUE)):
        vault.secret_create(team=team, name=name, value=value, user=admin)
    model = f.make_registered_model(team, "classifier")
    webhook = services.webhook_create(
        team=team, user=admin, name="deploy", url=PARKED_URL, secret="SIGNING_KEY", access_token="DEPLOY_TOKEN"
    )
    automation = _automation(
        team,
        name="notify-link",
        webhook=webhook,
        model=model,
        payload={"version": "${artifact_version_string}", "key": "${PAYLOAD_KEY}"},
    )

    other_admin = f.make_user("globex-admin")
    other_team = f.make_team("globex", admin=other_admin)
    vault.secret_create(team=other_team, name="OTHER_KEY", value=OTHER_VALUE, user=other_admin)
    other_model = f.make_registered_model(other_team, "detector")
    other_webhook = services.webhook_create(
        team=other_team, user=other_admin, name="globex-hook", url=PARKED_URL, secret="OTHER_KEY"
    )
    other_automation = _automation(
        other_team, name="globex-notify", webhook=other_webhook, model=other_model, payload={"k": "${OTHER_KEY}"}
    )
    return World(
        team=team,
        admin=admin,
        member=member,
        viewer=viewer,
        model=model,
        webhook=webhook,
        automation=automation,
        other_team=other_team,
        other_admin=other_admin,
        other_model=other_model,
        other_webhook=other_webhook,
        other_automation=other_automation,
    )


def link_and_dispatch(model: RegisteredModel, *, user, aliases=()) -> list[Delivery]:
    """Link a new version through the registry services and dispatch its events, as the events worker would when
    it leaves every batch to the deliveries workers: the deliveries stay pending (nothing is sent in this file)."""
    before = set(Event.objects.filter(team=model.team).values_list("pk", flat=True))
    f.link(model, user=user, aliases=aliases)
    with override_settings(DISPATCH_SEND_MAX=0):
        for event_id in Event.objects.filter(team=model.team).exclude(pk__in=before).values_list("pk", flat=True):
            assert event_dispatch(event_id=event_id)
    return list(Delivery.objects.filter(team=model.team, event_id__in=Event.objects.exclude(pk__in=before)))


@pytest.fixture
def deliveries(world) -> dict[str, Delivery]:
    """Acme: 'notify-link' and a team-wide alias automation on a second webhook fire for one link; globex: one."""
    from automations import services

    second = services.webhook_create(team=world.team, user=world.admin, name="audit", url=PARKED_URL)
    _automation(
        world.team,
        name="notify-alias",
        webhook=second,
        model=None,
        payload={"alias": "${alias}"},
        event_type="ADD_ARTIFACT_ALIAS",
        alias_regex="production",
    )
    made = link_and_dispatch(world.model, user=world.admin, aliases=["production"])
    (other,) = link_and_dispatch(world.other_model, user=world.other_admin)
    by_automation = {d.automation_name: d for d in made}
    assert sorted(by_automation) == ["notify-alias", "notify-link"]
    return {**by_automation, "other": other}


AUTOMATION_FIELDS = (
    "pk", "name", "description", "enabled", "event_type", "registered_model_id", "alias_regex", "filter",
    "action_type", "webhook_id", "payload",
)  # fmt: skip


def snapshot() -> dict:
    """Everything an automations API write can change, so a test can prove a refused request wrote nothing."""

    def rows(queryset, *fields):
        return sorted(queryset.values_list(*fields), key=repr)

    return {
        "secrets": rows(Secret.objects, "team_id", "name", "ciphertext"),
        "webhooks": rows(Webhook.objects, "pk", "name", "url", "secret_id", "access_token_id", "enabled"),
        "automations": rows(Automation.objects, *AUTOMATION_FIELDS),
        "deliveries": rows(Delivery.objects, "pk", "status", "next_attempt_at", "attempts"),
        "events": rows(Event.objects, "pk"),
    }


def errors(response) -> dict[str, list[str]]:
    return response.json()["errors"]


def webhook_body(**changes) -> dict:
    return {"name": "ci", "url": PARKED_URL, "secret": None, "access_token": None, **changes}


def automation_body(world: World, **changes) -> dict:
    return {
        "name": "notify-ci",
        "event_type": "LINK_ARTIFACT",
        "registered_model": "classifier",
        "action_type": "WEBHOOK",
        "webhook": world.webhook.pk,
        "payload": {"text": "${artifact_version_string} by ${event_author}"},
        **changes,
    }


# --- Roles and walls between teams ----------------------------------------------------------------------

# (method, path, body) with {webhook}, {automation} and {delivery} filled in from the world.
ADMIN_WRITES = [
    ("POST", "secrets/", {"name": "NEW_SECRET", "value": "x"}),
    ("PUT", "secrets/SIGNING_KEY/", {"value": "rotated"}),
    ("DELETE", "secrets/PAYLOAD_KEY/", None),
    ("POST", "webhooks/", {"name": "ci", "url": PARKED_URL}),
    ("PATCH", "webhooks/{webhook}/", {"enabled": False}),
    ("DELETE", "webhooks/{webhook}/", None),
    ("POST", "webhooks/{webhook}/test/", {"payload": {"a": "b"}}),
    ("POST", "automations/", {"name": "x", "event_type": "LINK_ARTIFACT", "action_type": "WEBHOOK"}),
    ("PATCH", "automations/{automation}/", {"enabled": False}),
    ("DELETE", "automations/{automation}/", None),
    ("POST", "deliveries/{delivery}/redeliver/", None),
]
ADMIN_READS = [
    ("GET", "secrets/", None),
    ("GET", "webhooks/", None),
    ("GET", "webhooks/{webhook}/", None),
]
VIEWER_READS = [("GET", "automations/", None), ("GET", "automations/{automation}/", None)]
DELIVERY_READS = [("GET", "deliveries/", None), ("GET", "deliveries/{delivery}/", None)]
ALL_ROUTES = ADMIN_WRITES + ADMIN_READS + VIEWER_READS + DELIVERY_READS
BY_ID_ROUTES = [route for route in ALL_ROUTES if "{" in route[1]]


def _ids(routes) -> list[str]:
    return [f"{method} {path}" for method, path, _ in routes]


def _path(template: str, *, webhook, automation, delivery) -> str:
    return template.format(webhook=webhook.pk, automation=automation.pk, delivery=delivery.pk)


def _own_path(template: str, world: World, deliveries) -> str:
    return _path(template, webhook=world.webhook, automation=world.automation, delivery=deliveries["notify-link"])


@pytest.mark.parametrize(("method", "path", "body"), ADMIN_WRITES, ids=_ids(ADMIN_WRITES))
def test_a_member_cannot_change_secrets_webhooks_automations_or_deliveries(world, deliveries, method, path, body):
    before = snapshot()

    response = world.client(world.member).send(method, _own_path(path, world, deliveries), body)

    assert response.status_code == 403, response.content
    assert snapshot() == before


@pytest.mark.parametrize(("method", "path", "body"), ADMIN_READS, ids=_ids(ADMIN_READS))
@pytest.mark.parametrize("role", ["member", "viewer"])
def test_members_and_viewers_cannot_read_secrets_or_webhooks(world, deliveries, role, method, path, body):
    response = world.client(getattr(world, role)).get(_own_path(path, world, deliveries))

    assert response.status_code == 403, response.content


ADMIN_ONLY_DELIVERY_FIELDS = {"url", "last_error", "payload", "attempts"}


@pytest.mark.parametrize(("method", "path", "body"), DELIVERY_READS, ids=_ids(DELIVERY_READS))
@pytest.mark.parametrize("role", ["member", "viewer"])
def test_members_and_viewers_see_a_deliverys_status_but_not_its_url_payload_or_answers(
    world, deliveries, role, method, path, body
):
    response = world.client(getattr(world, role)).get(_own_path(path, world, deliveries))

    assert response.status_code == 200, response.content
    found = response.json()["results"] if "results" in response.json() else [response.json()]
    assert found and all({"id", "status", "attempt_count", "event"} <= set(d) for d in found)
    assert not ADMIN_ONLY_DELIVERY_FIELDS & {key for d in found for key in d}
    admin_view = world.client(world.admin).get(_own_path(path, world, deliveries)).json()
    admin_found = admin_view.get("results", [admin_view])
    assert all("url" in d for d in admin_found)


@pytest.mark.parametrize(("method", "path", "body"), VIEWER_READS, ids=_ids(VIEWER_READS))
def test_a_viewer_can_read_automations(world, method, path, body):
    response = world.client(world.viewer).get(path.format(automation=world.automation.pk))

    assert response.status_code == 200, response.content
    found = response.json()["results"] if "results" in response.json() else [response.json()]
    assert [a["name"] for a in found] == ["notify-link"]


def test_a_viewer_cannot_create_an_automation(world):
    before = snapshot()

    response = world.client(world.viewer).post("automations/", automation_body(world))

    assert response.status_code == 403
    assert snapshot() == before


@pytest.mark.parametrize(("method", "path", "body"), ALL_ROUTES, ids=_ids(ALL_ROUTES))
def test_an_outsider_gets_404_on_every_route_of_another_team(world, deliveries, method, path, body):
    # Given globex's admin, who is not in acme, and acme's real ids
    outsider = world.client(world.other_admin, world.team)
    before = snapshot()

    # When they call acme's routes
    response = outsider.send(method, _own_path(path, world, deliveries), body)

    # Then acme's existence is not disclosed and nothing changes
    assert response.status_code == 404, response.content
    assert snapshot() == before


@pytest.mark.parametrize(("method", "path", "body"), BY_ID_ROUTES, ids=_ids(BY_ID_ROUTES))
def test_an_admin_cannot_reach_another_teams_objects_through_its_own_urls(world, deliveries, method, path, body):
    # Given acme's admin and globex's webhook, automation and delivery ids
    other_path = _path(
        path, webhook=world.other_webhook, automation=world.other_automation, delivery=deliveries["other"]
    )
    before = snapshot()

    # When they use them under acme's URLs
    response = world.api.send(method, other_path, body)

    # Then they are not found there, and nothing changes
    assert response.status_code == 404, response.content
    assert snapshot() == before


@pytest.mark.parametrize(
    ("changes", "field_name"),
    [
        ({"webhook": "{other_webhook}"}, "webhook"),
        ({"registered_model": "detector"}, "registered_model"),
        ({"payload": {"k": "${OTHER_KEY}"}}, "payload"),
    ],
    ids=["webhook", "registered_model", "secret"],
)
def test_an_automation_cannot_refer_to_another_teams_webhook_model_or_secret(world, changes, field_name):
    changes = {k: world.other_webhook.pk if v == "{other_webhook}" else v for k, v in changes.items()}
    before = snapshot()

    created = world.api.post("automations/", automation_body(world, **changes))
    patched = world.api.patch(f"automations/{world.automation.pk}/", changes)

    for response in (created, patched):
        assert response.status_code == 400, response.content
        assert list(errors(response)) == [field_name]
    assert snapshot() == before


@pytest.mark.parametrize("field_name", ["secret", "access_token"])
def test_a_webhook_cannot_use_another_teams_secret(world, field_name):
    before = snapshot()

    created = world.api.post("webhooks/", webhook_body(**{field_name: "OTHER_KEY"}))
    patched = world.api.patch(f"webhooks/{world.webhook.pk}/", {field_name: "OTHER_KEY"})

    for response in (created, patched):
        assert response.status_code == 400, response.content
        assert list(errors(response)) == [field_name]
        assert "OTHER_KEY" in errors(response)[field_name][0]
    assert snapshot() == before


# --- Outbound safety when a webhook is saved ------------------------------------------------------------

UNSAFE_URLS = [
    ("http://169.254.169.254/latest/meta-data", "cloud metadata"),
    ("http://10.0.0.1/", "private address"),
    ("http://127.0.0.1:9/", "loopback"),
    ("http://[::1]:9/", "loopback"),
    ("http://[::ffff:127.0.0.1]:9/", "loopback"),
    ("http://localhost:9/", "loopback"),
    ("file:///etc/passwd", "scheme 'file' is not allowed"),
    ("gopher://127.0.0.1/", "scheme 'gopher' is not allowed"),
]


@pytest.fixture
def admin_api(settings):
    """A team with only an admin, and an empty operator allow-list (the production default)."""
    settings.WEBHOOK_ALLOWED_NETWORKS = []
    admin = f.make_user()
    team = f.make_team(admin=admin)
    return Client(admin, team)


@pytest.mark.parametrize(("url", "reason"), UNSAFE_URLS, ids=[u for u, _ in UNSAFE_URLS])
def test_a_webhook_to_an_unsafe_url_is_refused_with_the_reason_and_not_saved(admin_api, url, reason):
    response = admin_api.post("webhooks/", webhook_body(url=url))

    assert response.status_code == 400, response.content
    assert list(errors(response)) == ["url"]
    assert reason in errors(response)["url"][0]
    assert not Webhook.objects.exists()


def test_the_operator_allow_list_admits_a_loopback_url(admin_api, settings):
    settings.WEBHOOK_ALLOWED_NETWORKS = LOOPBACK

    response = admin_api.post("webhooks/", webhook_body(url="http://127.0.0.1:9/"))

    assert response.status_code == 201, response.content
    assert Webhook.objects.get().url == "http://127.0.0.1:9/"


@pytest.mark.parametrize(("url", "reason"), UNSAFE_URLS[:2] + UNSAFE_URLS[-1:], ids=["metadata", "private", "gopher"])
def test_patching_a_webhook_to_an_unsafe_url_is_refused_and_keeps_the_stored_url(world, url, reason):
    before = snapshot()

    response = world.api.patch(f"webhooks/{world.webhook.pk}/", {"url": url, "enabled": False})

    assert response.status_code == 400, response.content
    assert reason in errors(response)["url"][0]
    assert snapshot() == before
    assert world.api.get(f"webhooks/{world.webhook.pk}/").json()["url"] == PARKED_URL


# --- Webhook secrets ------------------------------------------------------------------------------------


@pytest.mark.parametrize("field_name", ["secret", "access_token"])
def test_a_webhook_refers_only_to_secrets_that_exist(world, field_name):
    before = snapshot()

    response = world.api.post("webhooks/", webhook_body(**{field_name: "NO_SUCH_SECRET"}))

    assert response.status_code == 400, response.content
    assert list(errors(response)) == [field_name]
    assert "NO_SUCH_SECRET" in errors(response)[field_name][0]
    assert snapshot() == before


def test_a_webhook_read_shows_its_secrets_by_name_only(world):
    created = world.api.post("webhooks/", webhook_body(secret="SIGNING_KEY", access_token="DEPLOY_TOKEN"))

    assert created.status_code == 201, created.content
    for read in (created.json(), world.api.get(f"webhooks/{created.json()['id']}/").json()):
        assert read["secret"] == "SIGNING_KEY"
        assert read["access_token"] == "DEPLOY_TOKEN"
        assert {"name", "url", "enabled", "last_error", "disabled_reason"} <= set(read)
    listed = world.api.get("webhooks/").json()["results"]
    assert {(w["name"], w["secret"], w["access_token"]) for w in listed} == {
        ("ci", "SIGNING_KEY", "DEPLOY_TOKEN"),
        ("deploy", "SIGNING_KEY", "DEPLOY_TOKEN"),
    }


@pytest.mark.parametrize("secret", ["SIGNING_KEY", "DEPLOY_TOKEN"])
def test_deleting_a_secret_a_webhook_uses_is_refused_naming_the_webhook(world, secret):
    world.api.patch(f"automations/{world.automation.pk}/", {"payload": {"text": "no secrets here"}})

    response = world.api.delete(f"secrets/{secret}/")

    assert response.status_code == 409, response.content
    assert "'deploy'" in response.json()["detail"]
    assert Secret.objects.filter(team=world.team, name=secret).exists()


def test_deleting_a_secret_an_automation_payload_uses_is_refused_naming_the_automation(world):
    response = world.api.delete("secrets/PAYLOAD_KEY/")

    assert response.status_code == 409, response.content
    assert "'notify-link'" in response.json()["detail"]
    assert Secret.objects.filter(team=world.team, name="PAYLOAD_KEY").exists()


def test_deleting_an_unused_secret_succeeds(world):
    world.api.put("secrets/SPARE/", {"value": "spare-value"})

    response = world.api.delete("secrets/SPARE/")

    assert response.status_code == 204
    assert not Secret.objects.filter(team=world.team, name="SPARE").exists()


def test_deleting_a_webhook_an_automation_uses_is_refused_naming_the_automation(world):
    before = snapshot()

    response = world.api.delete(f"webhooks/{world.webhook.pk}/")

    assert response.status_code == 409, response.content
    assert "'notify-link'" in response.json()["detail"]
    assert snapshot() == before


def test_a_webhook_no_automation_uses_can_be_deleted(world):
    created = world.api.post("webhooks/", webhook_body()).json()

    response = world.api.delete(f"webhooks/{created['id']}/")

    assert response.status_code == 204
    assert not Webhook.objects.filter(pk=created["id"]).exists()


# --- Automation validation ------------------------------------------------------------------------------

INVALID_AUTOMATIONS = [
    ("unknown-event-type", {"event_type": "MODEL_DELETED"}, "event_type", "MODEL_DELETED"),
    ("unknown-registered-model", {"registered_model": "nonexistent"}, "registered_model", "nonexistent"),
    ("alias-filter-on-link", {"alias_regex": "prod.*"}, "alias_regex", "ADD_ARTIFACT_ALIAS"),
    ("invalid-regex", {"event_type": "ADD_ARTIFACT_ALIAS", "alias_regex": "prod(uction"}, "alias_regex", "regular"),
    ("filter-operand", {"filter": {"artifact_metadata.acc": {"$gte": "high"}}}, "filter", "acc.$gte: expects a number"),
    ("filter-alias-on-link", {"filter": {"$or": [{"alias": "prod"}]}}, "filter", "$or[0].alias: LINK_ARTIFACT"),
    ("payload-a-list", {"payload": [{"text": "hi"}]}, "payload", "JSON object"),
    ("payload-invalid-json", {"payload": '{"text": "hi",}'}, "payload", "Invalid JSON"),
    ("payload-json-list", {"payload": '["hi"]'}, "payload", "JSON object"),
    ("unknown-variable", {"payload": {"text": "${nope}"}}, "payload", "${nope}"),
    ("alias-on-link", {"payload": {"text": "${alias}"}}, "payload", "${alias}"),
    ("unknown-secret", {"payload": {"token": "${NOT_A_SECRET}"}}, "payload", "${NOT_A_SECRET}"),
    ("webhook-action-without-webhook", {"webhook": None}, "webhook", "webhook"),
    ("launch-job-incomplete", {"action_type": "LAUNCH_JOB", "webhook": None}, "job_version", "job version"),
    ("unknown-action-type", {"action_type": "EMAIL"}, "action_type", "EMAIL"),
    ("invalid-name", {"name": " padded "}, "name", "name"),
    # Documents the database cannot store or a worker cannot render: refused when saved, never a 500 later.
    ("nul-in-a-value", {"payload": {"text": "a\u0000b"}}, "payload", "NUL"),
    ("nul-in-a-key", {"payload": {"te\u0000xt": "b"}}, "payload", "NUL"),
    ("nul-in-a-string-payload", {"payload": '{"text": "a\\u0000b"}'}, "payload", "NUL"),
    ("infinite-number-in-a-string-payload", {"payload": '{"n": 1e400}'}, "payload", "finite"),
    ("overlong-number-in-a-string-payload", {"payload": '{"n": ' + "9" * 5000 + "}"}, "payload", "digits"),
    ("string-payload-nested-too-deep", {"payload": '{"a": ' * 100 + "1" + "}" * 100}, "payload", "deeper than 64"),
    ("string-payload-beyond-the-json-reader", {"payload": "[" * 100_000 + "]" * 100_000}, "payload", "too deeply"),
]


@pytest.mark.parametrize(
    ("changes", "field_name", "named"), [c[1:] for c in INVALID_AUTOMATIONS], ids=[c[0] for c in INVALID_AUTOMATIONS]
)
def test_an_invalid_automation_is_refused_naming_the_field_and_nothing_is_written(world, changes, field_name, named):
    before = snapshot()

    response = world.api.post("automations/", automation_body(world, **changes))

    assert response.status_code == 400, response.content
    assert list(errors(response)) == [field_name]
    assert named in errors(response)[field_name][0]
    assert snapshot() == before


def test_a_payload_nested_to_the_limit_is_accepted(world):
    text = '{"a": ' * 63 + '"${entity_name}"' + "}" * 63

    response = world.api.post("automations/", automation_body(world, payload=text))

    assert response.status_code == 201, response.content


def test_a_patch_with_a_payload_the_database_cannot_store_is_refused(world):
    before = snapshot()

    response = world.api.patch(f"automations/{world.automation.pk}/", {"payload": {"text": "a\u0000b"}})

    assert response.status_code == 400, response.content
    assert list(errors(response)) == ["payload"]
    assert snapshot() == before


def test_a_secret_variable_is_accepted_once_the_secret_exists(world):
    body = automation_body(world, payload={"token": "${RELEASE_KEY}"})
    refused = world.api.post("automations/", body)
    assert refused.status_code == 400
    assert "${RELEASE_KEY}" in errors(refused)["payload"][0]

    world.api.put("secrets/RELEASE_KEY/", {"value": "release-value"})
    accepted = world.api.post("automations/", body)

    assert accepted.status_code == 201, accepted.content
    assert accepted.json()["payload"] == {"token": "${RELEASE_KEY}"}


def test_a_duplicate_automation_name_conflicts(world):
    before = snapshot()

    response = world.api.post("automations/", automation_body(world, name="notify-link"))

    assert response.status_code == 409, response.content
    assert list(errors(response)) == ["name"]
    assert snapshot() == before


def test_a_payload_given_as_a_string_is_stored_as_an_object(world):
    text = '{"text": "${artifact_version_string}", "nested": {"n": 1, "ok": true}}'

    response = world.api.post("automations/", automation_body(world, payload=text))

    assert response.status_code == 201, response.content
    stored = {"text": "${artifact_version_string}", "nested": {"n": 1, "ok": True}}
    assert response.json()["payload"] == stored
    assert Automation.objects.get(pk=response.json()["id"]).payload == stored


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_a_preset_without_a_payload_stores_the_preset_payload(world, preset):
    body = automation_body(world, preset=preset)
    del body["payload"]

    response = world.api.post("automations/", body)

    assert response.status_code == 201, response.content
    assert response.json()["payload"] == PRESETS[preset].payload
    assert Automation.objects.get(pk=response.json()["id"]).payload == PRESETS[preset].payload


def test_an_unknown_preset_is_refused_naming_it(world):
    before = snapshot()

    response = world.api.post("automations/", automation_body(world, preset="pagerduty"))

    assert response.status_code == 400
    assert list(errors(response)) == ["preset"]
    assert snapshot() == before


def test_the_presets_are_listed(world):
    response = presets_get(world.viewer)

    assert response.status_code == 200
    listed = {p["key"]: p for p in response.json()}
    assert set(listed) == {"slack", "github_repository_dispatch", "microsoft_teams", "microsoft_teams_messagecard"}
    for key, preset in listed.items():
        assert preset["payload"] == PRESETS[key].payload
        assert preset["label"] and preset["description"]


# --- Listing and partial updates ------------------------------------------------------------------------


def test_listing_for_a_registered_model_shows_its_automations_and_team_wide_ones(world):
    f.make_registered_model(world.team, "detector")
    for name, model in (("team-wide", None), ("on-detector", "detector")):
        created = world.api.post("automations/", automation_body(world, name=name, registered_model=model))
        assert created.status_code == 201, created.content

    listed = world.client(world.viewer).get("automations/", {"registered_model": "classifier"})

    assert listed.status_code == 200
    found = {a["name"]: a for a in listed.json()["results"]}
    assert set(found) == {"notify-link", "team-wide"}
    assert found["notify-link"]["registered_model"] == "classifier"
    assert found["team-wide"]["registered_model"] is None
    for automation in found.values():
        assert automation["trigger_type"] == "A new version is linked to a registered model"
        assert automation["action_type"] == "WEBHOOK"
        assert automation["action_name"] == "deploy"
        assert automation["queue"] is None
    everything = world.client(world.viewer).get("automations/").json()["results"]
    assert {a["name"] for a in everything} == {"notify-link", "team-wide", "on-detector"}


def test_patch_changes_only_what_is_sent(world):
    path = f"automations/{world.automation.pk}/"
    original = world.api.get(path).json()

    disabled = world.api.patch(path, {"enabled": False})
    repayloaded = world.api.patch(path, {"payload": '{"text": "${event_author} linked ${artifact_version}"}'})
    renamed = world.api.patch(path, {"name": "notify-release"})

    assert [r.status_code for r in (disabled, repayloaded, renamed)] == [200, 200, 200]
    final = world.api.get(path).json()
    assert final["enabled"] is False
    assert final["payload"] == {"text": "${event_author} linked ${artifact_version}"}
    assert final["name"] == "notify-release"
    unchanged = ("description", "event_type", "registered_model", "alias_regex", "filter", "action_type", "webhook")
    assert {k: final[k] for k in unchanged} == {k: original[k] for k in unchanged}


def test_patch_revalidates_the_whole_automation(world):
    on_prod = {"name": "on-prod", "event_type": "ADD_ARTIFACT_ALIAS", "alias_regex": "prod.*"}
    created = world.api.post("automations/", automation_body(world, **on_prod, payload={"alias": "${alias}"}))
    path = f"automations/{created.json()['id']}/"
    before = snapshot()

    to_link = world.api.patch(path, {"event_type": "LINK_ARTIFACT"})
    bad_payload = world.api.patch(path, {"payload": {"x": "${nope}"}})
    no_webhook = world.api.patch(path, {"webhook": None})
    duplicate = world.api.patch(path, {"name": "notify-link"})

    assert to_link.status_code == 400 and list(errors(to_link)) == ["alias_regex"]
    assert bad_payload.status_code == 400 and "${nope}" in errors(bad_payload)["payload"][0]
    assert no_webhook.status_code == 400 and list(errors(no_webhook)) == ["webhook"]
    assert duplicate.status_code == 409 and list(errors(duplicate)) == ["name"]
    assert snapshot() == before
    assert world.api.get(path).json()["alias_regex"] == "prod.*"


# --- Test a webhook against a real receiver -------------------------------------------------------------


@dataclass
class Captured:
    headers: dict[str, str]
    body: bytes


class EchoReceiver:
    """A real HTTP server on 127.0.0.1 that records each request and answers with its headers and body."""

    def __init__(self) -> None:
        self.requests: list[Captured] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                receiver.requests.append(Captured({k.lower(): v for k, v in self.headers.items()}, body))
                echo = json.dumps({"headers": dict(self.headers.items()), "body": body.decode()}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("X-Echo-Authorization", self.headers.get("Authorization", ""))
                self.send_header("Content-Length", str(len(echo)))
                self.end_headers()
                self.wfile.write(echo)

            def log_message(self, format: str, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}/hooks/registry?team=acme"


@pytest.fixture
def receiver():
    server = EchoReceiver()
    server.thread.start()
    yield server
    server.server.shutdown()
    server.server.server_close()
    server.thread.join(timeout=5)


@pytest.fixture
def receiving_webhook(world, receiver) -> int:
    created = world.api.post(
        "webhooks/", webhook_body(name="echo", url=receiver.url, secret="SIGNING_KEY", access_token="DEPLOY_TOKEN")
    )
    assert created.status_code == 201, created.content
    return created.json()["id"]


TEST_PAYLOAD = {
    "event": "${event_type}",
    "author": "${event_author}",
    "model": "${artifact_collection_name}",
    "key": "${PAYLOAD_KEY}",
    "fixed": [1, True, None],
}


def _b64_hmac(key: str, message: bytes) -> str:
    return base64.b64encode(hmac.new(key.encode(), message, hashlib.sha256).digest()).decode()


def test_testing_a_webhook_sends_the_rendered_payload_signed_to_the_receiver(world, receiver, receiving_webhook):
    counts = (Delivery.objects.count(), Event.objects.count())

    response = world.api.post(f"webhooks/{receiving_webhook}/test/", {"payload": TEST_PAYLOAD})

    # The API answers with what the endpoint said
    assert response.status_code == 200, response.content
    answer = response.json()
    assert set(answer) == {"status_code", "headers", "body", "duration_ms", "error"}
    assert answer["status_code"] == 200
    assert answer["error"] == ""
    assert answer["duration_ms"] >= 0
    # The receiver got exactly the rendered payload, with the bearer token and valid signatures
    (got,) = receiver.requests
    assert json.loads(got.body) == {
        "event": "LINK_ARTIFACT",
        "author": world.admin.username,
        "model": "example-model",
        "key": PAYLOAD_VALUE,
        "fixed": [1, True, None],
    }
    assert got.headers["content-type"] == "application/json"
    assert got.headers["authorization"] == f"Bearer {TOKEN_VALUE}"
    assert hmac.compare_digest(got.headers["x-wandb-signature"], _b64_hmac(SIGNING_VALUE, got.body))
    msg_id, timestamp = got.headers["webhook-id"], got.headers["webhook-timestamp"]
    assert msg_id and abs(int(timestamp) - time.time()) < 60
    signed = f"{msg_id}.{timestamp}.".encode() + got.body
    assert got.headers["webhook-signature"] == "v1," + _b64_hmac(SIGNING_VALUE, signed)
    # Nothing is recorded
    assert (Delivery.objects.count(), Event.objects.count()) == counts


def test_a_test_answer_shows_echoed_secrets_by_name_only(world, receiver, receiving_webhook):
    response = world.api.post(f"webhooks/{receiving_webhook}/test/", {"payload": TEST_PAYLOAD})

    assert response.status_code == 200, response.content
    answer = response.json()
    echoed = json.loads(answer["body"])
    assert echoed["headers"]["Authorization"] == "Bearer ${DEPLOY_TOKEN}"
    assert json.loads(echoed["body"])["key"] == "${PAYLOAD_KEY}"
    assert answer["headers"]["X-Echo-Authorization"] == "Bearer ${DEPLOY_TOKEN}"
    for value in SECRET_VALUES:
        assert value not in response.content.decode()


def test_a_payload_given_as_a_string_can_be_tested(world, receiver, receiving_webhook):
    response = world.api.post(f"webhooks/{receiving_webhook}/test/", {"payload": '{"e": "${entity_name}"}'})

    assert response.status_code == 200, response.content
    assert json.loads(receiver.requests[0].body) == {"e": "acme"}


def test_testing_a_webhook_whose_url_is_no_longer_safe_is_refused(world, receiver, receiving_webhook, settings):
    settings.WEBHOOK_ALLOWED_NETWORKS = []
    counts = (Delivery.objects.count(), Event.objects.count())

    response = world.api.post(f"webhooks/{receiving_webhook}/test/", {"payload": TEST_PAYLOAD})

    assert response.status_code == 200, response.content
    answer = response.json()
    assert answer["status_code"] is None
    assert answer["error"].startswith("refused")
    assert "loopback" in answer["error"]
    assert receiver.requests == []
    assert (Delivery.objects.count(), Event.objects.count()) == counts


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ({"payload": ["not", "an", "object"]}, "JSON object"),
        ({"payload": "{broken"}, "Invalid JSON"),
        ({"payload": {"x": "${nope}"}}, "${nope}"),
        ({"payload": {"x": "${OTHER_KEY}"}}, "${OTHER_KEY}"),
        ({}, "required"),
        ({"payload": '{"a": ' * 100 + "1" + "}" * 100}, "deeper than 64"),
        ({"payload": "[" * 100_000 + "]" * 100_000}, "too deeply"),
        ({"payload": '{"n": ' + "9" * 5000 + "}"}, "digits"),
    ],
    ids=["list", "invalid-json", "unknown-variable", "other-teams-secret", "missing", "deep", "deeper", "digits"],
)
def test_testing_a_webhook_with_an_invalid_payload_is_refused_naming_payload(
    world, receiver, receiving_webhook, body, named
):
    counts = (Delivery.objects.count(), Event.objects.count())

    response = world.api.post(f"webhooks/{receiving_webhook}/test/", body)

    assert response.status_code == 400, response.content
    assert list(errors(response)) == ["payload"]
    assert named in errors(response)["payload"][0]
    assert receiver.requests == []
    assert (Delivery.objects.count(), Event.objects.count()) == counts


# --- Deliveries -----------------------------------------------------------------------------------------


def test_deliveries_are_listed_and_filtered(world, deliveries):
    link_delivery, alias_delivery = deliveries["notify-link"], deliveries["notify-alias"]

    def ids(params=None) -> set[str]:
        response = world.api.get("deliveries/", params)
        assert response.status_code == 200, response.content
        return {d["id"] for d in response.json()["results"]}

    assert ids() == {str(link_delivery.pk), str(alias_delivery.pk)}
    assert ids({"status": "pending"}) == {str(link_delivery.pk), str(alias_delivery.pk)}
    assert ids({"status": "failed"}) == set()
    assert ids({"automation": link_delivery.automation_id}) == {str(link_delivery.pk)}
    assert ids({"webhook": alias_delivery.webhook_id}) == {str(alias_delivery.pk)}
    assert ids({"webhook": world.webhook.pk, "automation": alias_delivery.automation_id}) == set()
    assert ids({"automation": world.other_automation.pk}) == set()
    listed = {d["automation_name"]: d for d in world.api.get("deliveries/").json()["results"]}
    assert listed["notify-link"]["event_type"] == "LINK_ARTIFACT"
    assert listed["notify-alias"]["event_type"] == "ADD_ARTIFACT_ALIAS"
    assert listed["notify-link"]["webhook_name"] == "deploy"
    assert listed["notify-link"]["status"] == "pending"


@pytest.mark.parametrize(
    "params",
    [{"status": "bogus"}, {"automation": "abc"}, {"webhook": "1.5"}, {"automation": "-1"}, {"webhook": "²"}],
    ids=["status", "automation", "webhook", "negative", "superscript"],
)
def test_a_bad_delivery_filter_is_refused_naming_it(world, deliveries, params):
    response = world.api.get("deliveries/", params)

    assert response.status_code == 400, response.content
    assert list(errors(response)) == list(params)


def test_a_delivery_detail_shows_attempts_and_the_payload_with_secrets_by_name(world, deliveries):
    delivery = deliveries["notify-link"]

    response = world.api.get(f"deliveries/{delivery.pk}/")

    assert response.status_code == 200, response.content
    detail = response.json()
    assert detail["id"] == str(delivery.pk)
    assert detail["attempts"] == []
    assert detail["attempt_count"] == 0
    assert detail["automation"] == world.automation.pk
    assert detail["webhook"] == world.webhook.pk
    assert json.loads(detail["payload"]) == {"version": "acme/model-registry/classifier:v0", "key": "${PAYLOAD_KEY}"}


def test_an_unknown_delivery_is_not_found(world, deliveries):
    for path in ("deliveries/not-a-uuid/", "deliveries/00000000-0000-0000-0000-000000000000/"):
        assert world.api.get(path).status_code == 404
    assert world.api.post("deliveries/not-a-uuid/redeliver/").status_code == 404


def test_a_failed_delivery_can_be_redelivered(world, deliveries):
    delivery = deliveries["notify-link"]
    Delivery.objects.filter(pk=delivery.pk).update(
        status="failed", finished_at=timezone.now(), next_attempt_at=None, last_error="HTTP 500"
    )
    assert [d["id"] for d in world.api.get("deliveries/", {"status": "failed"}).json()["results"]] == [str(delivery.pk)]

    response = world.api.post(f"deliveries/{delivery.pk}/redeliver/")

    assert response.status_code == 202, response.content
    assert response.json()["id"] == str(delivery.pk)
    assert response.json()["status"] == "pending"
    delivery.refresh_from_db()
    assert delivery.status == "pending"
    assert delivery.finished_at is None
    assert delivery.next_attempt_at is not None
    assert world.api.get(f"deliveries/{delivery.pk}/").json()["status"] == "pending"


def test_a_delivery_being_sent_cannot_be_redelivered(world, deliveries):
    delivery = deliveries["notify-link"]
    Delivery.objects.filter(pk=delivery.pk).update(status="sending")

    response = world.api.post(f"deliveries/{delivery.pk}/redeliver/")

    assert response.status_code == 409, response.content
    delivery.refresh_from_db()
    assert delivery.status == "sending"


# --- Secrets never leave ----------------------------------------------------------------------------------


def test_no_response_of_this_file_held_a_secret_value():
    """Runs last: every response body the scenarios above received, checked once more as a whole."""
    if not SEEN:
        pytest.skip("run with the rest of the file")
    leaks = {value for body in SEEN for value in SECRET_VALUES if value in body}
    assert not leaks
