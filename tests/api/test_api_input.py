"""Bad input to every write route of the registry API: a JSON 4xx naming the field at fault, and nothing written.

Each refusal also checks the whole registry snapshot (every row a write could touch, events included), so a
request that fails half-way through cannot pass unnoticed.
"""

from __future__ import annotations

import json

import pytest
from django.conf import settings
from django.urls import reverse

from core.roles import Role
from registry.models import Event, ModelVersion, RegisteredModel
from tests import factories as f

pytestmark = pytest.mark.django_db


@pytest.fixture
def acme():
    """Team acme: classifier v0 (aliases latest, production) from training/classifier:v0; v1 not linked yet.

    Team globex has an artifact of its own. Returns the acme admin.
    """
    admin = f.make_user()
    team = f.make_team("acme", admin=admin)
    f.link(f.make_registered_model(team, "classifier"), user=admin, aliases=["production"])
    f.make_artifact_version(team)
    f.make_registered_model(team, "detector")
    f.make_artifact_version(f.make_team("globex"))
    return admin


@pytest.fixture
def client(acme):
    return f.api_client(acme)


@pytest.fixture
def root_client():
    return f.api_client(f.make_user(superuser=True))


def assert_refused(response, status: int, field: str | None, before: dict) -> dict:
    """A JSON error naming ``field`` (``None``: a body that is not a JSON object at all), and no write."""
    assert response.status_code == status, response.content
    body = response.json()
    assert set(body) == {"detail", "code", "errors"}, body
    assert body["detail"]
    if field is None:
        assert body["errors"] == {} or list(body["errors"]) == ["non_field_errors"], body
    else:
        assert any(key == field or key.startswith(f"{field}.") for key in body["errors"]), body
    assert f.registry_snapshot() == before
    return body


def url(route: str, **kwargs) -> str:
    return reverse(route, kwargs={"team": "acme", **kwargs} if route not in ("teams", "users") else kwargs)


# --- Teams and users ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"name": "my team"}, 400, "name"),
        ({"name": "MyTeam"}, 400, "name"),
        ({"name": "a" * 65}, 400, "name"),
        ({"name": ""}, 400, "name"),
        ({"name": "-leading-dash"}, 400, "name"),
        ({"name": ["acme"]}, 400, "name"),
        ({}, 400, "name"),
        ({"name": "acme"}, 409, "name"),
    ],
    ids=["spaces", "uppercase", "too-long", "empty", "leading-dash", "not-a-string", "missing", "duplicate"],
)
def test_team_create_refuses_bad_names(acme, root_client, body, status, field):
    before = f.registry_snapshot()

    response = root_client.post(url("teams"), body, format="json")

    assert_refused(response, status, field, before)


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"username": "{existing}", "password": f.PASSWORD}, 409, "username"),
        ({"username": "newbie", "password": "123"}, 400, "password"),
        ({"username": "newbie", "password": "password"}, 400, "password"),
        ({"username": "newbie", "password": "newbie123"}, 400, "password"),
        ({"username": "newbie", "password": f.PASSWORD, "email": "not-an-email"}, 400, "email"),
        ({"username": "new bie", "password": f.PASSWORD}, 400, "username"),
        ({"username": "u" * 151, "password": f.PASSWORD}, 400, "username"),
        ({"username": "newbie"}, 400, "password"),
        ({"password": f.PASSWORD}, 400, "username"),
    ],
    ids=[
        "duplicate",
        "short-password",
        "common-password",
        "password-like-username",
        "bad-email",
        "username-with-space",
        "username-too-long",
        "missing-password",
        "missing-username",
    ],
)
def test_user_create_refuses_bad_input(acme, root_client, body, status, field):
    body = {key: value.format(existing=acme.username) for key, value in body.items()}
    before = f.registry_snapshot()

    response = root_client.post(url("users"), body, format="json")

    assert_refused(response, status, field, before)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"username": "someone"}, "password"),
        ({"password": "x"}, "username"),
        ({"username": "a\u0000", "password": "x"}, "username"),
    ],
    ids=["missing-password", "missing-username", "nul-in-username"],
)
def test_token_request_refuses_incomplete_credentials(body, field):
    response = f.api_client().post(reverse("auth-token"), body, format="json")

    assert_refused(response, 400, field, f.registry_snapshot())


