"""Model files through the API, on filesystem storage: manifests, uploads by content, commit, downloads, roles,
bad input and the clean-up. (The S3 path and a real gunicorn are in tests/e2e/test_artifact_files_e2e.py.)"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from core.roles import Role
from registry import blobs, manifests, selectors
from registry.choices import VersionState
from registry.models import ArtifactVersion, Blob, Event, ManifestEntry
from registry.tasks import artifacts_clean
from tests import factories as f
from tests.conftest import ARTIFACT_STORE

pytestmark = pytest.mark.django_db

WEIGHTS = b"\x00weights\xff" * 1000
CONFIG = b'{"layers": 12}\n'
TOKENIZER = b"tokenizer bytes"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def file_entry(path: str, data: bytes) -> dict:
    return {"path": path, "size": len(data), "sha256": sha(data)}


@pytest.fixture(autouse=True)
def store(settings, tmp_path) -> dict[str, Path]:
    """This test's artifact storage folders (tests/conftest.py puts each test's storage in its tmp_path)."""
    settings.ARTIFACT_DOWNLOAD_REDIRECT = False
    return {"store": tmp_path / ARTIFACT_STORE, "incoming": tmp_path / ARTIFACT_STORE / ".incoming"}


def stored_objects(store: dict[str, Path]) -> list[str]:
    root = store["store"]
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and ".incoming" not in p.parts)


def temp_files(store: dict[str, Path]) -> list[str]:
    return sorted(p.name for p in store["incoming"].glob("*")) if store["incoming"].exists() else []


@pytest.fixture
def team():
    admin = f.make_user("alice")
    team = f.make_team("acme", admin=admin)
    f.make_project(team, "training")
    return team


@pytest.fixture
def member(team):
    return f.add_member(team, f.make_user("mia"), Role.MEMBER)


@pytest.fixture
def client(member):
    return f.api_client(member)


VERSIONS = "/api/v1/teams/acme/projects/training/artifacts/classifier/versions/"


def create(client, files=(), references=(), **extra):
    body = {"type": "model", "files": list(files), "references": list(references), **extra}
    return client.post(VERSIONS, body, format="json")


def put_file(client, version: str, path: str, data: bytes, **headers):
    headers.setdefault("CONTENT_LENGTH", str(len(data)))  # the test client leaves it out for an empty body
    return client.put(f"{VERSIONS}{version}/files/{path}", data, content_type="application/octet-stream", **headers)


def put_blob(client, digest: str, data: bytes, **headers):
    return client.put(f"/api/v1/teams/acme/blobs/{digest}/", data, content_type="application/octet-stream", **headers)


def snapshot() -> dict:
    return {
        **f.registry_snapshot(),
        "entries": sorted(ManifestEntry.objects.values_list("artifact_version_id", "path", "sha256", "blob_id")),
        "blobs": sorted(Blob.objects.values_list("team_id", "sha256", "size")),
        "states": sorted(ArtifactVersion.objects.values_list("pk", "state", "digest")),
    }


def commit(client, version: str = "v0"):
    return client.post(f"{VERSIONS}{version}/commit/", format="json")


def created_events() -> int:
    return Event.objects.filter(type="CREATE_ARTIFACT").count()


# --- Life of a version ----------------------------------------------------------------------------------


def test_a_version_logged_the_original_way_is_committed_at_once_with_its_digest_kept(client):
    response = client.post(
        VERSIONS, {"type": "model", "metadata": {"acc": 0.9}, "digest": "free-text", "description": "d"}, format="json"
    )

    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["state"], body["digest"], body["files"], body["references"], body["missing"]) == (
        "committed",
        "free-text",
        [],
        [],
        [],
    )
    assert body["committed_at"] is not None
    assert created_events() == 1


def test_a_version_with_files_is_pending_and_names_each_missing_digest_once_with_its_upload_url(client):
    response = create(
        client,
        files=[
            file_entry("weights/model.bin", WEIGHTS),
            file_entry("copy/model.bin", WEIGHTS),
            file_entry("c.json", CONFIG),
        ],
    )

    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["state"], body["digest"], body["committed_at"]) == ("pending", "", None)
    assert [e["path"] for e in body["files"]] == ["c.json", "copy/model.bin", "weights/model.bin"]
    missing = {m["sha256"]: m for m in body["missing"]}
    assert missing[sha(WEIGHTS)]["paths"] == ["copy/model.bin", "weights/model.bin"]
    assert missing[sha(WEIGHTS)]["upload_url"] == f"http://testserver/api/v1/teams/acme/blobs/{sha(WEIGHTS)}/"
    assert set(missing) == {sha(WEIGHTS), sha(CONFIG)}
    assert created_events() == 0


def test_committing_sets_the_digest_of_the_documented_canonical_manifest_and_fires_create_artifact_once(client):
    reference = {"path": "data/train.parquet", "uri": "s3://bucket/train.parquet", "size": 10, "sha256": "AB" * 32}
    create(
        client, files=[file_entry("weights.bin", WEIGHTS), file_entry("é/config.json", CONFIG)], references=[reference]
    )
    assert put_file(client, "v0", "weights.bin", WEIGHTS).status_code == 201
    assert put_blob(client, sha(CONFIG), CONFIG).status_code == 201

    response = commit(client)

    assert response.status_code == 200, response.content
    body = response.json()
    # Written out by hand: sorted by path, sorted keys, no spaces, UTF-8 as is.
    canonical = (
        f'[{{"path":"data/train.parquet","reference":"s3://bucket/train.parquet","sha256":"{"ab" * 32}","size":10}},'
        f'{{"path":"weights.bin","sha256":"{sha(WEIGHTS)}","size":{len(WEIGHTS)}}},'
        f'{{"path":"é/config.json","sha256":"{sha(CONFIG)}","size":{len(CONFIG)}}}]'
    )
    assert body["digest"] == hashlib.sha256(canonical.encode()).hexdigest()
    assert body["state"] == "committed"
    assert body["references"] == [
        {"path": "data/train.parquet", "uri": "s3://bucket/train.parquet", "size": 10, "sha256": "ab" * 32}
    ]
    assert [e["url"] for e in body["files"]] == [
        "http://testserver/api/v1/teams/acme/projects/training/artifacts/classifier/versions/v0/files/weights.bin",
        "http://testserver/api/v1/teams/acme/projects/training/artifacts/classifier/versions/v0/files/%C3%A9/config.json",
    ]
    assert created_events() == 1
    assert commit(client).status_code == 200  # committing again changes nothing
    assert created_events() == 1
    assert not ManifestEntry.objects.filter(reference="", blob__isnull=True).exists()


def test_a_digest_sent_with_a_manifest_must_be_that_manifests(client):
    files = [file_entry("a.bin", WEIGHTS)]
    expected = manifests.manifest_digest(manifests.manifest_entries(files=files))
    before = snapshot()

    refused = create(client, files=files, digest="0" * 64)

    assert refused.status_code == 400 and "digest" in refused.json()["errors"]
    assert snapshot() == before
    assert create(client, files=files, digest=expected.upper()).status_code == 201


def test_a_version_with_only_references_is_committed_at_once_and_the_server_never_fetches_them(client):
    response = create(
        client, references=[{"path": "w.bin", "uri": "https://192.0.2.1/w.bin", "size": 5, "sha256": sha(b"x")}]
    )

    assert response.status_code == 201
    assert response.json()["state"] == "committed"
    download = client.get(f"{VERSIONS}v0/files/w.bin")
    assert download.status_code == 409 and "https://192.0.2.1/w.bin" in download.json()["detail"]


def test_commit_with_files_not_uploaded_is_409_naming_them_and_changes_nothing(client):
    create(client, files=[file_entry("a.bin", WEIGHTS), file_entry("b/c.json", CONFIG), file_entry("t", TOKENIZER)])
    put_file(client, "v0", "t", TOKENIZER)
    before = snapshot()

    response = commit(client)

    assert response.status_code == 409
    assert "a.bin" in response.json()["detail"] and "b/c.json" in response.json()["detail"]
    assert "files" in response.json()["errors"]
    assert snapshot() == before
    assert created_events() == 0


def test_a_committed_version_refuses_uploads(client, store):
    create(client, files=[file_entry("a.bin", WEIGHTS)])
    put_file(client, "v0", "a.bin", WEIGHTS)
    commit(client)
    before = snapshot()

    response = put_file(client, "v0", "a.bin", WEIGHTS)

    assert response.status_code == 409 and "version" in response.json()["errors"]
    assert snapshot() == before


def test_only_committed_versions_can_be_linked(client, team):
    f.make_registered_model(team, "classifier")
    create(client, files=[file_entry("a.bin", WEIGHTS)])
    link = {"artifact": "acme/training/classifier:v0"}
    url = "/api/v1/teams/acme/registered-models/classifier/versions/"

    refused = client.post(url, link, format="json")
    assert refused.status_code == 409 and "artifact" in refused.json()["errors"]

    put_file(client, "v0", "a.bin", WEIGHTS)
    commit(client)
    assert client.post(url, link, format="json").status_code == 201


# --- Content addressing ---------------------------------------------------------------------------------


def test_a_file_the_team_stores_is_not_asked_for_again(client, store):
    create(client, files=[file_entry("a.bin", WEIGHTS)])
    put_file(client, "v0", "a.bin", WEIGHTS)
    commit(client)

    second = create(client, files=[file_entry("renamed.bin", WEIGHTS), file_entry("new.json", CONFIG)])
    asked = client.post(
        "/api/v1/teams/acme/blobs/missing/", {"sha256": [sha(WEIGHTS), sha(CONFIG).upper()]}, format="json"
    )

    assert [m["sha256"] for m in second.json()["missing"]] == [sha(CONFIG)]
    assert asked.json() == {"missing": [sha(CONFIG)]}
    again = put_blob(client, sha(WEIGHTS), WEIGHTS)
    assert (again.status_code, again.json()["stored"]) == (200, False)
    assert Blob.objects.count() == 1 and len(stored_objects(store)) == 1


def test_blobs_are_per_team_a_known_digest_never_reaches_another_teams_file(client, store):
    create(client, files=[file_entry("a.bin", WEIGHTS)])
    put_file(client, "v0", "a.bin", WEIGHTS)
    commit(client)
    outsider = f.make_user("eve")
    other = f.make_team("globex", admin=outsider)
    f.make_project(other, "training")
    eve = f.api_client(outsider)
    theirs = "/api/v1/teams/globex/projects/training/artifacts/classifier/versions/"

    created = eve.post(theirs, {"type": "model", "files": [file_entry("stolen.bin", WEIGHTS)]}, format="json")
    missing = eve.post("/api/v1/teams/globex/blobs/missing/", {"sha256": [sha(WEIGHTS)]}, format="json")
    committed = eve.post(f"{theirs}v0/commit/")

    assert [m["sha256"] for m in created.json()["missing"]] == [sha(WEIGHTS)]
    assert missing.json() == {"missing": [sha(WEIGHTS)]}
    assert committed.status_code == 409
    assert eve.get(f"{theirs}v0/files/stolen.bin").status_code == 409
    assert eve.get(f"{VERSIONS}v0/files/a.bin").status_code == 404  # acme does not exist for eve


# --- Downloads ------------------------------------------------------------------------------------------


@pytest.fixture
def committed(client):
    create(client, files=[file_entry("w/model.bin", WEIGHTS), file_entry("empty", b"")])
    put_file(client, "v0", "w/model.bin", WEIGHTS)
    put_file(client, "v0", "empty", b"")
    assert commit(client).status_code == 200
    return f"{VERSIONS}v0/files/w/model.bin"


def body_of(response) -> bytes:
    return b"".join(response.streaming_content)


def test_download_sends_the_bytes_with_etag_and_length(client, committed):
    response = client.get(committed)

    assert response.status_code == 200
    assert body_of(response) == WEIGHTS
    assert response["ETag"] == f'"{sha(WEIGHTS)}"'
    assert response["Content-Length"] == str(len(WEIGHTS))
    assert response["Accept-Ranges"] == "bytes"
    assert 'filename="model.bin"' in response["Content-Disposition"]


@pytest.mark.parametrize(
    ("header", "start", "end"),
    [("bytes=2-5", 2, 5), ("bytes=-3", len(WEIGHTS) - 3, len(WEIGHTS) - 1), ("bytes=8990-", 8990, len(WEIGHTS) - 1),
     ("bytes=5-999999", 5, len(WEIGHTS) - 1)],
)  # fmt: skip
def test_a_range_is_answered_206_with_those_bytes(client, committed, header, start, end):
    response = client.get(committed, HTTP_RANGE=header)

    assert response.status_code == 206
    assert body_of(response) == WEIGHTS[start : end + 1]
    assert response["Content-Range"] == f"bytes {start}-{end}/{len(WEIGHTS)}"
    assert response["Content-Length"] == str(end - start + 1)


@pytest.mark.parametrize("header", [f"bytes={len(WEIGHTS)}-", "bytes=20000-20001", "bytes=-0"])
def test_a_range_past_the_end_is_416_with_the_size(client, committed, header):
    response = client.get(committed, HTTP_RANGE=header)

    assert response.status_code == 416
    assert response["Content-Range"] == f"bytes */{len(WEIGHTS)}"
    assert response.json()["code"] == "range_not_satisfiable"


@pytest.mark.parametrize("headers", [{"HTTP_RANGE": "bytes=0-1,4-5"}, {"HTTP_RANGE": "lines=1-2"},
                                     {"HTTP_RANGE": "bytes=0-1", "HTTP_IF_RANGE": '"stale"'}])  # fmt: skip
def test_ranges_that_cannot_be_served_as_one_get_the_whole_file(client, committed, headers):
    response = client.get(committed, **headers)

    assert response.status_code == 200 and body_of(response) == WEIGHTS


def test_if_none_match_with_the_etag_is_304(client, committed):
    response = client.get(committed, HTTP_IF_NONE_MATCH=f'"other", "{sha(WEIGHTS)}"')

    assert response.status_code == 304 and response["ETag"] == f'"{sha(WEIGHTS)}"'
    assert client.get(committed, HTTP_IF_NONE_MATCH='"other"').status_code == 200


def test_an_empty_file_downloads_and_any_range_of_it_is_416(client, committed):
    url = committed.replace("w/model.bin", "empty")
    response = client.get(url)
    assert (response.status_code, body_of(response), response["Content-Length"]) == (200, b"", "0")
    assert client.get(url, HTTP_RANGE="bytes=0-").status_code == 416


def test_downloads_answer_bytes_whatever_the_client_accepts(client, committed):
    assert client.get(committed, HTTP_ACCEPT="application/octet-stream").status_code == 200
    missing = client.get(committed + "x", HTTP_ACCEPT="application/octet-stream")
    assert missing.status_code == 404 and missing.json()["code"] == "not_found"


def test_a_pending_versions_files_are_not_served(client):
    create(client, files=[file_entry("a.bin", WEIGHTS)])
    put_file(client, "v0", "a.bin", WEIGHTS)

    assert client.get(f"{VERSIONS}v0/files/a.bin").status_code == 409


def test_the_opaque_id_resolves_to_the_manifest(client, committed):
    public_id = ArtifactVersion.objects.get().public_id

    body = client.get(f"/api/v1/teams/acme/artifact-versions/{public_id}/").json()

    assert [e["path"] for e in body["files"]] == ["empty", "w/model.bin"]
    assert body["state"] == "committed"


# --- Roles ----------------------------------------------------------------------------------------------


def test_viewers_download_members_upload_and_commit_admins_delete(team, client, committed):
    viewer = f.api_client(f.add_member(team, f.make_user("val"), Role.VIEWER))
    admin = f.api_client(team.memberships.get(role=Role.ADMIN).user)

    assert viewer.get(committed).status_code == 200
    assert viewer.get(f"{VERSIONS}v0/").status_code == 200
    assert create(viewer, files=[file_entry("x", CONFIG)]).status_code == 403
    assert put_blob(viewer, sha(CONFIG), CONFIG).status_code == 403
    assert viewer.post(f"{VERSIONS}v0/commit/").status_code == 403
    assert client.delete(f"{VERSIONS}v0/").status_code == 403
    assert admin.delete(f"{VERSIONS}v0/").status_code == 204
    assert not ArtifactVersion.objects.exists() and Blob.objects.count() == 2  # the clean-up removes them later


def test_a_linked_version_is_not_deleted(team, client, committed):
    f.make_registered_model(team, "classifier")
    client.post(
        "/api/v1/teams/acme/registered-models/classifier/versions/",
        {"artifact": "acme/training/classifier:v0"},
        format="json",
    )
    admin = f.api_client(team.memberships.get(role=Role.ADMIN).user)
    before = snapshot()

    response = admin.delete(f"{VERSIONS}v0/")

    assert response.status_code == 409 and "classifier:v0" in response.json()["detail"]
    assert snapshot() == before


# --- Bad input ------------------------------------------------------------------------------------------

BAD_MANIFESTS = [
    ({"files": [file_entry("../up.bin", WEIGHTS)]}, 400, "files.0.path"),
    ({"files": [file_entry("a/../../b", WEIGHTS)]}, 400, "files.0.path"),
    ({"files": [file_entry("/etc/passwd", WEIGHTS)]}, 400, "files.0.path"),
    ({"files": [file_entry("dir\\file", WEIGHTS)]}, 400, "files.0.path"),
    ({"files": [file_entry("nul\x00byte", WEIGHTS)]}, 400, "files.0.path"),
    ({"files": [file_entry("a//b", WEIGHTS)]}, 400, "files.0.path"),
    ({"files": [file_entry("./a", WEIGHTS)]}, 400, "files.0.path"),
    ({"files": [file_entry("dir/", WEIGHTS)]}, 400, "files.0.path"),
    ({"files": [file_entry("a", WEIGHTS), file_entry("a", CONFIG)]}, 400, "files.1.path"),
    ({"files": [file_entry("a", WEIGHTS)], "references": [{"path": "a", "uri": "s3://b/k", "size": 1,
                                                            "sha256": "a" * 64}]}, 400, "references.0.path"),
    ({"files": [file_entry("a", WEIGHTS), file_entry("a/b", CONFIG)]}, 400, "files.1.path"),
    ({"files": [{"path": "a", "size": 1, "sha256": "xyz"}]}, 400, "files.0.sha256"),
    ({"files": [{"path": "a", "size": -1, "sha256": "a" * 64}]}, 400, "files.0.size"),
    ({"files": [{"path": "a", "size": 1}]}, 400, "files.0.sha256"),
    ({"files": [{"path": "a", "size": 2**40, "sha256": "a" * 64}]}, 413, "files.0.size"),
    ({"references": [{"path": "a", "uri": "http://host/a", "size": 1, "sha256": "a" * 64}]}, 400, "references.0.uri"),
    ({"references": [{"path": "a", "uri": "file:///etc/x", "size": 1, "sha256": "a" * 64}]}, 400, "references.0.uri"),
    ({"references": [{"path": "a", "uri": "s3://", "size": 1, "sha256": "a" * 64}]}, 400, "references.0.uri"),
    ({"references": [{"path": "a", "uri": "s3://b/k j", "size": 1, "sha256": "a" * 64}]}, 400, "references.0.uri"),
    ({"files": "a.bin"}, 400, "files"),
]  # fmt: skip


@pytest.mark.parametrize(("body", "status", "field"), BAD_MANIFESTS)
def test_a_bad_manifest_is_refused_naming_the_entry_and_nothing_is_written(client, settings, body, status, field):
    settings.ARTIFACT_MAX_FILE_SIZE = 2**30
    before = snapshot()

    response = client.post(VERSIONS, {"type": "model", **body}, format="json")

    assert response.status_code == status, response.content
    assert any(key == field or key.startswith(f"{field}.") for key in response.json()["errors"]), response.json()
    assert snapshot() == before


def test_a_digest_mismatch_is_refused_and_leaves_no_blob_object_or_temporary_file(client, store):
    create(client, files=[file_entry("a.bin", WEIGHTS)])
    before = snapshot()

    by_path = put_file(client, "v0", "a.bin", WEIGHTS[:-1] + b"X")
    by_digest = put_blob(client, sha(WEIGHTS), CONFIG)

    assert by_path.status_code == 400 and by_path.json()["code"] == "digest_mismatch"
    assert by_digest.status_code == 400 and "sha256" in by_digest.json()["errors"]
    assert snapshot() == before
    assert stored_objects(store) == [] and temp_files(store) == []


def test_upload_sizes_are_checked_before_the_body_is_read(client, settings, store):
    settings.ARTIFACT_MAX_FILE_SIZE = 100
    create(client, files=[file_entry("c.json", CONFIG)])
    before = snapshot()

    too_large = put_blob(client, sha(WEIGHTS), WEIGHTS)
    no_length = put_blob(client, sha(CONFIG), CONFIG, CONTENT_LENGTH="")
    not_declared = put_file(client, "v0", "c.json", CONFIG + b"!")
    bad_digest = put_blob(client, "not-a-digest", CONFIG)
    unknown_path = put_file(client, "v0", "other.json", CONFIG)

    assert too_large.status_code == 413 and too_large.json()["code"] == "too_large"
    assert no_length.status_code == 411
    assert not_declared.status_code == 400 and "Content-Length" in not_declared.json()["errors"]
    assert bad_digest.status_code == 400 and "sha256" in bad_digest.json()["errors"]
    assert unknown_path.status_code == 404
    assert snapshot() == before
    assert stored_objects(store) == [] and temp_files(store) == []


def test_a_body_shorter_than_its_content_length_stores_nothing(client, store):
    response = put_blob(client, sha(WEIGHTS), WEIGHTS[:100], CONTENT_LENGTH=str(len(WEIGHTS)))

    assert response.status_code == 400 and response.json()["code"] == "incomplete_body"
    assert Blob.objects.count() == 0 and stored_objects(store) == [] and temp_files(store) == []


# --- Clean-up -------------------------------------------------------------------------------------------


def age(queryset, seconds: float) -> None:
    queryset.update(created_at=timezone.now() - timedelta(seconds=seconds))


def test_the_clean_up_removes_expired_pending_versions_and_unused_blobs_past_their_grace(client, settings, store):
    settings.ARTIFACT_PENDING_MAX_AGE = 3600
    settings.ARTIFACT_BLOB_GRACE = 600
    create(client, files=[file_entry("kept.bin", WEIGHTS)])  # v0: committed, keeps its blob
    put_file(client, "v0", "kept.bin", WEIGHTS)
    commit(client)
    create(client, files=[file_entry("c.json", CONFIG)])  # v1: pending and expired: its blob goes with it
    put_file(client, "v1", "c.json", CONFIG)
    create(client, files=[file_entry("t", TOKENIZER)])  # v2: pending, young: keeps its blob
    put_file(client, "v2", "t", TOKENIZER)
    young = b"uploaded a minute ago, no version yet"
    put_blob(client, sha(young), young)
    age(Blob.objects.exclude(sha256=sha(young)), 3600)
    age(ArtifactVersion.objects.filter(index=1), 7200)

    found = artifacts_clean()  # the task beat runs (CELERY_BEAT_SCHEDULE["artifacts-clean"])

    assert found == {"pending_versions": 1, "blobs": 1, "stale_uploads": 0}
    assert sorted(ArtifactVersion.objects.values_list("index", flat=True)) == [0, 2]
    assert set(Blob.objects.values_list("sha256", flat=True)) == {sha(WEIGHTS), sha(TOKENIZER), sha(young)}
    assert len(stored_objects(store)) == 3
    assert client.get(f"{VERSIONS}v0/files/kept.bin").status_code == 200
    assert settings.CELERY_BEAT_SCHEDULE["artifacts-clean"]["task"] == "registry.tasks.artifacts_clean"


def test_the_clean_up_removes_temporary_files_of_uploads_whose_process_died(store):
    store["incoming"].mkdir(parents=True)
    (store["incoming"] / "upload-dead").write_bytes(b"x")
    (store["incoming"] / "upload-live").write_bytes(b"x")
    os.utime(store["incoming"] / "upload-dead", (time.time() - 7200, time.time() - 7200))

    assert blobs.stale_uploads_remove() == 1
    assert temp_files(store) == ["upload-live"]


@pytest.mark.django_db(transaction=True)
def test_a_blob_collected_while_a_client_was_told_it_is_stored_makes_the_commit_409_not_a_broken_version(
    store, settings
):
    """The race: the client logs a version naming a file the team stores (nothing to upload) while the clean-up
    finds that blob unused — the version's entries are not committed yet, so it cannot see them."""
    settings.ARTIFACT_BLOB_GRACE = 0
    admin = f.make_user("root")
    team = f.make_team("acme", admin=admin)
    project = f.make_project(team, "training")
    client = f.api_client(admin)
    create(client, files=[file_entry("a.bin", WEIGHTS)])
    put_file(client, "v0", "a.bin", WEIGHTS)
    commit(client)
    client.delete(f"{VERSIONS}v0/")  # the blob is now unused
    told: list = []

    def clean_up() -> None:
        try:
            blobs.blobs_collect()
        finally:
            connection.close()

    with transaction.atomic():
        version = manifests.artifact_version_log(
            project=project,
            collection_name="classifier",
            type="model",
            user=admin,
            files=[file_entry("a.bin", WEIGHTS)],
        )
        told.extend(selectors.manifest_missing(artifact_version=version))
        worker = threading.Thread(target=clean_up)
        worker.start()
        worker.join(timeout=20)

    assert told == []  # the client was told there is nothing to upload
    assert not Blob.objects.exists() and stored_objects(store) == []
    response = commit(client, "v1")
    assert response.status_code == 409 and "a.bin" in response.json()["detail"]
    assert ArtifactVersion.objects.get(index=1).state == VersionState.PENDING
    put_file(client, "v1", "a.bin", WEIGHTS)
    assert commit(client, "v1").status_code == 200


