"""Who may do what through the REST API: team scoping, roles, tokens, and the walls between teams.

Every ``teams/{team}/...`` route of the registry API is listed once in ROUTES with each method it serves and a valid
body; the role tests run over the whole table, and a guard test fails when a route is added without an entry.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass

import pytest
from django.conf import settings
from django.urls import reverse

from core.roles import Role
from registry import blobs, manifests, services
from registry.api import urls as registry_urls
from registry.api.views import CAUSED_BY_HEADER
from registry.choices import REGISTRY_PROJECT
from registry.models import ApiToken, Event, Membership, ModelVersion, Project, Team
from tests import factories as f

pytestmark = pytest.mark.django_db

SUCCESS = {"GET": 200, "POST": 201, "PUT": 201, "PATCH": 200, "DELETE": 204}


# --- The route table ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Route:
    method: str
    name: str
    kwargs: dict
    body: dict | bytes | None = None  # bytes: a file's content, sent as application/octet-stream
    role: str = Role.VIEWER  # the least role that may do it
    success: int | None = None  # when not the method's usual answer
    writes: bool | None = None  # when a POST only reads (asking which digests are missing)

    def __str__(self) -> str:
        return f"{self.method} {self.name}"

    @property
    def is_write(self) -> bool:
        return self.writes if self.writes is not None else self.method != "GET"

    @property
    def expected(self) -> int:
        return self.success or SUCCESS[self.method]


TEAM = {"team": "{team}"}
WEIGHTS = b"\x00weights" * 100  # v1's file
EXTRA = b"extra bytes"  # v2's file: stored, so v2 can be committed
NEW = b"bytes no version has yet"  # v3's file, not stored


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


ARTIFACTS = {**TEAM, "project": "training", "collection": "classifier"}
MODEL = {**TEAM, "name": "classifier"}
V0 = {**MODEL, "version": "v0"}

ROUTES = [
    Route("GET", "team", TEAM),
    Route("GET", "members", TEAM),
    Route("POST", "members", TEAM, {"username": "{newcomer}", "role": "viewer"}, Role.ADMIN),
    Route("PATCH", "member", {**TEAM, "username": "{target}"}, {"role": "viewer"}, Role.ADMIN),
    Route("DELETE", "member", {**TEAM, "username": "{target}"}, None, Role.ADMIN),
    Route("GET", "projects", TEAM),
    Route("POST", "projects", TEAM, {"name": "evaluation"}, Role.MEMBER),
    Route("GET", "artifact-versions", ARTIFACTS),
    Route("POST", "artifact-versions", ARTIFACTS, {"type": "model", "metadata": {"accuracy": 0.93}}, Role.MEMBER),
    Route("GET", "artifact-version", {**TEAM, "public_id": "{artifact_id}"}),
    Route("GET", "resolve", TEAM),  # ?reference= is added by World.url
    Route("GET", "artifact-version-detail", {**ARTIFACTS, "version": "v1"}),
    Route("DELETE", "artifact-version-detail", {**ARTIFACTS, "version": "v1"}, None, Role.ADMIN),
    Route("GET", "artifact-version-file", {**ARTIFACTS, "version": "v1", "path": "model.bin"}),
    Route("PUT", "artifact-version-file", {**ARTIFACTS, "version": "v3", "path": "new.bin"}, NEW, Role.MEMBER, 201),
    Route("POST", "artifact-version-commit", {**ARTIFACTS, "version": "v2"}, {}, Role.MEMBER, 200),
    Route("POST", "artifact-version-tags", {**ARTIFACTS, "version": "v1"}, {"tag": "reviewed"}, Role.MEMBER),
    Route("DELETE", "artifact-version-tag", {**ARTIFACTS, "version": "v1", "tag": "baseline"}, None, Role.MEMBER),
    Route("POST", "blobs-missing", TEAM, {"sha256": [sha(NEW)]}, Role.MEMBER, 200, writes=False),
    Route("PUT", "blob", {**TEAM, "sha256": sha(NEW)}, NEW, Role.MEMBER, 201),
    Route("GET", "registered-models", TEAM),
    Route("POST", "registered-models", TEAM, {"name": "detector"}, Role.MEMBER),
    Route("GET", "registered-model", MODEL),
    Route("PATCH", "registered-model", MODEL, {"description": "Ships to production."}, Role.MEMBER),
    Route("DELETE", "registered-model", MODEL, None, Role.ADMIN),
    Route("GET", "model-versions", MODEL),
    Route(
        "POST",
        "model-versions",
        MODEL,
        {"artifact": "{team}/training/classifier:v1", "aliases": ["staging"]},
        Role.MEMBER,
    ),
    Route("GET", "model-version", V0),
    Route("DELETE", "model-version", V0, None, Role.MEMBER),
    Route("POST", "model-version-aliases", V0, {"alias": "staging"}, Role.MEMBER),
    Route("DELETE", "alias", {**MODEL, "alias": "production"}, None, Role.MEMBER),
    Route("GET", "protected-aliases", TEAM),
    Route("POST", "protected-aliases", TEAM, {"name": "release"}, Role.ADMIN),
    Route("DELETE", "protected-alias", {**TEAM, "name": "guarded"}, None, Role.ADMIN),
    Route("GET", "events", TEAM),
    Route("GET", "event", {**TEAM, "event_id": "{event_id}"}),
]
WRITES = [route for route in ROUTES if route.is_write]
NOT_TEAM_SCOPED = [
    Route("GET", "teams", {}),
    Route("POST", "teams", {}, {"name": "initech"}),
    Route("POST", "users", {}, {"username": "newbie", "password": f.PASSWORD, "email": "newbie@example.com"}),
]


@dataclass
class World:
    """Team acme with one user per role, a linked model version and an unlinked artifact; team globex apart."""

    team: Team
    other_team: Team
    admin: object
    member: object
    viewer: object
    target: object  # a plain member the admin routes act on
    newcomer: object  # a user in no team yet
    outsider: object  # admin of globex only
    artifact_id: str
    event_id: str

    def fill(self, value):
        if isinstance(value, str):
            return value.format(
                team=self.team.name,
                target=self.target.username,
                newcomer=self.newcomer.username,
                artifact_id=self.artifact_id,
                event_id=self.event_id,
            )
        if isinstance(value, dict):
            return {key: self.fill(item) for key, item in value.items()}
        if isinstance(value, list):
            return [self.fill(item) for item in value]
        return value

    def url(self, route: Route) -> str:
        url = reverse(route.name, kwargs=self.fill(route.kwargs))
        if route.name == "resolve":
            url += f"?reference={self.team.name}/model-registry/classifier:production"
        return url


@pytest.fixture
def world() -> World:
    admin = f.make_user()
    team = f.make_team("acme", admin=admin)
    member = f.add_member(team, role=Role.MEMBER)
    viewer = f.add_member(team, role=Role.VIEWER)
    target = f.add_member(team, role=Role.MEMBER)
    other_team = f.make_team("globex")
    outsider = f.add_member(other_team, role=Role.ADMIN)
    classifier = f.make_registered_model(team, "classifier")
    linked = f.link(classifier, user=member, aliases=["production"])  # training/classifier:v0 as v0
    # training/classifier v1 (committed, one file, not linked), v2 (pending, its file stored), v3 (pending)
    training = f.make_project(team, "training")
    for data in (WEIGHTS, EXTRA):
        blobs.blob_receive(team=team, sha256=sha(data), size=len(data), stream=io.BytesIO(data))
    for path, data in (("model.bin", WEIGHTS), ("extra.bin", EXTRA), ("new.bin", NEW)):
        version = manifests.artifact_version_log(
            project=training, collection_name="classifier", type="model", user=member,
            files=[{"path": path, "size": len(data), "sha256": sha(data)}],
        )  # fmt: skip
        if path == "model.bin":
            manifests.artifact_version_commit(artifact_version=version)
            services.artifact_tag_add(artifact_version=version, name="baseline", user=member)
    services.protected_alias_add(team=team, name="guarded", user=admin)
    return World(
        team=team,
        other_team=other_team,
        admin=admin,
        member=member,
        viewer=viewer,
        target=target,
        newcomer=f.make_user(),
        outsider=outsider,
        artifact_id=str(linked.artifact_version.public_id),
        event_id=str(Event.objects.get(team=team, type="LINK_ARTIFACT").pk),
    )


def call(client, world: World, route: Route):
    url = world.url(route)
    method = getattr(client, route.method.lower())
    if route.body is None:
        return method(url)
    if isinstance(route.body, bytes):
        return method(url, route.body, content_type="application/octet-stream", CONTENT_LENGTH=str(len(route.body)))
    return method(url, world.fill(route.body), format="json")


def assert_error(response, status: int, code: str | None = None) -> dict:
    assert response.status_code == status, response.content
    body = response.json()
    assert set(body) == {"detail", "code", "errors"}, body
    if code is not None:
        assert body["code"] == code, body
    return body


def test_route_table_covers_every_team_route_and_method():
    served = set()
    for pattern in registry_urls.urlpatterns:
        if str(pattern.pattern).startswith(registry_urls.team):
            view = pattern.callback.view_class
            served |= {(m.upper(), pattern.name) for m in ("get", "post", "put", "patch", "delete") if hasattr(view, m)}

    assert served == {(route.method, route.name) for route in ROUTES}


# --- Roles over the whole table -------------------------------------------------------------------------


@pytest.mark.parametrize("route", ROUTES, ids=str)
def test_outsider_gets_404_on_every_team_route_and_nothing_changes(world, route):
    client = f.api_client(world.outsider)
    before = f.registry_snapshot()

    response = call(client, world, route)

    assert_error(response, 404, "not_found")
    assert f.registry_snapshot() == before


@pytest.mark.parametrize("route", ROUTES, ids=str)
def test_outsider_cannot_tell_an_existing_team_from_a_missing_one(world, route):
    client = f.api_client(world.outsider)
    missing = World(**{**world.__dict__, "team": Team(name="no-such-team")})

    existing_body = call(client, world, route).json()
    missing_body = call(client, missing, route).json()

    assert existing_body["code"] == missing_body["code"] == "not_found"
    assert existing_body["detail"].replace("acme", "X") == missing_body["detail"].replace("no-such-team", "X")


@pytest.mark.parametrize("route", ROUTES, ids=str)
def test_viewer_reads_every_route_and_is_refused_the_rest(world, route):
    client = f.api_client(world.viewer)
    before = f.registry_snapshot()

    response = call(client, world, route)

    if route.role != Role.VIEWER:
        assert_error(response, 403, "permission_denied")
        assert f.registry_snapshot() == before
    else:
        assert response.status_code == 200, response.content


@pytest.mark.parametrize("route", ROUTES, ids=str)
def test_member_is_refused_admin_only_writes_and_may_do_the_rest(world, route):
    client = f.api_client(world.member)
    before = f.registry_snapshot()

    response = call(client, world, route)

    if route.role == Role.ADMIN:
        assert_error(response, 403, "permission_denied")
        assert f.registry_snapshot() == before
    else:
        assert response.status_code == route.expected, response.content
        assert (f.registry_snapshot() != before) == route.is_write


@pytest.mark.parametrize("actor", ["admin", "superuser"])
@pytest.mark.parametrize("route", ROUTES, ids=str)
def test_admin_and_superuser_succeed_on_every_route(world, route, actor):
    user = world.admin if actor == "admin" else f.make_user(superuser=True)  # the superuser is in no team
    client = f.api_client(user)
    before = f.registry_snapshot()

    response = call(client, world, route)

    assert response.status_code == route.expected, response.content
    assert (f.registry_snapshot() != before) == route.is_write


@pytest.mark.parametrize("route", ROUTES + NOT_TEAM_SCOPED, ids=str)
def test_anonymous_request_gets_401_everywhere(world, route):
    client = f.api_client()
    before = f.registry_snapshot()

    response = call(client, world, route)

    assert_error(response, 401, "not_authenticated")
    assert response.headers["WWW-Authenticate"].startswith("Token")
    assert f.registry_snapshot() == before


def test_a_bad_token_gets_401_not_anonymous_access(world):
    client = f.api_client()
    client.credentials(HTTP_AUTHORIZATION="Token rk_not-a-real-token")

    response = client.get(reverse("teams"))

    assert_error(response, 401, "authentication_failed")


# --- Tokens ---------------------------------------------------------------------------------------------


def test_token_exchange_with_good_credentials_returns_a_working_token():
    user = f.make_user()
    team = f.make_team(admin=user)

    response = f.api_client().post(
        reverse("auth-token"), {"username": user.username, "password": f.PASSWORD}, format="json"
    )

    assert response.status_code == 201, response.content
    client = f.api_client()
    client.credentials(HTTP_AUTHORIZATION=f"Token {response.json()['token']}")
    listed = client.get(reverse("teams"))
    assert listed.status_code == 200
    assert [t["name"] for t in listed.json()["results"]] == [team.name]


def test_token_is_stored_only_as_its_sha256():
    user = f.make_user()

    raw = (
        f.api_client()
        .post(reverse("auth-token"), {"username": user.username, "password": f.PASSWORD}, format="json")
        .json()["token"]
    )

    token = ApiToken.objects.get(user=user)
    assert token.key_hash == hashlib.sha256(raw.encode()).hexdigest()
    for row in ApiToken.objects.values():
        assert all(raw not in str(value) for value in row.values()), row


def test_bearer_keyword_is_accepted_too():
    user = f.make_user()
    raw = (
        f.api_client()
        .post(reverse("auth-token"), {"username": user.username, "password": f.PASSWORD}, format="json")
        .json()["token"]
    )
    client = f.api_client()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")

    assert client.get(reverse("teams")).status_code == 200


def test_wrong_password_gets_400_and_no_token():
    user = f.make_user()

    response = f.api_client().post(
        reverse("auth-token"), {"username": user.username, "password": "not-the-password"}, format="json"
    )

    assert_error(response, 400, "authentication_failed")
    assert not ApiToken.objects.exists()


def test_unknown_username_answers_exactly_like_a_wrong_password():
    user = f.make_user()
    client = f.api_client()

    wrong_password = client.post(reverse("auth-token"), {"username": user.username, "password": "nope"}, format="json")
    unknown_user = client.post(reverse("auth-token"), {"username": "nobody", "password": "nope"}, format="json")

    assert wrong_password.status_code == unknown_user.status_code == 400
    assert wrong_password.json() == unknown_user.json()
    assert not ApiToken.objects.exists()


def test_password_guessing_is_throttled_with_a_json_429():
    user = f.make_user()
    allowed = int(settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]["login"].split("/")[0])
    client = f.api_client()
    guess = {"username": user.username, "password": "guess"}

    answers = [client.post(reverse("auth-token"), guess, format="json").status_code for _ in range(allowed)]
    throttled = client.post(reverse("auth-token"), {"username": user.username, "password": f.PASSWORD}, format="json")

    assert set(answers) == {400}
    assert_error(throttled, 429, "throttled")
    assert not ApiToken.objects.exists()


def test_inactive_user_gets_no_token_and_their_existing_token_is_rejected():
    user = f.make_user()
    team = f.make_team(admin=user)
    client = f.api_client(user)
    assert client.get(reverse("team", kwargs={"team": team.name})).status_code == 200

    user.is_active = False
    user.save(update_fields=["is_active"])

    assert_error(client.get(reverse("team", kwargs={"team": team.name})), 401, "authentication_failed")
    refused = f.api_client().post(
        reverse("auth-token"), {"username": user.username, "password": f.PASSWORD}, format="json"
    )
    assert_error(refused, 400, "authentication_failed")
    assert ApiToken.objects.filter(user=user).count() == 1  # only the one api_client made


def test_deleted_token_is_rejected():
    user = f.make_user()
    client = f.api_client(user)
    ApiToken.objects.filter(user=user).delete()

    assert_error(client.get(reverse("teams")), 401, "authentication_failed")


# --- Users and teams ------------------------------------------------------------------------------------


def test_only_a_superuser_creates_users():
    team_admin = f.make_user()
    f.make_team(admin=team_admin)
    body = {"username": "newbie", "password": f.PASSWORD, "email": "newbie@example.com"}
    before = f.registry_snapshot()

    refused = f.api_client(team_admin).post(reverse("users"), body, format="json")

    assert_error(refused, 403, "permission_denied")
    assert f.registry_snapshot() == before

    created = f.api_client(f.make_user(superuser=True)).post(reverse("users"), body, format="json")

    assert created.status_code == 201, created.content
    assert created.json()["username"] == "newbie"
    assert "password" not in created.json()
    login = f.api_client().post(reverse("auth-token"), {"username": "newbie", "password": f.PASSWORD}, format="json")
    assert login.status_code == 201


def test_only_a_superuser_creates_teams():
    team_admin = f.make_user()
    f.make_team(admin=team_admin)
    before = f.registry_snapshot()

    response = f.api_client(team_admin).post(reverse("teams"), {"name": "initech"}, format="json")

    assert_error(response, 403, "permission_denied")
    assert f.registry_snapshot() == before


def test_superuser_creates_a_team_with_themselves_as_admin_and_a_registry_project():
    root = f.make_user(superuser=True)

    response = f.api_client(root).post(reverse("teams"), {"name": "initech"}, format="json")

    assert response.status_code == 201, response.content
    assert response.json()["name"] == "initech"
    team = Team.objects.get(name="initech")
    assert Membership.objects.get(team=team, user=root).role == Role.ADMIN
    assert Project.objects.filter(team=team, name=REGISTRY_PROJECT).exists()


def test_team_list_shows_only_the_users_teams(world):
    f.make_team("initech")

    listed = f.api_client(world.viewer).get(reverse("teams"))

    assert listed.status_code == 200
    assert [team["name"] for team in listed.json()["results"]] == ["acme"]


def test_team_detail_tells_the_caller_their_role(world):
    response = f.api_client(world.viewer).get(reverse("team", kwargs={"team": "acme"}))

    assert response.status_code == 200
    assert response.json()["role"] == Role.VIEWER


# --- Walls between teams --------------------------------------------------------------------------------


@pytest.fixture
def both_teams(world):
    """The acme admin is also admin of globex, which has objects of its own."""
    f.add_member(world.other_team, world.admin, role=Role.ADMIN)
    globex_model = f.make_registered_model(world.other_team, "globex-only")
    globex_version = f.link(globex_model, user=world.outsider, aliases=["production"])
    globex_event = Event.objects.get(team=world.other_team, type="LINK_ARTIFACT")
    return globex_version, globex_event


@pytest.mark.parametrize("method", ["get", "patch", "delete"])
def test_registered_model_of_another_team_is_not_found_under_this_team(world, both_teams, method):
    client = f.api_client(world.admin)
    url = reverse("registered-model", kwargs={"team": "acme", "name": "globex-only"})
    before = f.registry_snapshot()

    response = getattr(client, method)(url, {"description": "hijacked"}, format="json")

    assert_error(response, 404, "not_found")
    assert f.registry_snapshot() == before


def test_objects_of_another_team_are_not_found_under_this_teams_urls(world, both_teams):
    globex_version, globex_event = both_teams
    client = f.api_client(world.admin)
    urls = [
        reverse("artifact-version", kwargs={"team": "acme", "public_id": globex_version.artifact_version.public_id}),
        reverse("event", kwargs={"team": "acme", "event_id": globex_event.pk}),
        reverse("model-versions", kwargs={"team": "acme", "name": "globex-only"}),
        reverse("model-version", kwargs={"team": "acme", "name": "globex-only", "version": "v0"}),
    ]

    for url in urls:
        assert_error(client.get(url), 404, "not_found")


def test_linking_an_artifact_of_another_team_is_refused_on_the_artifact_field(world, both_teams):
    client = f.api_client(world.admin)
    url = reverse("model-versions", kwargs={"team": "acme", "name": "classifier"})
    before = f.registry_snapshot()

    response = client.post(url, {"artifact": "globex/training/classifier:v0"}, format="json")

    body = assert_error(response, 400)
    assert "artifact" in body["errors"]
    assert f.registry_snapshot() == before


@pytest.mark.parametrize("route", ["link", "alias"])
def test_caused_by_header_naming_an_event_of_another_team_is_refused(world, both_teams, route):
    _, globex_event = both_teams
    client = f.api_client(world.admin)
    if route == "link":
        url = reverse("model-versions", kwargs={"team": "acme", "name": "classifier"})
        body = {"artifact": "acme/training/classifier:v1"}
    else:
        url = reverse("model-version-aliases", kwargs={"team": "acme", "name": "classifier", "version": "v0"})
        body = {"alias": "staging"}
    before = f.registry_snapshot()

    response = client.post(url, body, format="json", headers={CAUSED_BY_HEADER: str(globex_event.pk)})

    assert CAUSED_BY_HEADER in assert_error(response, 400)["errors"]
    assert f.registry_snapshot() == before


def test_caused_by_header_naming_an_event_of_this_team_chains_the_new_event(world):
    cause = Event.objects.get(pk=world.event_id)
    url = reverse("model-versions", kwargs={"team": "acme", "name": "classifier"})

    response = f.api_client(world.member).post(
        url, {"artifact": "acme/training/classifier:v1"}, format="json", headers={CAUSED_BY_HEADER: str(cause.pk)}
    )

    assert response.status_code == 201, response.content
    event = Event.objects.get(model_version__index=1, type="LINK_ARTIFACT")
    assert event.caused_by_id == cause.pk
    assert event.depth == cause.depth + 1


# --- Members --------------------------------------------------------------------------------------------


def member_url(world: World, user) -> str:
    return reverse("member", kwargs={"team": "acme", "username": user.username})


def test_the_last_admin_cannot_be_demoted(world):
    client = f.api_client(world.admin)
    before = f.registry_snapshot()

    patched = client.patch(member_url(world, world.admin), {"role": Role.MEMBER}, format="json")
    posted = client.post(
        reverse("members", kwargs={"team": "acme"}), {"username": world.admin.username, "role": "viewer"}, format="json"
    )

    assert "role" in assert_error(patched, 409, "conflict")["errors"]
    assert "username" in assert_error(posted, 409, "conflict")["errors"]  # an add never changes a role
    assert f.registry_snapshot() == before


def test_the_last_admin_cannot_be_removed(world):
    before = f.registry_snapshot()

    response = f.api_client(world.admin).delete(member_url(world, world.admin))

    assert_error(response, 409, "conflict")
    assert f.registry_snapshot() == before


def test_role_changes_take_effect(world):
    client = f.api_client(world.admin)

    promoted = client.patch(member_url(world, world.target), {"role": Role.ADMIN}, format="json")
    demoted = client.patch(member_url(world, world.admin), {"role": Role.VIEWER}, format="json")

    assert promoted.status_code == 200, promoted.content
    assert promoted.json()["role"] == Role.ADMIN
    assert demoted.status_code == 200, demoted.content
    roles = {
        m["username"]: m["role"] for m in client.get(reverse("members", kwargs={"team": "acme"})).json()["results"]
    }
    assert roles[world.target.username] == Role.ADMIN
    assert roles[world.admin.username] == Role.VIEWER
    # The demoted admin now reads but no longer manages members.
    again = client.patch(member_url(world, world.member), {"role": Role.VIEWER}, format="json")
    assert_error(again, 403, "permission_denied")


def test_adding_a_member_gives_access_and_removing_takes_it_away(world):
    admin = f.api_client(world.admin)
    newcomer = f.api_client(world.newcomer)
    team_url = reverse("team", kwargs={"team": "acme"})
    assert_error(newcomer.get(team_url), 404)

    added = admin.post(
        reverse("members", kwargs={"team": "acme"}),
        {"username": world.newcomer.username, "role": "member"},
        format="json",
    )
    assert added.status_code == 201, added.content
    assert newcomer.get(team_url).json()["role"] == Role.MEMBER

    removed = admin.delete(member_url(world, world.newcomer))
    assert removed.status_code == 204
    assert_error(newcomer.get(team_url), 404)


def test_a_removed_member_cannot_write_any_more(world):
    f.api_client(world.admin).delete(member_url(world, world.member))
    before = ModelVersion.objects.count()

    response = f.api_client(world.member).post(
        reverse("model-versions", kwargs={"team": "acme", "name": "classifier"}),
        {"artifact": "acme/training/classifier:v1"},
        format="json",
    )

    assert_error(response, 404)
    assert ModelVersion.objects.count() == before
