"""Everything under /api/ answers JSON errors in one shape ``{"detail", "code", "errors"}``: unknown paths, wrong
methods, bodies of the wrong type or not JSON, unacceptable Accept headers, requests Django itself refuses (a bad
Host header, a denied user agent) and server errors. Paths outside /api/ keep Django's own pages, and / leads to
the admin.

This module is also the URL configuration of the server-error tests: the project's routes plus two that fail.
"""

from __future__ import annotations

import json
import re
import uuid

import pytest
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, path, resolve
from rest_framework.views import APIView

from automations import services as automations
from automations.models import Automation, Webhook
from config import urls as project_urls
from core.api.exceptions import api_not_found
from launch import services as launch
from registry.models import Alias, Event, ModelVersion, RegisteredModel, Team
from secrets_vault import services as vault
from secrets_vault.models import Secret
from tests import factories as f

pytestmark = pytest.mark.django_db

INTERNAL_DETAIL = "internal-detail-7f3a9c: never shown to a client"


class _FailingAPIView(APIView):
    """An API view that fails the way a bug would: an exception DRF does not know."""

    authentication_classes: list = []
    permission_classes: list = []

    def get(self, request):
        raise RuntimeError(INTERNAL_DETAIL)


def _failing_page(request):
    raise RuntimeError(INTERNAL_DETAIL)


urlpatterns = [
    path("api/v1/failing/", _FailingAPIView.as_view()),
    path("failing/", _failing_page),
    *project_urls.urlpatterns,
]
handler400, handler403, handler500 = project_urls.handler400, project_urls.handler403, project_urls.handler500


# --- World and helpers ----------------------------------------------------------------------------------


@pytest.fixture
def world(settings):
    """Team acme with one of everything an /api/ route can name; returns its admin."""
    settings.WEBHOOK_ALLOWED_NETWORKS = ["127.0.0.1/32"]
    admin = f.make_user("acme-admin")
    team = f.make_team("acme", admin=admin)
    f.add_member(team, f.make_user("acme-member"))
    f.link(f.make_registered_model(team, "classifier"), user=admin, aliases=["production"])
    vault.secret_create(team=team, name="TOKEN", value="token-value", user=admin)
    webhook = automations.webhook_create(team=team, name="deploy", url="http://127.0.0.1:9/", user=admin)
    automations.automation_create(
        team=team, user=admin, name="notify", event_type="LINK_ARTIFACT", action_type="WEBHOOK",
        webhook=webhook.pk, payload={"v": "${artifact_version_string}"},
    )  # fmt: skip
    f.make_project(team, "training")
    launch.run_queue_create(team=team, name="gpu")
    launch.job_create(team=team, name="train", project="training")
    return admin


@pytest.fixture
def api(world):
    client = f.api_client(world)
    client.raise_request_exception = False
    return client


def assert_json_error(response, status: int, code: str | None = None) -> dict:
    assert response.status_code == status, (response.status_code, response.content[:300])
    assert response["Content-Type"] == "application/json", response["Content-Type"]
    body = json.loads(response.content)
    assert set(body) == {"detail", "code", "errors"}, body
    assert body["detail"] and isinstance(body["errors"], dict), body
    if code is not None:
        assert body["code"] == code, body
    return body


def counts() -> dict[str, int]:
    """Rows a refused write could have left behind."""
    models = (Team, RegisteredModel, ModelVersion, Alias, Event, Secret, Webhook, Automation)
    return {model.__name__: model.objects.count() for model in models}


# --- Unknown paths --------------------------------------------------------------------------------------

UNKNOWN_PATHS = [
    "/api/",
    "/api",
    "/api/nothing/",
    "/api/v2/teams/",
    "/api/v1/teams/acme/nothing/",
    "/api/v1/teams/acme/registered-models/classifier/versions/v0/nothing/",
    "/api/v1/teams/acme/registered-models/classifier/versions/v0/aliases/production/extra/",
    "/api/v1/teams/acme/launch/nothing/",
]


