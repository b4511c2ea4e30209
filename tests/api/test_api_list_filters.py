"""Every list endpoint takes exactly the query parameters it documents: its filters, paging and ``format``.

The lists are found in the URL configuration (every view built on ``core.api.listing.ListView``), so a list added
later is covered without an entry here, and a guard fails if the schema shows a listing that is not such a view.
"""

from __future__ import annotations

import re
import uuid

import pytest
from django.urls import URLPattern, URLResolver, get_resolver, resolve

from automations import services as automations
from core.api.listing import ListView, QueryFilter
from core.roles import Role
from launch import services as launch
from tests import factories as f

pytestmark = pytest.mark.django_db

# What each URL parameter of a list route names in the world below (every registered model, job and queue is 'main').
VALUES = {"team": "acme", "project": "training", "collection": "main", "name": "main"}
PAGING = {"limit": "1", "offset": "0"}


def _list_routes() -> dict[str, type[ListView]]:
    """Every list route (``api/v1/teams/<str:team>/...``) and its view."""
    found: dict[str, type[ListView]] = {}

    def walk(patterns, prefix: str) -> None:
        for pattern in patterns:
            if isinstance(pattern, URLResolver):
                walk(pattern.url_patterns, prefix + str(pattern.pattern))
            elif isinstance(pattern, URLPattern):
                view = getattr(pattern.callback, "view_class", None)
                if view is not None and issubclass(view, ListView):
                    found[prefix + str(pattern.pattern)] = view

    walk(get_resolver().url_patterns, "")
    return found


LIST_ROUTES = _list_routes()


def url(route: str) -> str:
    return "/" + re.sub(r"<(?:\w+:)?(\w+)>", lambda m: VALUES[m.group(1)], route)


def schema_path(route: str) -> str:
    return "/" + re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", route)


def paging(view: type[ListView]) -> dict[str, str]:
    return PAGING if view.pagination_class is not None else {}


def a_valid_value(query_filter: QueryFilter) -> str:
    allowed = query_filter.allowed()
    if allowed:
        return allowed[0]
    return {int: "1", uuid.UUID: str(uuid.uuid4())}.get(query_filter.kind, "main")


@pytest.fixture
def client(monkeypatch, settings):
    """Team acme's admin (every list is open to admins), with one of everything a list route names."""
    settings.WEBHOOK_ALLOWED_NETWORKS = ["127.0.0.1/32"]
    admin = f.make_user()
    team = f.make_team("acme", admin=admin)
    webhook = automations.webhook_create(team=team, name="main", url="http://127.0.0.1:9/", user=admin)
    automation = automations.automation_create(
        team=team, user=admin, name="main", event_type="LINK_ARTIFACT", action_type="WEBHOOK", webhook=webhook.pk,
        payload={"a": 1},
    )  # fmt: skip
    monkeypatch.setitem(VALUES, "automation_id", str(automation.pk))
    f.link(f.make_registered_model(team, "main"), user=admin)
    f.make_artifact_version(team, collection="main")
    job = launch.job_create(team=team, name="main", project="training")
    launch.job_version_create(job=job, entrypoint=["python", "main.py"])
    launch.run_queue_create(team=team, name="main")
    return f.api_client(admin)


def test_the_lists_are_found():
    assert len(LIST_ROUTES) >= 15
    assert {"api/v1/teams/<str:team>/deliveries/", "api/v1/teams/<str:team>/launch/items/"} <= set(LIST_ROUTES)


@pytest.mark.parametrize("route", sorted(LIST_ROUTES))
def test_every_list_refuses_a_parameter_it_does_not_take_naming_it(client, route):
    view = LIST_ROUTES[route]

    answer = client.get(url(route), {"bogus": "1", **paging(view)})

    assert answer.status_code == 400, answer.content
    body = answer.json()
    assert list(body["errors"]) == ["bogus"], body
    # The reason says what the list takes instead.
    for name in [*(q.name for q in view.query_filters), *paging(view)]:
        assert name in body["errors"]["bogus"][0], body


@pytest.mark.parametrize("route", sorted(LIST_ROUTES))
def test_every_list_takes_each_of_its_filters_paging_and_format_together(client, route):
    view = LIST_ROUTES[route]
    params = {**{q.name: a_valid_value(q) for q in view.query_filters}, **paging(view), "format": "json"}

    answer = client.get(url(route), params)

    assert answer.status_code == 200, (params, answer.content)