# --- Members --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"username": "nobody", "role": "member"}, 400, "username"),
        ({"username": "{someone}", "role": "owner"}, 400, "role"),
        ({"username": "{someone}"}, 400, "role"),
        ({"role": "member"}, 400, "username"),
    ],
    ids=["unknown-username", "bad-role", "missing-role", "missing-username"],
)
def test_member_add_refuses_bad_input(client, body, status, field):
    someone = f.make_user()
    body = {key: value.format(someone=someone.username) for key, value in body.items()}
    before = f.registry_snapshot()

    response = client.post(url("members"), body, format="json")

    assert_refused(response, status, field, before)


def test_member_role_change_refuses_a_bad_role(acme, client):
    member = f.add_member(acme.memberships.get().team, role=Role.MEMBER)
    before = f.registry_snapshot()

    response = client.patch(url("member", username=member.username), {"role": "owner"}, format="json")

    assert_refused(response, 400, "role", before)


def test_adding_an_existing_member_answers_409_and_keeps_their_role(acme, client):
    f.add_member(acme.memberships.get().team, role=Role.ADMIN)  # so that demoting acme's admin would be allowed
    before = f.registry_snapshot()

    response = client.post(url("members"), {"username": acme.username, "role": "viewer"}, format="json")

    body = assert_refused(response, 409, "username", before)
    assert "PATCH" in body["detail"]
    assert acme.memberships.get().role == Role.ADMIN


@pytest.mark.parametrize("method", ["patch", "delete"])
def test_member_routes_answer_404_for_someone_not_in_the_team(client, method):
    outsider = f.make_user()
    before = f.registry_snapshot()

    response = getattr(client, method)(url("member", username=outsider.username), {"role": "viewer"}, format="json")

    assert_refused(response, 404, "username", before)


# --- Projects -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"name": "bad name"}, 400, "name"),
        ({"name": "a/b"}, 400, "name"),
        ({"name": "x" * 129}, 400, "name"),
        ({}, 400, "name"),
        ({"name": "training"}, 409, "name"),
        ({"name": "model-registry"}, 409, "name"),
        ({"name": "ok", "description": "a\u0000b"}, 400, "description"),
    ],
    ids=["space", "slash", "too-long", "missing", "duplicate", "registry-project", "nul-in-description"],
)
def test_project_create_refuses_bad_input(client, body, status, field):
    before = f.registry_snapshot()

    response = client.post(url("projects"), body, format="json")

    assert_refused(response, status, field, before)


# --- Artifact versions ----------------------------------------------------------------------------------


def artifact_versions_url(project: str = "training", collection: str = "classifier") -> str:
    return url("artifact-versions", project=project, collection=collection)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"metadata": {}}, "type"),
        ({"type": "dataset"}, "type"),  # classifier holds models
        ({"type": "bad type"}, "type"),
        ({"type": "model", "metadata": ["a", "list"]}, "metadata"),
        ({"type": "model", "metadata": "a string"}, "metadata"),
        ({"type": "model", "metadata": 3}, "metadata"),
        ({"type": "model", "metadata": {"note": "a\u0000b"}}, "metadata"),
        ({"type": "model", "metadata": {"nested": [{"a\u0000": 1}]}}, "metadata"),
        ({"type": "model", "digest": "d" * 129}, "digest"),
        ({"type": "model", "description": "a\u0000b"}, "description"),
    ],
    ids=[
        "missing-type",
        "type-mismatch",
        "bad-type",
        "metadata-list",
        "metadata-string",
        "metadata-number",
        "metadata-nul",
        "metadata-nested-nul-key",
        "digest-too-long",
        "description-nul",
    ],
)
def test_artifact_version_create_refuses_bad_fields(client, body, field):
    before = f.registry_snapshot()

    response = client.post(artifact_versions_url(), body, format="json")

    assert_refused(response, 400, field, before)


def test_artifact_version_create_in_an_unknown_project_is_404(client):
    before = f.registry_snapshot()

    response = client.post(artifact_versions_url(project="nowhere"), {"type": "model"}, format="json")

    assert_refused(response, 404, "project", before)