@pytest.mark.parametrize("method", ["get", "post", "put", "patch", "delete", "options"])
@pytest.mark.parametrize("path", UNKNOWN_PATHS)
def test_an_unknown_api_path_is_a_json_404_for_every_method(api, path, method):
    before = counts()

    response = getattr(api, method)(path, {"name": "x"}, format="json")

    body = assert_json_error(response, 404, "not_found")
    assert path in body["detail"] and "/api/docs/" in body["detail"]
    assert counts() == before


def test_an_unknown_api_path_is_a_json_404_without_credentials_or_a_csrf_token(world):
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(world)  # a session cookie and no CSRF token: Django's CSRF check would answer HTML 403

    for client in (Client(), browser):
        assert_json_error(client.get("/api/nothing/"), 404, "not_found")
        assert_json_error(client.post("/api/nothing/", "{}", content_type="application/json"), 404, "not_found")


def test_head_of_an_unknown_api_path_is_a_404_declared_as_json(api):
    response = api.head("/api/nothing/")

    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"


def test_a_get_without_the_trailing_slash_is_redirected_to_the_route_with_its_query(api):
    response = api.get("/api/v1/teams/acme/events", {"type": "LINK_ARTIFACT"})

    assert response.status_code == 301
    assert response["Location"] == "/api/v1/teams/acme/events/?type=LINK_ARTIFACT"
    followed = api.get(response["Location"])
    assert followed.status_code == 200 and followed.json()["count"] == 1


@pytest.mark.parametrize("method", ["post", "put", "patch", "delete"])
def test_a_write_without_the_trailing_slash_is_a_json_404_naming_the_right_path(api, method):
    before = counts()

    response = getattr(api, method)("/api/v1/teams/acme/registered-models", {"name": "detector"}, format="json")

    body = assert_json_error(response, 404, "not_found")
    assert "/api/v1/teams/acme/registered-models/" in body["detail"]
    assert counts() == before


# --- Wrong methods --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("put", "/api/v1/teams/", "GET, POST"),
        ("delete", "/api/v1/teams/acme/events/", "GET"),
        ("post", "/api/v1/teams/acme/registered-models/classifier/aliases/production/", "DELETE"),
        ("patch", "/api/v1/teams/acme/secrets/", "GET, POST"),
        ("put", "/api/v1/teams/acme/automations/", "GET, POST"),
        ("delete", "/api/v1/teams/acme/launch/queues/", "GET, POST"),
        ("post", "/api/v1/automation-presets/", "GET"),
        ("delete", "/api/schema/", "GET"),
        ("post", "/api/docs/", "GET"),
        ("options", "/api/docs/", "GET"),
    ],
)
def test_a_method_a_route_does_not_take_is_a_json_405_with_allow(api, method, path, allowed):
    before = counts()

    response = getattr(api, method)(path, {"name": "x"}, format="json")

    assert_json_error(response, 405, "method_not_allowed")
    assert set(response["Allow"].split(", ")) >= set(allowed.split(", ")), response["Allow"]
    assert counts() == before


# --- Bodies that are not JSON, or not the JSON a route takes ---------------------------------------------

# One write route of each app.
WRITE_ROUTES = [
    ("post", "/api/v1/teams/acme/registered-models/"),
    ("patch", "/api/v1/teams/acme/registered-models/classifier/"),
    ("post", "/api/v1/teams/acme/registered-models/classifier/versions/v0/aliases/"),
    ("post", "/api/v1/teams/acme/secrets/"),
    ("put", "/api/v1/teams/acme/secrets/TOKEN/"),
    ("post", "/api/v1/teams/acme/webhooks/"),
    ("post", "/api/v1/teams/acme/automations/"),
    ("post", "/api/v1/teams/acme/launch/queues/"),
    ("post", "/api/v1/auth/token/"),
]
CONTENT_TYPES = [
    "text/plain",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=xyz",
    "application/xml",
    "application/octet-stream",
]


@pytest.mark.parametrize("content_type", CONTENT_TYPES)
@pytest.mark.parametrize(("method", "path"), WRITE_ROUTES)
def test_a_body_of_another_media_type_is_a_json_415(api, method, path, content_type):
    before = counts()

    response = getattr(api, method)(path, "name=x", content_type=content_type)

    body = assert_json_error(response, 415, "unsupported_media_type")
    assert content_type in body["detail"]
    assert counts() == before


