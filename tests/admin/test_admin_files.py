"""An artifact version's files in the admin: listed with their sizes and digests, downloadable through the API's file
route with the admin's login (viewers included), its references listed and never fetched, nothing editable; and who
may see what."""

from __future__ import annotations

import hashlib
import io
import re
from dataclasses import dataclass

import pytest
from django.urls import reverse
from django.utils import formats, timezone

from core.roles import Role
from registry import blobs, manifests, services
from registry.admin import ArtifactFileSection
from registry.models import ArtifactVersion, RegisteredModel, Team
from tests.factories import add_member, make_project, make_registered_model, make_team, make_user, registry_snapshot

from .test_admin_flows import page_of, section

pytestmark = pytest.mark.django_db

WEIGHTS = bytes(range(256)) * 4096  # 1 MiB
CONFIG = b'{"layers": 50}'
NOTES = b"Fine-tuned on the 2026 holdout set.\n"
NOT_UPLOADED = b"bytes nobody sent"
TRAIN_DATA_SIZE = 7 * 1024 * 1024


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def file_entry(path: str, data: bytes) -> dict:
    return {"path": path, "size": len(data), "sha256": sha(data)}


@dataclass
class Files:
    """Team vision: training/classifier v0 committed (three files, one reference) and linked to the registered model
    classifier, v1 pending (one of its two files stored); users of every role, and bella of team audio."""

    team: Team
    model: RegisteredModel
    committed: ArtifactVersion
    pending: ArtifactVersion
    admin: object
    member: object
    viewer: object
    root: object
    outsider: object


@pytest.fixture
def files() -> Files:
    admin = make_user("ada", staff=True)
    team = make_team("vision", admin=admin)
    member = add_member(team, make_user("max", staff=True), Role.MEMBER)
    viewer = add_member(team, make_user("vic", staff=True), Role.VIEWER)
    outsider = make_user("bella", staff=True)
    make_team("audio", admin=outsider)
    training = make_project(team, "training")
    for data in (WEIGHTS, CONFIG, NOTES):
        blobs.blob_receive(team=team, sha256=sha(data), size=len(data), stream=io.BytesIO(data))
    logged = manifests.artifact_version_log(
        project=training, collection_name="classifier", type="model", user=member,
        files=[file_entry("model/weights.bin", WEIGHTS), file_entry("config.json", CONFIG),
               file_entry("docs/read me ü.txt", NOTES)],
        references=[{"path": "data/train.parquet", "uri": "s3://vision-data/train/2026.parquet",
                     "size": TRAIN_DATA_SIZE, "sha256": sha(b"train")}],
    )  # fmt: skip
    committed, _ = manifests.artifact_version_commit(artifact_version=logged)
    pending = manifests.artifact_version_log(
        project=training, collection_name="classifier", type="model", user=member,
        files=[file_entry("config.json", CONFIG), file_entry("model/new.bin", NOT_UPLOADED)],
    )  # fmt: skip
    model = make_registered_model(team, "classifier")
    services.model_version_link(registered_model=model, artifact_version=committed, user=admin)
    root = make_user("root", superuser=True)
    return Files(team, model, committed, pending, admin, member, viewer, root, outsider)


def rows(html: str) -> list[str]:
    return html.split('class="section-row"')[1:]


def download_links(html: str) -> list[str]:
    return re.findall(r'<a class="download" href="([^"]+)" download>', html)


def field(html: str, name: str) -> str:
    start = html.index(f"field-{name}")
    return html[start : html.index("</div>", html.index('class="readonly"', start))]