def test_artifact_version_create_refuses_a_bad_collection_name(client):
    before = f.registry_snapshot()

    response = client.post(artifact_versions_url(collection="-bad"), {"type": "model"}, format="json")

    assert_refused(response, 400, "collection", before)


def test_artifacts_are_not_logged_into_the_registry_project(client):
    before = f.registry_snapshot()

    response = client.post(artifact_versions_url(project="model-registry"), {"type": "model"}, format="json")

    assert_refused(response, 400, "project", before)


@pytest.mark.parametrize(
    "raw",
    [
        "not json",
        '{"type": "model",',
        '{"type": "model", "metadata": {"x": NaN}}',
        '{"type": "model", "metadata": {"x": 1e400}}',
        '{"type": "model", "metadata": {"x": "\\ud800"}}',
        '{"type": "model", "metadata": {"\\udfff": 1}}',
        '{"type": "model", "metadata": ' + '{"a": ' * 500 + "1" + "}" * 500 + "}",
        "[" * 100_000 + "]" * 100_000,
    ],
    ids=[
        "not-json",
        "truncated",
        "nan",
        "overflowing-number",
        "lone-surrogate-value",
        "lone-surrogate-key",
        "nested-500-deep",
        "nested-100000-deep",
    ],
)
def test_a_body_that_is_not_storable_json_is_a_400_parse_error(client, raw):
    before = f.registry_snapshot()

    response = client.post(artifact_versions_url(), raw, content_type="application/json")

    assert assert_refused(response, 400, None, before)["code"] == "parse_error"


@pytest.mark.parametrize("body", [["type", "model"], "model", 42, None], ids=["list", "string", "number", "null"])
def test_a_json_body_that_is_not_an_object_is_refused(client, body):
    before = f.registry_snapshot()

    response = client.post(artifact_versions_url(), json.dumps(body), content_type="application/json")

    assert_refused(response, 400, None, before)


def test_a_form_encoded_body_is_415(client):
    before = f.registry_snapshot()

    response = client.post(artifact_versions_url(), "type=model", content_type="application/x-www-form-urlencoded")

    assert assert_refused(response, 415, None, before)["code"] == "unsupported_media_type"


def test_a_body_over_the_upload_limit_is_413_not_500(client):
    assert settings.DATA_UPLOAD_MAX_MEMORY_SIZE == 2 * 1024 * 1024
    raw = json.dumps({"type": "model", "description": "x" * (settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 1)})
    before = f.registry_snapshot()

    response = client.post(artifact_versions_url(), raw, content_type="application/json")

    assert assert_refused(response, 413, None, before)["code"] == "request_too_large"


def test_moderately_nested_metadata_is_stored(client):
    metadata = {"layers": [{"name": "dense", "config": {"units": 64, "activation": {"name": "relu"}}}], "f1": 0.91}

    response = client.post(artifact_versions_url(), {"type": "model", "metadata": metadata}, format="json")

    assert response.status_code == 201, response.content
    assert response.json()["metadata"] == metadata
    assert response.json()["version"] == "v2"


# --- NUL in the URL -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/api/v1/teams/ac%00me/"),
        ("get", "/api/v1/teams/acme/registered-models/class%00ifier/"),
        ("patch", "/api/v1/teams/acme/registered-models/class%00ifier/"),
        ("delete", "/api/v1/teams/acme/registered-models/classifier/aliases/prod%00/"),
        ("patch", "/api/v1/teams/acme/members/x%00/"),
        ("delete", "/api/v1/teams/acme/members/x%00/"),
        ("get", "/api/v1/teams/acme/projects/train%00ing/artifacts/classifier/versions/"),
        ("post", "/api/v1/teams/acme/projects/training/artifacts/class%00ifier/versions/"),
        ("post", "/api/v1/teams/acme/registered-models/classifier/versions/v%000/aliases/"),
    ],
)
def test_nul_in_a_url_segment_is_404_not_500(client, method, path):
    before = f.registry_snapshot()

    response = getattr(client, method)(path, {"type": "model", "alias": "staging"}, format="json")

    assert_refused(response, 404, None, before)