MALFORMED = [
    ("truncated", b'{"name": "x",'),
    ("single-quotes", b"{'name': 'x'}"),
    ("trailing-comma", b'{"name": "x",}'),
    ("not-utf8", b'{"name": "\xff\xfe"}'),
    ("two-documents", b'{"name": "x"} {"name": "y"}'),
]


@pytest.mark.parametrize("raw", [raw for _, raw in MALFORMED], ids=[name for name, _ in MALFORMED])
@pytest.mark.parametrize(("method", "path"), WRITE_ROUTES)
def test_malformed_json_is_a_json_400_parse_error(api, method, path, raw):
    before = counts()

    response = getattr(api, method)(path, raw, content_type="application/json")

    body = assert_json_error(response, 400, "parse_error")
    assert body["detail"].startswith("JSON parse error")
    assert counts() == before


@pytest.mark.parametrize("document", [[{"name": "x"}], "x", 3, None, True], ids=repr)
@pytest.mark.parametrize(("method", "path"), WRITE_ROUTES)
def test_json_that_is_not_an_object_is_a_json_400(api, method, path, document):
    before = counts()

    response = getattr(api, method)(path, json.dumps(document), content_type="application/json")

    assert_json_error(response, 400, "invalid")
    assert counts() == before


@pytest.mark.parametrize("path", ["/api/v1/teams/", "/api/v1/teams/acme/events/", "/api/schema/"])
def test_an_accept_header_no_renderer_meets_is_a_json_406(api, path):
    response = api.get(path, HTTP_ACCEPT="application/xml")

    assert_json_error(response, 406, "not_acceptable")


# --- What Django refuses before any API view runs -------------------------------------------------------


def test_a_host_header_not_allowed_is_a_json_400_under_api_and_django_page_elsewhere(world):
    client = Client(raise_request_exception=False)

    api = client.get("/api/v1/teams/", HTTP_HOST="evil.example")
    page = client.get("/admin/login/", HTTP_HOST="evil.example")

    body = assert_json_error(api, 400, "bad_request")
    assert "evil" not in body["detail"]
    assert page.status_code == 400 and page["Content-Type"].startswith("text/html")


def test_a_denied_user_agent_is_a_json_403_under_api_and_django_page_elsewhere(world, settings):
    settings.DISALLOWED_USER_AGENTS = [re.compile(r"^BadBot")]
    client = Client(raise_request_exception=False, HTTP_USER_AGENT="BadBot/1.0")

    api = client.get("/api/v1/teams/")
    page = client.get("/admin/login/")

    assert_json_error(api, 403, "permission_denied")
    assert page.status_code == 403 and page["Content-Type"].startswith("text/html")


@pytest.mark.urls(__name__)
def test_a_server_error_is_a_json_500_that_shows_nothing_of_it_and_is_logged(caplog):
    client = Client(raise_request_exception=False)

    api = client.get("/api/v1/failing/")

    body = assert_json_error(api, 500, "server_error")
    assert INTERNAL_DETAIL not in api.content.decode()
    assert body["errors"] == {}
    logged = [r for r in caplog.records if r.name == "django.request" and r.levelname == "ERROR"]
    assert [r.exc_info[1].args[0] for r in logged] == [INTERNAL_DETAIL]


@pytest.mark.urls(__name__)
def test_a_server_error_outside_api_is_django_page():
    response = Client(raise_request_exception=False).get("/failing/")

    assert response.status_code == 500
    assert response["Content-Type"].startswith("text/html")
    assert INTERNAL_DETAIL not in response.content.decode()


# --- Every route, every method, bodies good and bad: JSON, never a server error -------------------------


def _api_routes() -> list[str]:
    """Every route of the project under /api/ (as ``api/v1/teams/<str:team>/...``), apart from the catch-all."""
    found = []

    def walk(patterns, prefix: str) -> None:
        for pattern in patterns:
            if isinstance(pattern, URLResolver):
                walk(pattern.url_patterns, prefix + str(pattern.pattern))
            elif isinstance(pattern, URLPattern) and pattern.callback is not api_not_found:
                found.append(prefix + str(pattern.pattern))

    walk(get_resolver().url_patterns, "")
    return [route for route in found if route.startswith("api/")]


