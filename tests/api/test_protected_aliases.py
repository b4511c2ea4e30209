"""Protected aliases: a team's admins decide who moves ``production``.

Once an alias name is protected, a member may not put it on a version, move it, remove it, link a version with it,
or unlink the version holding it: each is a 403 naming the alias, and nothing is written (no row, no event). Admins
do all of that as before, and only admins protect or unprotect a name.
"""

from __future__ import annotations

import pytest

from core.roles import Role
from registry import services
from registry.models import Alias, Event, ModelVersion, ProtectedAlias
from tests import factories as f

pytestmark = pytest.mark.django_db


@pytest.fixture
def acme():
    """Team acme: 'classifier' v0 holds production (protected), v1 is linked, training/classifier:v2 is not."""
    admin = f.make_user()
    team = f.make_team("acme", admin=admin)
    member = f.add_member(team, role=Role.MEMBER)
    model = f.make_registered_model(team, "classifier")
    f.link(model, user=admin, aliases=["production"])
    f.link(model, user=admin)
    f.make_artifact_version(team)
    services.protected_alias_add(team=team, name="production", user=admin)
    return team, admin, member


def url(team, path: str) -> str:
    return f"/api/v1/teams/{team.name}/{path}"


def refused(response, field: str) -> str:
    assert response.status_code == 403, response.content
    body = response.json()
    assert body["code"] == "permission_denied" and list(body["errors"]) == [field], body
    message = body["errors"][field][0]
    assert "'production'" in message and "only the team's admins" in message, message
    return message


MEMBER_CHANGES = {
    "move": ("post", "registered-models/classifier/versions/v1/aliases/", {"alias": "production"}, "alias"),
    "remove": ("delete", "registered-models/classifier/aliases/production/", None, "alias"),
    "link with it": (
        "post",
        "registered-models/classifier/versions/",
        {"artifact": "acme/training/classifier:v2", "aliases": ["staging", "production"]},
        "aliases",
    ),
    "unlink its version": ("delete", "registered-models/classifier/versions/v0/", None, "version"),
    "put it on the version holding it": (
        "post",
        "registered-models/classifier/versions/v0/aliases/",
        {"alias": "production"},
        "alias",
    ),
}


@pytest.mark.parametrize("change", MEMBER_CHANGES)
def test_a_member_is_refused_every_change_to_a_protected_alias_and_nothing_is_written(acme, change):
    team, _, member = acme
    method, path, body, field = MEMBER_CHANGES[change]
    before = f.registry_snapshot()

    response = getattr(f.api_client(member), method)(url(team, path), body, format="json")

    refused(response, field)
    assert f.registry_snapshot() == before


@pytest.mark.parametrize("change", MEMBER_CHANGES)
def test_an_admin_makes_the_same_changes(acme, change):
    team, admin, _ = acme
    method, path, body, _ = MEMBER_CHANGES[change]

    response = getattr(f.api_client(admin), method)(url(team, path), body, format="json")

    assert response.status_code in (200, 201, 204), response.content


def test_an_admins_move_of_a_protected_alias_fires_its_event(acme):
    team, admin, _ = acme
    response = f.api_client(admin).post(
        url(team, "registered-models/classifier/versions/v1/aliases/"), {"alias": "production"}, format="json"
    )
    assert response.status_code == 201
    (event,) = response.json()["events"]
    assert event["type"] == "ADD_ARTIFACT_ALIAS" and event["alias"] == "production"
    assert Alias.objects.get(name="production").model_version.version == "v1"


def test_unprotected_aliases_stay_the_members(acme):
    team, _, member = acme
    client = f.api_client(member)
    added = client.post(
        url(team, "registered-models/classifier/versions/v1/aliases/"), {"alias": "staging"}, format="json"
    )
    assert added.status_code == 201
    assert client.delete(url(team, "registered-models/classifier/aliases/staging/")).status_code == 204
    # v1 holds no protected alias: a member may unlink it.
    assert client.delete(url(team, "registered-models/classifier/versions/v1/")).status_code == 204


def test_protection_is_per_team(acme):
    """Team globex has its own 'production', unprotected: its members move it."""
    globex_admin = f.make_user()
    globex = f.make_team("globex", admin=globex_admin)
    member = f.add_member(globex, role=Role.MEMBER)
    model = f.make_registered_model(globex, "classifier")
    f.link(model, user=globex_admin, aliases=["production"])
    f.link(model, user=globex_admin)

    response = f.api_client(member).post(
        url(globex, "registered-models/classifier/versions/v1/aliases/"), {"alias": "production"}, format="json"
    )

    assert response.status_code == 201


def test_listing_and_unprotecting(acme):
    team, admin, member = acme
    listed = f.api_client(member).get(url(team, "protected-aliases/"))
    assert listed.status_code == 200
    assert [(p["name"], p["created_by"]) for p in listed.json()["results"]] == [("production", admin.username)]

    assert f.api_client(admin).delete(url(team, "protected-aliases/production/")).status_code == 204
    moved = f.api_client(member).post(
        url(team, "registered-models/classifier/versions/v1/aliases/"), {"alias": "production"}, format="json"
    )
    assert moved.status_code == 201


def test_only_admins_protect_and_unprotect(acme):
    team, _, member = acme
    client = f.api_client(member)
    before = f.registry_snapshot()

    added = client.post(url(team, "protected-aliases/"), {"name": "staging"}, format="json")
    removed = client.delete(url(team, "protected-aliases/production/"))

    assert added.status_code == removed.status_code == 403
    assert f.registry_snapshot() == before


@pytest.mark.parametrize(
    ("name", "status", "reason"),
    [
        ("latest", 400, "maintained by the system"),
        ("v3", 400, "version index"),
        ("no spaces", 400, "Invalid alias"),
        ("", 400, "blank"),
        ("x" * 65, 400, "64"),
        ("production", 409, "already protected"),
    ],
)
def test_a_bad_name_is_refused_with_the_field_and_the_reason(acme, name, status, reason):
    team, admin, _ = acme
    before = f.registry_snapshot()

    response = f.api_client(admin).post(url(team, "protected-aliases/"), {"name": name}, format="json")

    assert response.status_code == status, response.content
    assert list(response.json()["errors"]) == ["name"] and reason in response.json()["errors"]["name"][0]
    assert f.registry_snapshot() == before


def test_unprotecting_a_name_that_is_not_protected_is_404(acme):
    team, admin, _ = acme
    response = f.api_client(admin).delete(url(team, "protected-aliases/staging/"))
    assert response.status_code == 404 and "not a protected alias" in response.json()["detail"]


def test_the_system_still_moves_latest_when_a_member_unlinks_the_newest_version(acme):
    """``latest`` cannot be protected, and the system's own moves (user None) are never refused."""
    team, admin, member = acme
    protect = f.api_client(admin).post(url(team, "protected-aliases/"), {"name": "latest"}, format="json")
    assert protect.status_code == 400
    assert f.api_client(member).delete(url(team, "registered-models/classifier/versions/v1/")).status_code == 204
    assert Alias.objects.get(name="latest").model_version.version == "v0"
    assert not ProtectedAlias.objects.filter(name="latest").exists()


def test_a_refused_unlink_leaves_the_version_and_fires_nothing(acme):
    team, _, member = acme
    events = Event.objects.count()
    response = f.api_client(member).delete(url(team, "registered-models/classifier/versions/v0/"))
    message = refused(response, "version")
    assert message.startswith("v0 holds the protected alias 'production'")
    assert ModelVersion.objects.filter(registered_model__team=team, index=0).exists()
    assert Event.objects.count() == events