@pytest.mark.parametrize("query", ["type=A%00", "registered_model=class%00ifier"])
def test_nul_in_a_query_parameter_is_400_not_500(client, query):
    response = client.get(url("events") + "?" + query)

    assert_refused(response, 400, query.split("=")[0], f.registry_snapshot())


# --- Registered models ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"name": "bad name"}, 400, "name"),
        ({"name": "a:b"}, 400, "name"),
        ({"name": ""}, 400, "name"),
        ({}, 400, "name"),
        ({"name": "classifier"}, 409, "name"),
        ({"name": "ok", "description": 5 * "x" * 2001}, 400, "description"),
    ],
    ids=["space", "colon", "empty", "missing", "duplicate", "description-too-long"],
)
def test_registered_model_create_refuses_bad_input(client, body, status, field):
    before = f.registry_snapshot()

    response = client.post(url("registered-models"), body, format="json")

    assert_refused(response, status, field, before)


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"name": "detector"}, 409, "name"),
        ({"name": "bad name"}, 400, "name"),
        ({"name": None}, 400, "name"),
        ({"name": "renamed", "description": "a\u0000"}, 400, "description"),
    ],
    ids=["rename-to-existing", "bad-name", "null-name", "nul-in-description"],
)
def test_registered_model_update_refuses_bad_input(client, body, status, field):
    before = f.registry_snapshot()

    response = client.patch(url("registered-model", name="classifier"), body, format="json")

    assert_refused(response, status, field, before)
    assert client.get(url("registered-model", name="classifier")).status_code == 200


def test_registered_model_update_with_an_empty_body_changes_nothing(client):
    before = f.registry_snapshot()

    response = client.patch(url("registered-model", name="classifier"), {}, format="json")

    assert response.status_code == 200, response.content
    assert response.json()["name"] == "classifier"
    assert f.registry_snapshot() == before


@pytest.mark.parametrize("method", ["get", "patch", "delete"])
def test_an_unknown_registered_model_is_404(client, method):
    before = f.registry_snapshot()

    response = getattr(client, method)(url("registered-model", name="nope"), {"description": "x"}, format="json")

    assert_refused(response, 404, None, before)


# --- Links ----------------------------------------------------------------------------------------------


def link_url(name: str = "classifier") -> str:
    return url("model-versions", name=name)


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({}, 400, "artifact"),
        ({"artifact": "not-a-reference"}, 400, "artifact"),
        ({"artifact": "acme/training/classifier"}, 400, "artifact"),
        ({"artifact": "acme/training/classifier:v1/extra"}, 400, "artifact"),
        ({"artifact": ["acme/training/classifier:v1"]}, 400, "artifact"),
        ({"artifact": "acme/training/classifier:v99"}, 400, "artifact"),
        ({"artifact": "acme/training/nothing:v0"}, 400, "artifact"),
        ({"artifact": "acme/nowhere/classifier:v0"}, 400, "artifact"),
        ({"artifact": "acme/training/classifier:production"}, 400, "artifact"),
        ({"artifact": "globex/training/classifier:v0"}, 400, "artifact"),
        ({"artifact": "nosuchteam/training/classifier:v0"}, 400, "artifact"),
        ({"artifact": "acme/training/classifier:v0"}, 409, "artifact"),
        ({"artifact": "acme/model-registry/classifier:production"}, 409, "artifact"),
        ({"artifact": "acme/training/classifier:v1", "aliases": "staging"}, 400, "aliases"),
        ({"artifact": "acme/training/classifier:v1", "aliases": {"staging": True}}, 400, "aliases"),
        ({"artifact": "acme/training/classifier:v1", "aliases": [["staging"]]}, 400, "aliases"),
        ({"artifact": "acme/training/classifier:v1", "aliases": ["a"] * 51}, 400, "aliases"),
    ],
    ids=[
        "missing",
        "malformed",
        "no-tag",
        "extra-segment",
        "not-a-string",
        "unknown-version",
        "unknown-collection",
        "unknown-project",
        "alias-outside-registry",
        "other-team",
        "unknown-team",
        "already-linked",
        "already-linked-via-registry-alias",
        "aliases-a-string",
        "aliases-an-object",
        "aliases-nested-list",
        "too-many-aliases",
    ],
)
def test_link_refuses_bad_input(client, body, status, field):
    before = f.registry_snapshot()

    response = client.post(link_url(), body, format="json")

    assert_refused(response, status, field, before)


