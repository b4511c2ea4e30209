"""Every reference resolves: an alias works wherever a ``vN`` does."""

from __future__ import annotations

import pytest

from registry.choices import Role
from registry.models import Event, ModelVersion

from .factories import add_member, api_client, link, make_registered_model, make_team

pytestmark = pytest.mark.django_db


@pytest.fixture
def world():
    team = make_team("vision")
    member = add_member(team, role=Role.MEMBER)
    model = make_registered_model(team, "classifier")
    v0 = link(model)
    v1 = link(model, aliases=["production"])
    return team, api_client(member), model, v0, v1


BASE = "/api/v1/teams/vision/registered-models/classifier/versions"


def test_a_model_version_is_read_by_alias_as_by_index(world):
    _, client, *_ = world
    by_alias = client.get(f"{BASE}/production/")
    assert by_alias.status_code == 200, by_alias.content
    assert by_alias.json() == client.get(f"{BASE}/v1/").json()
    assert client.get(f"{BASE}/latest/").json()["version"] == "v1"


def test_an_alias_is_added_through_another_alias_and_fires_its_event(world):
    _, client, _, _, v1 = world
    response = client.post(f"{BASE}/production/aliases/", {"alias": "candidate"}, format="json")
    assert response.status_code == 201, response.content
    assert sorted(response.json()["aliases"]) == ["candidate", "latest", "production"]
    assert Event.objects.filter(type="ADD_ARTIFACT_ALIAS", alias="candidate", model_version=v1).count() == 1


def test_a_version_is_unlinked_by_alias(world):
    team, _, model, v0, _ = world
    admin = add_member(team, role=Role.ADMIN)
    response = api_client(admin).delete(f"{BASE}/production/")
    assert response.status_code == 204, response.content
    assert list(ModelVersion.objects.filter(registered_model=model)) == [v0]


def test_an_unknown_alias_is_a_404_naming_it(world):
    _, client, *_ = world
    response = client.get(f"{BASE}/staging/")
    assert response.status_code == 404
    assert response.json()["detail"] == "classifier has no version 'staging'."
