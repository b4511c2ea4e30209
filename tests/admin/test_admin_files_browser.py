"""Model files and CREATE_ARTIFACT automations in the admin, in a real browser (see tests/admin/browser.py): a viewer
finds a version's files from its registered model and downloads one; an admin makes an automation that watches one
artifact collection. Each ends on a screenshot in tests/output/."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import pytest

from automations import services as automations
from automations.models import Automation
from core.roles import Role
from registry import blobs, manifests, services
from tests.factories import add_member, make_artifact_version, make_project, make_registered_model, make_team, make_user

pytest_plugins = ["tests.admin.browser_fixtures"]
pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

WEIGHTS = bytes(range(256)) * 2048 + b"\x00end"  # 512 KiB and a tail
CONFIG = b'{"architecture": "resnet50", "classes": 1000}'
LONG_PATH = "checkpoints/epoch-0042-step-0001337/model-weights-fp16-sharded-00001-of-00008.safetensors"
LONG_URI = (
    "s3://computer-vision-research-datasets/imagenet/2026-12/train/shard-00000-of-01024.parquet?versionId=3HL4kqtJ"
)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def vision(settings):
    """Team vision: admin ada, viewer vic; training/classifier v0 committed with files and a reference, linked to
    the registered model classifier; a webhook; team audio apart."""
    settings.WEBHOOK_ALLOWED_NETWORKS = ["127.0.0.1/32"]
    ada = make_user("ada", staff=True)
    team = make_team("vision", admin=ada)
    add_member(team, make_user("vic", staff=True), Role.VIEWER)
    training = make_project(team, "training")
    files = {"config.json": CONFIG, "model/weights.bin": WEIGHTS, LONG_PATH: CONFIG}
    for data in set(files.values()):
        blobs.blob_receive(team=team, sha256=sha(data), size=len(data), stream=io.BytesIO(data))
    logged = manifests.artifact_version_log(
        project=training, collection_name="classifier", type="model", user=ada,
        files=[{"path": path, "size": len(data), "sha256": sha(data)} for path, data in files.items()],
        references=[{"path": "data/train.parquet", "uri": LONG_URI, "size": 7 << 30, "sha256": sha(b"train")}],
    )  # fmt: skip
    version, _ = manifests.artifact_version_commit(artifact_version=logged)
    model = make_registered_model(team, "classifier")
    services.model_version_link(registered_model=model, artifact_version=version, user=ada)
    make_artifact_version(team, project="training", collection="detector")
    make_artifact_version(team, project="evaluation", collection="metrics")
    automations.webhook_create(team=team, name="ci", url="http://127.0.0.1:9/", user=None)
    make_artifact_version(make_team("audio", admin=make_user("bella", staff=True)), project="speech")
    return team, model, version


def test_a_viewer_finds_a_versions_files_and_downloads_one(admin_tab, vision):
    _, model, version = vision
    admin_tab.login("vic")
    page = admin_tab.goto(f"/admin/registry/registeredmodel/{model.pk}/change/")
    admin_tab.screenshot("flow-a-registered-models-versions-link-to-their-files")
    page = admin_tab.click("#versions-group a:has-text('3 files, 1 reference')")
    assert page.url.endswith(f"/admin/registry/artifactversion/{version.pk}/change/#files-group")
    assert page.inner_text(".field-state_shown .readonly") == "Committed"
    assert page.inner_text(".field-digest .readonly") == version.digest
    rows = page.locator("#files-group tr.section-row")
    assert rows.count() == 3
    weights = page.locator("#files-group tr.section-row", has_text="model/weights.bin")
    assert "512.0\xa0KB" in weights.inner_text() and "524,292 bytes" in weights.inner_text()
    assert weights.locator(".field-sha256_shown code").get_attribute("title") == sha(WEIGHTS)
    reference = page.locator("#references-group tr.section-row")
    assert LONG_URI in reference.inner_text() and "7.0\xa0GB" in reference.inner_text()
    assert reference.locator("a").count() == 0  # recorded, never fetched, not even by a click
    assert page.locator("input[name=_save], a.deletelink").count() == 0
    assert admin_tab.sideways_overflow() == 0  # a long path and URI break inside their columns

    with page.expect_download() as download:
        weights.locator("a.download").click()
    assert download.value.suggested_filename == "weights.bin"
    assert Path(download.value.path()).read_bytes() == WEIGHTS
    page.locator("#files-group").scroll_into_view_if_needed()


def test_an_admin_creates_a_create_artifact_automation_for_one_collection(admin_tab, vision):
    _, model, _ = vision
    admin_tab.login("ada")
    page = admin_tab.goto("/admin/automations/automation/add/")  # ada admins one team: straight to its form
    assert page.locator(".field-registered_model").is_visible() and page.locator(".field-project").is_hidden()

    page.select_option("#id_event_type", "CREATE_ARTIFACT")
    for hidden in ("registered_model", "alias_regex"):
        assert page.locator(f".field-{hidden}").is_hidden(), hidden
    assert page.locator(".field-project").is_visible() and page.locator(".field-collection").is_visible()
    assert page.locator("#id_project option").all_inner_texts()[1:] == ["evaluation", "training"]

    def offered() -> list[str]:
        return [o.inner_text() for o in page.locator("#id_collection option").all() if o.get_attribute("value")
                and not o.evaluate("o => o.hidden")]  # fmt: skip

    assert offered() == []  # no project: no collection to choose
    page.select_option("#id_project", label="training")
    assert offered() == ["classifier", "detector"]
    page.select_option("#id_collection", label="classifier")
    page.select_option("#id_project", label="evaluation")
    assert offered() == ["metrics"] and page.input_value("#id_collection") == ""
    page.select_option("#id_project", label="training")
    page.select_option("#id_collection", label="classifier")

    page.select_option("#id_action_type", "WEBHOOK")
    page.select_option("#id_webhook", label="ci")
    page.fill("#id_payload", '{"digest": "${artifact_digest}", "files": "${artifact_files_url}"}')
    page.click(".field-payload details summary")
    assert "${artifact_files_url}" in page.inner_text(".field-payload details")
    page.fill("#id_name", "new classifier checkpoints")
    admin_tab.screenshot("flow-create-artifact-automation-form")
    admin_tab.click("input[name=_save]")
    assert "was added successfully" in admin_tab.messages()

    automation = Automation.objects.get(name="new classifier checkpoints")
    assert (automation.project.name, automation.collection.name, automation.registered_model) == (
        "training", "classifier", None,
    )  # fmt: skip
    row = page.locator("#result_list tbody tr", has_text="new classifier checkpoints")
    assert "collection training/classifier" in row.inner_text()
    assert admin_tab.sideways_overflow() == 0

    # Not an automation about models: the registered model's section leaves it out
    page = admin_tab.goto(f"/admin/registry/registeredmodel/{model.pk}/change/")
    assert "new classifier checkpoints" not in page.inner_text("#automations-group")

    page = admin_tab.goto(f"/admin/automations/automation/{automation.pk}/change/")
    assert "collection training/classifier" in page.inner_text(".field-scope")
    assert page.locator(".field-registered_model").is_hidden() and page.locator(".field-collection").is_visible()
    assert page.locator("#id_collection option:checked").inner_text() == "classifier"