@pytest.mark.parametrize("alias", ["bad alias", "v3", "latest", "", "-dash", "a/b", "x" * 65])
def test_link_with_a_bad_alias_writes_no_version_and_no_event(client, alias):
    before = f.registry_snapshot()

    # A good alias first: nothing of it may survive the bad one.
    response = client.post(
        link_url(), {"artifact": "acme/training/classifier:v1", "aliases": ["staging", alias]}, format="json"
    )

    assert_refused(response, 400, "aliases", before)
    assert not ModelVersion.objects.filter(index=1).exists()


def test_link_into_an_unknown_registered_model_is_404(client):
    before = f.registry_snapshot()

    response = client.post(link_url("nope"), {"artifact": "acme/training/classifier:v1"}, format="json")

    assert_refused(response, 404, None, before)


def test_link_refuses_a_caused_by_header_that_is_not_an_event(client):
    before = f.registry_snapshot()

    response = client.post(
        link_url(), {"artifact": "acme/training/classifier:v1"}, format="json", headers={"X-Registry-Caused-By": "zz"}
    )

    assert_refused(response, 400, "X-Registry-Caused-By", before)


def test_link_with_duplicate_aliases_puts_each_once(client):
    response = client.post(
        link_url(),
        {"artifact": "acme/training/classifier:v1", "aliases": ["staging", "staging", "canary"]},
        format="json",
    )

    assert response.status_code == 201, response.content
    assert response.json()["aliases"] == ["canary", "latest", "staging"]
    events = Event.objects.filter(model_version__index=1)
    assert sorted(events.values_list("type", "alias")) == [
        ("ADD_ARTIFACT_ALIAS", "canary"),
        ("ADD_ARTIFACT_ALIAS", "staging"),
        ("LINK_ARTIFACT", ""),
    ]


# --- Aliases and unlinking ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        {"alias": "bad alias"},
        {"alias": "latest"},
        {"alias": "v3"},
        {"alias": ""},
        {"alias": "x" * 65},
        {},
        {"alias": ["production"]},
    ],
    ids=["malformed", "latest", "version-like", "empty", "too-long", "missing", "a-list"],
)
def test_alias_add_refuses_bad_aliases(client, body):
    before = f.registry_snapshot()

    response = client.post(url("model-version-aliases", name="classifier", version="v0"), body, format="json")

    assert_refused(response, 400, "alias", before)


def test_adding_an_alias_the_version_already_has_is_200_and_fires_no_event(client):
    before = f.registry_snapshot()
    events = Event.objects.count()

    response = client.post(
        url("model-version-aliases", name="classifier", version="v0"), {"alias": "production"}, format="json"
    )

    assert response.status_code == 200, response.content
    assert response.json()["aliases"] == ["latest", "production"]
    assert Event.objects.count() == events
    assert f.registry_snapshot() == before


def test_adding_a_new_alias_is_201_with_one_event_and_moving_one_is_201_too(client):
    assert f.link(RegisteredModel.objects.get(name="classifier")).version == "v1"  # now "latest"
    events = Event.objects.count()

    added = client.post(
        url("model-version-aliases", name="classifier", version="v0"), {"alias": "staging"}, format="json"
    )
    moved = client.post(
        url("model-version-aliases", name="classifier", version="v1"), {"alias": "production"}, format="json"
    )

    assert (added.status_code, moved.status_code) == (201, 201), (added.content, moved.content)
    assert added.json()["aliases"] == ["production", "staging"]
    assert moved.json()["aliases"] == ["latest", "production"]
    fired = Event.objects.order_by("created_at")[events:]
    assert [(e.type, e.alias, e.model_version.version) for e in fired] == [
        ("ADD_ARTIFACT_ALIAS", "staging", "v0"),
        ("ADD_ARTIFACT_ALIAS", "production", "v1"),
    ]


@pytest.mark.parametrize(("name", "version"), [("classifier", "v9"), ("classifier", "no-such-alias"), ("nope", "v0")])
def test_alias_add_on_an_unknown_version_is_404(client, name, version):
    before = f.registry_snapshot()

    response = client.post(
        url("model-version-aliases", name=name, version=version), {"alias": "staging"}, format="json"
    )

    assert_refused(response, 404, None, before)