def test_every_unknown_parameter_is_named_and_a_misspelt_filter_is_not_ignored(client):
    answer = client.get(url("api/v1/teams/<str:team>/deliveries/"), {"stauts": "failed", "evnt": "x", "limit": "5"})

    assert answer.status_code == 400, answer.content
    assert sorted(answer.json()["errors"]) == ["evnt", "stauts"]


def test_a_list_without_paging_refuses_paging_parameters(client):
    answer = client.get("/api/v1/automation-presets/", {"limit": "1"})

    assert answer.status_code == 400 and list(answer.json()["errors"]) == ["limit"]
    assert client.get("/api/v1/automation-presets/").status_code == 200


@pytest.mark.parametrize(
    ("route", "params", "field"),
    [
        ("deliveries/", {"automation": "99999999999999999999"}, "automation"),  # past PostgreSQL's bigint
        ("deliveries/", {"webhook": "-1"}, "webhook"),
        ("deliveries/", {"status": "done"}, "status"),
        ("events/", {"type": "LINKED"}, "type"),
        ("launch/items/", {"state": "stuck"}, "state"),
        ("launch/items/", {"automation": "1e3"}, "automation"),
        ("launch/queues/main/items/", {"event": "v0"}, "event"),
    ],
)
def test_a_filter_value_it_cannot_hold_is_refused_naming_the_filter(client, route, params, field):
    answer = client.get(url("api/v1/teams/<str:team>/" + route), params)

    assert answer.status_code == 400, answer.content
    assert list(answer.json()["errors"]) == [field]


def test_someone_outside_the_team_learns_nothing_from_an_unknown_parameter(client):
    outsider = f.api_client(f.make_user())

    answer = outsider.get(url("api/v1/teams/<str:team>/launch/items/"), {"bogus": "1"})

    assert answer.status_code == 404


def test_a_viewer_reads_the_team_wide_item_list_and_another_teams_items_are_not_in_it(client):
    from launch.models import RunQueueItem
    from registry.models import Team

    team = Team.objects.get(name="acme")
    viewer = f.api_client(f.add_member(team, role=Role.VIEWER))
    other = f.make_team("globex")
    f.make_project(other, "training")
    job = launch.job_create(team=other, name="main", project="training")
    launch.item_enqueue(
        queue=launch.run_queue_create(team=other, name="main"),
        job_version=launch.job_version_create(job=job, entrypoint=["true"]),
        destination_project=job.project,
        overrides={},
        user=None,
    )
    assert RunQueueItem.objects.filter(team=other).count() == 1
    for client_ in (client, viewer):
        answer = client_.get(url("api/v1/teams/<str:team>/launch/items/"))
        assert answer.status_code == 200, answer.content
        assert answer.json()["results"] == []


# --- One declaration, read by the check and by the schema ----------------------------------------------


@pytest.fixture(scope="module")
def schema(django_db_blocker) -> dict:
    from rest_framework.test import APIClient

    with django_db_blocker.unblock():
        answer = APIClient().get("/api/schema/", {"format": "json"})
    assert answer.status_code == 200, answer.content[:300]
    return answer.json()


def query_parameters(schema: dict, path: str) -> dict[str, dict]:
    return {p["name"]: p for p in schema["paths"][path]["get"].get("parameters", []) if p["in"] == "query"}


@pytest.mark.parametrize("route", sorted(LIST_ROUTES))
def test_the_schema_documents_exactly_the_parameters_a_list_takes(schema, route):
    view = LIST_ROUTES[route]
    documented = query_parameters(schema, schema_path(route))

    assert set(documented) == {q.name for q in view.query_filters} | set(paging(view))
    for query_filter in view.query_filters:
        documented_schema = documented[query_filter.name]["schema"]
        assert sorted(documented_schema.get("enum", [])) == sorted(query_filter.allowed() or [])
        expected = {int: ("integer", None), uuid.UUID: ("string", "uuid")}.get(query_filter.kind, ("string", None))
        assert (documented_schema["type"], documented_schema.get("format")) == expected


def test_every_listing_in_the_schema_is_a_list_view(schema):
    listings = []
    for path, operations in schema["paths"].items():
        get = operations.get("get")
        if get is None:
            continue
        answer = get["responses"].get("200", {}).get("content", {}).get("application/json", {}).get("schema", {})
        if "limit" in query_parameters(schema, path) or answer.get("type") == "array":
            listings.append(path)
            filled = re.sub(r"\{(\w+)\}", lambda m: VALUES.get(m.group(1), "x"), path)
            assert issubclass(resolve(filled).func.view_class, ListView), path
    assert len(listings) == len(LIST_ROUTES)