def _fill(route: str, values: dict[str, str]) -> str:
    return "/" + re.sub(r"<(?:\w+:)?(\w+)>", lambda m: values[m.group(1)], route)


def test_every_api_route_answers_json_for_any_method_and_body_and_never_a_server_error(world, api):
    event = Event.objects.filter(type="LINK_ARTIFACT").get()
    values = {
        "team": "acme", "username": "acme-member", "project": "training", "collection": "classifier",
        "public_id": str(event.model_version.artifact_version.public_id), "name": "classifier", "version": "v0",
        "alias": "production", "event_id": str(event.pk), "webhook_id": str(Webhook.objects.get().pk),
        "automation_id": str(Automation.objects.get().pk), "delivery_id": "1", "item_id": str(uuid.uuid4()),
        "path": "model.bin", "sha256": "0" * 64, "token_id": "1", "tag": "reviewed",
    }  # fmt: skip
    routes = _api_routes()
    assert len(routes) >= 30 and "api/schema/" in routes
    bodies = [
        ("application/json", b'{"name": "x", "alias": "staging", "value": "v"}'),
        ("application/json", b"{not json"),
        ("application/json", b"[1, 2]"),
        ("text/plain", b"name=x"),
    ]
    seen: dict[int, int] = {}
    # Deletes last, so each route is first reached with its objects in place.
    for methods in (["get", "head", "options", "post", "put", "patch"], ["delete"]):
        for route in routes:
            url = _fill(route, values)
            assert resolve(url).func is not api_not_found, url
            for method in methods:
                for content_type, raw in bodies if method in ("post", "put", "patch") else [("", b"")]:
                    response = api.generic(method.upper(), url, raw, content_type)
                    where = f"{method.upper()} {url} ({content_type})"
                    assert response.status_code < 500, (where, response.content[:300])
                    seen[response.status_code] = seen.get(response.status_code, 0) + 1
                    if url.startswith("/api/docs/") and response.status_code in (200, 304):
                        continue  # the interactive docs are an HTML page by design; only their errors are JSON
                    if method == "head" or response.status_code in (204, 304):
                        continue
                    assert response["Content-Type"].startswith(("application/json", "application/vnd.oai")), where
                    if response.status_code >= 400:
                        assert_json_error(response, response.status_code)
    assert {200, 201, 400, 404, 405, 415} <= set(seen), seen


# --- Outside /api/ --------------------------------------------------------------------------------------


def test_the_root_redirects_to_the_admin():
    client = Client()

    response = client.get("/")

    assert response.status_code == 302
    assert response["Location"] == "/admin/"
    assert client.get("/admin/").status_code == 302  # on to the admin's login page


@pytest.mark.parametrize("path", ["/nothing/", "/apis/", "/static/nothing.css", "/admin/nothing/"])
def test_unknown_paths_outside_api_keep_django_html_404(path):
    response = Client(raise_request_exception=False).get(path)

    assert response.status_code in (302, 404), path  # the admin sends an anonymous user to log in first
    if response.status_code == 404:
        assert response["Content-Type"].startswith("text/html"), path


def test_django_still_appends_the_slash_outside_api():
    response = Client().get("/admin")

    assert response.status_code == 301
    assert response["Location"] == "/admin/"


# --- The schema ---------------------------------------------------------------------------------------


def test_the_openapi_schema_and_docs_are_served(api):
    schema = api.get("/api/schema/", {"format": "json"})
    docs = api.get("/api/docs/")

    assert schema.status_code == 200, schema.content[:300]
    paths = schema.json()["paths"]
    assert "/api/v1/teams/{team}/registered-models/{name}/versions/{version}/aliases/" in paths
    aliases = paths["/api/v1/teams/{team}/registered-models/{name}/versions/{version}/aliases/"]["post"]
    assert set(aliases["responses"]) == {"200", "201"}
    assert not any(p.startswith("/api/{") or "(?" in p for p in paths), "the catch-all is not an endpoint"
    assert docs.status_code == 200 and docs["Content-Type"].startswith("text/html")