def test_alias_delete_of_an_unknown_alias_is_404(client):
    before = f.registry_snapshot()

    response = client.delete(url("alias", name="classifier", alias="staging"))

    assert_refused(response, 404, "alias", before)


def test_alias_delete_of_latest_is_refused(client):
    before = f.registry_snapshot()

    response = client.delete(url("alias", name="classifier", alias="latest"))

    assert_refused(response, 400, "alias", before)


@pytest.mark.parametrize("version", ["v9", "staging", "0", "v"])
def test_unlinking_an_unknown_version_is_404(client, version):
    before = f.registry_snapshot()

    response = client.delete(url("model-version", name="classifier", version=version))

    assert_refused(response, 404, None, before)


@pytest.mark.parametrize("event_id", ["not-a-uuid", "00000000-0000-0000-0000-000000000000"])
def test_an_unknown_event_is_404(client, event_id):
    response = client.get(url("event", event_id=event_id))

    assert_refused(response, 404, None, f.registry_snapshot())


# --- Happy paths the refusals are measured against ------------------------------------------------------


def test_link_with_aliases_answers_with_every_alias_including_latest(client, acme):
    response = client.post(
        link_url("detector"), {"artifact": "acme/training/classifier:v1", "aliases": ["production"]}, format="json"
    )

    assert response.status_code == 201, response.content
    body = response.json()
    assert body["version"] == "v0"
    assert body["aliases"] == ["latest", "production"]
    assert body["artifact"] == "acme/training/classifier:v1"
    assert body["linked_by"] == acme.username


def test_events_after_a_link_and_an_alias_carry_their_variables(client, acme):
    linked = client.post(link_url("detector"), {"artifact": "acme/training/classifier:v1"}, format="json")
    aliased = client.post(
        url("model-version-aliases", name="detector", version="v0"), {"alias": "production"}, format="json"
    )
    assert (linked.status_code, aliased.status_code) == (201, 201), (linked.content, aliased.content)

    response = client.get(url("events") + "?registered_model=detector")

    assert response.status_code == 200
    events = {event["type"]: event for event in response.json()["results"]}
    assert set(events) == {"LINK_ARTIFACT", "ADD_ARTIFACT_ALIAS"}
    link, alias = events["LINK_ARTIFACT"], events["ADD_ARTIFACT_ALIAS"]
    assert link["variables"]["artifact_version_string"] == "acme/model-registry/detector:v0"
    assert alias["variables"]["artifact_version_string"] == "acme/model-registry/detector:production"
    assert alias["alias"] == alias["variables"]["alias"] == "production"
    for event in (link, alias):
        assert event["registered_model"] == "detector"
        assert event["version"] == "v0"
        assert event["author"] == acme.username
        assert event["variables"]["event_author"] == acme.username
        assert event["variables"]["entity_name"] == "acme"
        assert event["variables"]["project_name"] == "model-registry"
        assert event["variables"]["artifact_collection_name"] == "detector"
        assert event["variables"]["artifact_version"].startswith("registry-artifact://_id/")
    only_links = client.get(url("events") + "?registered_model=detector&type=LINK_ARTIFACT").json()["results"]
    assert [event["id"] for event in only_links] == [link["id"]]


@pytest.mark.parametrize("query", ["?limit=99999999999999999999", "?offset=99999999999999999999", "?limit=-1"])
def test_listing_bounds_out_of_range_are_not_a_server_error(query):
    admin = f.make_user()
    team = f.make_team(admin=admin)
    response = f.api_client(admin).get(f"/api/v1/teams/{team.name}/registered-models/{query}")
    assert response.status_code == 200
    assert len(response.json()["results"]) <= 1000


def test_nul_in_launch_json_is_refused_with_the_field():
    admin = f.make_user()
    team = f.make_team(admin=admin)
    response = f.api_client(admin).post(
        f"/api/v1/teams/{team.name}/launch/queues/",
        {"name": "q", "resource_config": {"image": "a\u0000b"}},
        format="json",
    )
    assert response.status_code == 400
    assert "resource_config" in response.json()["errors"]
