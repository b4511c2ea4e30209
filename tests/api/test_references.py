"""Every reference resolves: an alias works wherever a ``vN`` does."""

from __future__ import annotations

import hashlib

import pytest

from core.roles import Role
from registry.models import ArtifactVersion, Event, ModelVersion
from tests.factories import add_member, api_client, link, make_project, make_registered_model, make_team

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


# --- Any reference resolves to the version with its manifest and download links -------------------------

WEIGHTS = b"\x01weights" * 512


@pytest.fixture
def model_world():
    """classifier v0 linked as production, its artifact holding one file."""
    team = make_team("vision")
    make_project(team, "training")
    client = api_client(add_member(team, role=Role.MEMBER))
    versions = "/api/v1/teams/vision/projects/training/artifacts/classifier/versions/"
    digest = hashlib.sha256(WEIGHTS).hexdigest()
    created = client.post(
        versions,
        {"type": "model", "files": [{"path": "model.bin", "size": len(WEIGHTS), "sha256": digest}]},
        format="json",
    )
    assert created.status_code == 201, created.content
    uploaded = client.put(
        f"{versions}v0/files/model.bin", WEIGHTS, content_type="application/octet-stream",
        CONTENT_LENGTH=str(len(WEIGHTS)),
    )  # fmt: skip
    assert uploaded.status_code in (200, 201), uploaded.content
    assert client.post(f"{versions}v0/commit/", format="json").status_code == 200
    make_registered_model(team, "classifier")
    linked = client.post(
        "/api/v1/teams/vision/registered-models/classifier/versions/",
        {"artifact": "vision/training/classifier:v0", "aliases": ["production"]},
        format="json",
    )
    assert linked.status_code == 201, linked.content
    return client, ArtifactVersion.objects.get(collection__name="classifier", index=0)


@pytest.mark.parametrize(
    "reference",
    [
        "vision/training/classifier:v0",
        "vision/training/classifier:latest",
        "vision/model-registry/classifier:v0",
        "vision/model-registry/classifier:production",
        "vision/model-registry/classifier:latest",
        "opaque",
    ],
)
def test_every_reference_resolves_to_the_version_with_its_manifest_and_download_links(model_world, reference):
    client, artifact = model_world
    if reference == "opaque":
        reference = f"registry-artifact://_id/{artifact.public_id}"

    response = client.get("/api/v1/teams/vision/resolve/", {"reference": reference})

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["reference"] == "vision/training/classifier:v0"
    assert body["state"] == "committed" and body["digest"] == artifact.digest
    [entry] = body["files"]
    assert entry["path"] == "model.bin" and entry["sha256"] == hashlib.sha256(WEIGHTS).hexdigest()
    download = client.get(entry["url"])
    assert download.status_code == 200
    assert b"".join(download.streaming_content) == WEIGHTS


def test_the_artifact_version_endpoints_take_an_alias_and_the_registry_path(model_world):
    client, artifact = model_world
    for path in (
        "projects/training/artifacts/classifier/versions/latest/",
        "projects/model-registry/artifacts/classifier/versions/production/",
    ):
        response = client.get(f"/api/v1/teams/vision/{path}")
        assert response.status_code == 200, (path, response.content)
        assert response.json()["id"] == str(artifact.public_id)
    download = client.get(
        "/api/v1/teams/vision/projects/model-registry/artifacts/classifier/versions/production/files/model.bin"
    )
    assert b"".join(download.streaming_content) == WEIGHTS


@pytest.mark.parametrize(
    ("reference", "status", "detail"),
    [
        ("", 400, "Give the reference"),
        ("classifier:v0", 400, "Invalid artifact reference"),
        ("other/training/classifier:v0", 400, "not an artifact of team vision"),
        ("vision/training/classifier:v9", 404, "No artifact version"),
        ("vision/model-registry/classifier:staging", 404, "No artifact version"),
        ("registry-artifact://_id/00000000-0000-0000-0000-000000000000", 404, "No artifact version"),
    ],
)
def test_a_reference_that_names_nothing_is_a_clear_error(model_world, reference, status, detail):
    client, _ = model_world
    response = client.get("/api/v1/teams/vision/resolve/", {"reference": reference})
    assert response.status_code == status, response.content
    assert detail in response.json()["detail"]
    assert list(response.json()["errors"]) == ["reference"]


def test_another_teams_opaque_id_is_not_found(model_world):
    _, artifact = model_world
    outsider_team = make_team("other")
    outsider = api_client(add_member(outsider_team, role=Role.ADMIN))
    response = outsider.get(
        "/api/v1/teams/other/resolve/", {"reference": f"registry-artifact://_id/{artifact.public_id}"}
    )
    assert response.status_code == 404