def test_settings_document_every_artifact_variable():
    readme = (Path(settings.BASE_DIR) / "README.md").read_text()
    example = (Path(settings.BASE_DIR) / ".env.example").read_text()
    names = [
        "ARTIFACT_STORAGE", "ARTIFACT_STORAGE_DIR", "ARTIFACT_UPLOAD_TEMP_DIR", "ARTIFACT_S3_BUCKET",
        "ARTIFACT_S3_ENDPOINT_URL", "ARTIFACT_S3_REGION", "ARTIFACT_S3_ACCESS_KEY_ID", "ARTIFACT_S3_SECRET_ACCESS_KEY",
        "ARTIFACT_S3_PREFIX", "ARTIFACT_S3_ADDRESSING_STYLE", "ARTIFACT_MAX_FILE_SIZE", "ARTIFACT_MAX_ENTRIES",
        "ARTIFACT_DOWNLOAD_REDIRECT", "ARTIFACT_DOWNLOAD_URL_EXPIRY", "ARTIFACT_PENDING_MAX_AGE",
        "ARTIFACT_BLOB_GRACE", "ARTIFACT_CLEAN_INTERVAL",
    ]  # fmt: skip
    assert [n for n in names if f"`{n}`" not in readme] == []
    assert [n for n in names if f"#{n}=" not in example] == []


@pytest.mark.parametrize(
    ("body", "content_type", "status"),
    [
        (b"[]", "application/json", 400),
        (b'{"force": true}', "application/json", 400),
        (b"{oops", "application/json", 400),
        (b"commit", "text/plain", 415),
    ],
)
def test_commit_takes_no_body_and_refuses_one_without_committing(client, body, content_type, status):
    create(client, files=[file_entry("w/model.bin", WEIGHTS)])
    put_file(client, "v0", "w/model.bin", WEIGHTS)
    before = snapshot()

    response = client.generic("POST", f"{VERSIONS}v0/commit/", body, content_type=content_type)

    assert response.status_code == status, response.content
    assert snapshot() == before
    assert client.post(f"{VERSIONS}v0/commit/", {}, format="json").status_code == 200