# --- The version's page ---------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["admin", "member", "viewer", "root"])
def test_every_role_sees_a_versions_files_with_size_digest_and_download_link(client, files, role):
    client.force_login(getattr(files, role))
    response = client.get(page_of(files.committed))
    assert response.status_code == 200
    page = response.content.decode()
    listed = rows(section(page, "files"))
    assert [re.search(r"field-path\">([^<]*)<", row).group(1) for row in listed] == [
        "config.json", "docs/read me ü.txt", "model/weights.bin",
    ]  # fmt: skip
    weights = listed[2]
    assert "1.0\xa0MB <small>(1,048,576 bytes)</small>" in weights
    assert f'<code title="{sha(WEIGHTS)}">{sha(WEIGHTS)[:12]}…</code>' in weights
    kwargs = {"team": "vision", "project": "training", "collection": "classifier", "version": "v0"}
    assert download_links(section(page, "files")) == [
        reverse("artifact-version-file", kwargs={**kwargs, "path": path})
        for path in ("config.json", "docs/read me ü.txt", "model/weights.bin")
    ]
    assert "read%20me%20%C3%BC.txt" in download_links(page)[1]
    # The version itself: committed, when, its whole manifest digest, what it holds
    assert "Committed" in field(page, "state_shown")
    assert formats.localize(timezone.template_localtime(files.committed.committed_at)) in field(page, "committed_at")
    assert files.committed.digest in field(page, "digest")
    assert "3 files, 1 reference" in field(page, "contents")


def test_a_version_with_more_files_than_a_page_holds_shows_the_first_and_says_how_many(client, files, monkeypatch):
    monkeypatch.setattr(ArtifactFileSection, "rows_shown", 2)
    client.force_login(files.viewer)
    page = client.get(page_of(files.committed)).content.decode()
    shown = section(page, "files")
    assert len(rows(shown)) == 2 and "model/weights.bin" not in shown
    assert "The first 2 of 3 files (by path) are shown here" in shown
    assert "are shown here" not in section(page, "references") and len(rows(section(page, "references"))) == 1


def test_references_are_listed_with_uri_size_and_digest_and_no_download(client, files):
    client.force_login(files.viewer)
    page = client.get(page_of(files.committed)).content.decode()
    (reference,) = rows(section(page, "references"))
    assert "data/train.parquet" in reference and "<code>s3://vision-data/train/2026.parquet</code>" in reference
    assert "7.0\xa0MB <small>(7,340,032 bytes)</small>" in reference
    assert f'title="{sha(b"train")}"' in reference
    assert "never fetches" in section(page, "references") and not download_links(section(page, "references"))


@pytest.mark.parametrize("role", ["viewer", "admin"])
def test_the_download_link_gives_the_files_bytes_with_the_admins_login(client, files, role):
    client.force_login(getattr(files, role))
    links = download_links(client.get(page_of(files.committed)).content.decode())
    for link, data in zip(links, (CONFIG, NOTES, WEIGHTS), strict=True):
        response = client.get(link)
        assert response.status_code == 200
        assert b"".join(response.streaming_content) == data
        assert response["ETag"] == f'"{sha(data)}"' and response["Content-Length"] == str(len(data))
    assert 'filename="weights.bin"' in client.get(links[2])["Content-Disposition"]


def test_a_pending_version_says_which_files_are_missing_and_offers_no_download(client, files):
    client.force_login(files.member)
    page = client.get(page_of(files.pending)).content.decode()
    assert "Pending" in field(page, "state_shown") and "-" in field(page, "committed_at")
    config, new = rows(section(page, "files"))
    assert "config.json" in config and "uploaded; served once committed" in config
    assert "model/new.bin" in new and "not uploaded yet" in new
    assert not download_links(page)
    assert "No references." in section(page, "references")
    # Nor does the API serve it, should anyone build the address by hand
    url = reverse(
        "artifact-version-file",
        kwargs={"team": "vision", "project": "training", "collection": "classifier", "version": "v1",
                "path": "config.json"},
    )  # fmt: skip
    assert client.get(url).status_code == 409


def test_the_artifact_version_list_shows_state_and_number_of_files(client, files):
    file_less = services.artifact_version_create(
        project=files.committed.collection.project, collection_name="notes", type="dataset", user=None
    )
    client.force_login(files.viewer)
    page = client.get(reverse("admin:registry_artifactversion_changelist")).content.decode()
    committed, pending, empty = (
        page[page.index(f">{version.reference}<") :].split("</tr>")[0]
        for version in (files.committed, files.pending, file_less)
    )
    assert "Committed" in committed and "3 files, 1 reference" in committed
    assert 'class="state-pending">Pending' in pending and "2 files" in pending
    assert "Committed" in empty and "0 files" in empty
    pending_only = client.get(reverse("admin:registry_artifactversion_changelist"), {"state__exact": "pending"})
    assert [v.pk for v in pending_only.context["cl"].result_list] == [files.pending.pk]


def test_a_registered_models_versions_link_to_the_artifact_versions_files(client, files):
    client.force_login(files.viewer)
    page = client.get(page_of(files.model)).content.decode()
    (version,) = rows(section(page, "versions"))
    assert f'href="{page_of(files.committed)}">training/classifier:v0</a>' in version
    assert f'<a href="{page_of(files.committed)}#files-group">3 files, 1 reference</a>' in version
    assert 'id="files-group"' in client.get(page_of(files.committed)).content.decode()


# --- Nothing is editable; other teams see nothing -------------------------------------------------------


@pytest.mark.parametrize("role", ["viewer", "admin", "root"])
def test_nothing_about_a_version_or_its_files_changes_through_the_admin(client, files, role):
    client.force_login(getattr(files, role))
    page = client.get(page_of(files.committed)).content.decode()
    assert 'name="_save"' not in page and "deletelink" not in page
    inputs = re.findall(r"<(?:input|select|textarea)\b(?![^>]*type=\"hidden\")", section(page, "files"))
    assert inputs == []
    before = registry_snapshot()
    version = files.committed
    assert client.post(page_of(version), {"description": "changed", "files-TOTAL_FORMS": "0"}).status_code == 403
    delete = reverse("admin:registry_artifactversion_delete", args=[version.pk])
    assert client.post(delete, {"post": "yes"}).status_code == 403
    assert client.get(reverse("admin:registry_artifactversion_add")).status_code == 403
    response = client.post(
        reverse("admin:registry_artifactversion_changelist"),
        {"action": "delete_selected", "_selected_action": [version.pk], "post": "yes"},
    )
    assert response.status_code in (200, 302)
    assert registry_snapshot() == before


def test_another_teams_user_sees_neither_the_version_nor_its_files(client, files):
    client.force_login(files.outsider)
    response = client.get(page_of(files.committed))
    assert response.status_code == 302 and response.url == reverse("admin:index")
    listing = client.get(reverse("admin:registry_artifactversion_changelist")).content.decode()
    assert "classifier" not in listing
    client.force_login(files.viewer)
    link = download_links(client.get(page_of(files.committed)).content.decode())[0]
    client.force_login(files.outsider)
    assert client.get(link).status_code == 404


def test_a_user_without_a_login_gets_no_file(client, files):
    client.force_login(files.viewer)
    link = download_links(client.get(page_of(files.committed)).content.decode())[0]
    client.logout()
    assert client.get(link).status_code in (401, 403)
    assert client.get(page_of(files.committed)).status_code == 302


def test_a_create_artifact_events_page_names_its_artifact_version_not_a_registered_model(client, files):
    client.force_login(files.viewer)
    created = files.committed.events.get(type="CREATE_ARTIFACT")
    page = client.get(page_of(created)).content.decode()
    assert f'href="{page_of(files.committed)}">vision/training/classifier:v0</a>' in field(page, "artifact_version")
    assert "classifier" not in field(page, "registered_model_name")
    linked = files.model.events.get(type="LINK_ARTIFACT")
    page = client.get(page_of(linked)).content.decode()
    assert "classifier" in field(page, "registered_model_name")
    assert f'href="{page_of(files.committed)}"' in field(page, "artifact_version")
