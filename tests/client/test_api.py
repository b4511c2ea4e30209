"""The Python API end to end: log, link, aliases, resolve, download and listings against the live server."""

from __future__ import annotations

import hashlib
import json
import os
import socket

import pytest
from registry_client import (
    BadRequest,
    ConfigError,
    Conflict,
    NotAuthorized,
    NotFound,
    Reference,
    Registry,
    ServerUnreachable,
)

from automations import services as automations
from core.roles import Role
from registry import services
from registry.models import ArtifactVersion as ArtifactVersionRow
from registry.models import Blob, Project

from ..factories import add_member, make_team, make_user
from .conftest import deploy_automation, dispatch_all, write_tree

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

MODEL = os.urandom(300_000)
PARAMS = b'{"lr": 0.1}'


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def canonical(entries: list[dict]) -> str:
    text = json.dumps(sorted(entries, key=lambda e: e["path"]), sort_keys=True, separators=(",", ":"))
    return sha(text.encode())


def test_logging_a_folder_uploads_each_new_content_once_then_commits(registry, account, tmp_path):
    source = write_tree(tmp_path / "out", {"model.bin": MODEL, "config/params.json": PARAMS, "copy/model.bin": MODEL})
    before = registry.transport.requests_made

    version = registry.log_artifact(
        source, project="training", name="classifier", metadata={"accuracy": 0.95}, description="first"
    )

    assert version.committed
    assert version.reference == f"{account.team.name}/training/classifier:v0"
    assert {f.path: (f.size, f.sha256) for f in version.files} == {
        "config/params.json": (len(PARAMS), sha(PARAMS)),
        "copy/model.bin": (len(MODEL), sha(MODEL)),
        "model.bin": (len(MODEL), sha(MODEL)),
    }
    assert version.digest == canonical([{"path": f.path, "sha256": f.sha256, "size": f.size} for f in version.files])
    assert version.metadata == {"accuracy": 0.95}
    assert [e.type for e in version.events] == ["CREATE_ARTIFACT"]
    # the log, one upload per distinct content (the copy shares model.bin's), the commit
    assert registry.transport.requests_made - before == 4
    assert sorted(Blob.objects.filter(team=account.team).values_list("sha256", flat=True)) == sorted(
        [sha(MODEL), sha(PARAMS)]
    )

    before = registry.transport.requests_made
    again = registry.log_artifact(source, project="training", name="classifier")
    assert (again.version, again.digest, again.committed) == ("v1", version.digest, True)
    assert registry.transport.requests_made - before == 2  # nothing uploaded: the log and the commit


def test_a_single_file_is_logged_with_references_that_are_never_fetched(registry, tmp_path):
    (tmp_path / "weights.pt").write_bytes(MODEL)
    digest = "ab" * 32
    version = registry.log_artifact(
        tmp_path / "weights.pt",
        project="training",
        name="classifier",
        file_name="model/weights.pt",
        references=[
            Reference(path="data/train.parquet", uri="s3://datasets/train.parquet", size=52, sha256=digest),
            f"path=data/eval.parquet,uri=https://127.0.0.1:9/never/fetched,size=7,sha256={digest}",
        ],
    )

    assert [f.path for f in version.files] == ["model/weights.pt"]
    assert [(r.path, r.uri) for r in version.references] == [
        ("data/eval.parquet", "https://127.0.0.1:9/never/fetched"),
        ("data/train.parquet", "s3://datasets/train.parquet"),
    ]
    result = registry.download(version.reference, tmp_path / "got")
    assert result.written == ["model/weights.pt"]
    assert [r.uri for r in result.references] == ["https://127.0.0.1:9/never/fetched", "s3://datasets/train.parquet"]
    assert sorted(p.name for p in (tmp_path / "got").rglob("*")) == ["model", "weights.pt"]


def test_a_references_only_version_commits_at_once(registry):
    version = registry.log_artifact(
        None, project="training", name="dataset", type="dataset",
        references=[{"path": "train", "uri": "gs://bucket/train", "size": 1, "sha256": "0" * 64}],
    )  # fmt: skip
    assert version.committed and version.files == [] and [e.type for e in version.events] == ["CREATE_ARTIFACT"]


def test_logging_into_a_new_project_makes_it(registry, account, tmp_path):
    (tmp_path / "m.bin").write_bytes(b"m")
    version = registry.log_artifact(tmp_path / "m.bin", project="tuning", name="classifier")
    assert version.reference == f"{account.team.name}/tuning/classifier:v0"
    assert Project.objects.filter(team=account.team, name="tuning").exists()
    with pytest.raises(NotFound):
        registry.log_artifact(tmp_path / "m.bin", project="elsewhere", name="c", create_project=False)


def test_link_makes_the_registered_model_and_aliases_move_between_versions(registry, tmp_path):
    (tmp_path / "m.bin").write_bytes(b"v0")
    first = registry.log_artifact(tmp_path / "m.bin", project="training", name="classifier")
    (tmp_path / "m.bin").write_bytes(b"v1")
    second = registry.log_artifact(tmp_path / "m.bin", project="training", name="classifier")

    v0 = registry.link(first.reference, "classifier", aliases=["staging"])
    assert (v0.registered_model, v0.version, v0.aliases) == ("classifier", "v0", ["latest", "staging"])
    assert [(e.type, e.alias) for e in v0.events] == [("LINK_ARTIFACT", None), ("ADD_ARTIFACT_ALIAS", "staging")]
    v1 = registry.link(second.reference, "classifier")
    assert [e.type for e in v1.events] == ["LINK_ARTIFACT"]

    moved = registry.move_alias("classifier:v1", "staging")
    assert moved.aliases == ["latest", "staging"]
    assert [(e.type, e.alias) for e in moved.events] == [("ADD_ARTIFACT_ALIAS", "staging")]
    assert registry.model_version("classifier:v0").aliases == []
    assert registry.model_version("classifier:staging").version == "v1"
    assert registry.add_alias("classifier:staging", "staging").events == []  # already there: nothing fired

    registry.remove_alias("classifier", "staging")
    with pytest.raises(NotFound):
        registry.model_version("classifier:staging")
    with pytest.raises(NotFound):
        registry.link(first.reference, "other-model", create_model=False)


def test_tags_go_on_the_artifact_version_and_show_on_its_model_versions(registry, tmp_path):
    (tmp_path / "m.bin").write_bytes(b"v0")
    version = registry.log_artifact(tmp_path / "m.bin", project="training", name="classifier")
    registry.link(version.reference, "classifier", aliases=["production"])

    tagged = registry.add_tag("model-registry/classifier:production", "reviewed")

    assert (tagged.reference, tagged.tags) == (version.reference, ["reviewed"])
    assert [(e.type, e.tag) for e in tagged.events] == [("ADD_ARTIFACT_TAG", "reviewed")]
    assert registry.add_tag(version.reference, "reviewed").events == []  # already there: nothing fired
    assert registry.model_version("classifier:production").tags == ["reviewed"]
    assert registry.resolve(version.reference).tags == ["reviewed"]
    with pytest.raises(BadRequest, match="Invalid tag"):
        registry.add_tag(version.reference, "not a tag")

    registry.remove_tag(version.reference, "reviewed")
    assert registry.model_version("classifier:v0").tags == []
    assert [e.tag for e in registry.events() if e.type == "REMOVE_ARTIFACT_TAG"] == ["reviewed"]
    with pytest.raises(NotFound):
        registry.remove_tag(version.reference, "reviewed")


def test_every_form_of_a_reference_resolves_to_the_same_version(registry, account, tmp_path):
    (tmp_path / "m.bin").write_bytes(b"m")
    version = registry.log_artifact(tmp_path / "m.bin", project="training", name="classifier")
    registry.link(version.reference, "classifier", aliases=["production"])
    team = account.team.name

    for reference in (
        f"{team}/training/classifier:v0",
        "training/classifier:v0",
        "training/classifier",
        f"{team}/model-registry/classifier:production",
        "model-registry/classifier:v0",
        version.uri,
    ):
        resolved = registry.resolve(reference)
        assert (resolved.id, resolved.reference) == (version.id, version.reference), reference
        assert [f.path for f in resolved.files] == ["m.bin"]


def test_download_checks_each_file_and_leaves_files_already_there_alone(registry, tmp_path):
    source = write_tree(tmp_path / "out", {"model.bin": MODEL, "config/params.json": PARAMS})
    version = registry.log_artifact(source, project="training", name="classifier")
    target = tmp_path / "model"

    first = registry.download(version.reference, target)
    assert first.written == ["config/params.json", "model.bin"] and first.unchanged == []
    assert (target / "model.bin").read_bytes() == MODEL
    assert (target / "config" / "params.json").read_bytes() == PARAMS
    assert not (target / ".registry-partial").exists()

    before = registry.transport.requests_made
    second = registry.download(version.reference, target)
    assert second.written == [] and second.unchanged == ["config/params.json", "model.bin"]
    assert registry.transport.requests_made - before == 1  # the resolve alone

    (target / "model.bin").write_bytes(b"edited here")
    third = registry.download(version.reference, target, file="model.bin")
    assert third.written == ["model.bin"] and (target / "model.bin").read_bytes() == MODEL
    with pytest.raises(NotFound, match="no file"):
        registry.download(version.reference, target, file="nothing.bin")


def test_a_pending_version_is_neither_downloaded_nor_linked(registry, account):
    versions = f"/teams/{account.team.name}/projects/training/artifacts/classifier/versions/"
    pending = registry.transport.json(
        "POST", versions, json={"type": "model", "files": [{"path": "m.bin", "size": 1, "sha256": "1" * 64}]}
    )
    assert pending["state"] == "pending"
    with pytest.raises(Conflict, match="pending"):
        registry.download(f"training/classifier:{pending['version']}", "unused")
    with pytest.raises(Conflict) as refused:
        registry.link(f"training/classifier:{pending['version']}", "classifier")
    assert refused.value.status == 409


def test_refusals_are_typed_and_name_the_field(registry, account, tmp_path):
    (tmp_path / "m.bin").write_bytes(b"m")
    with pytest.raises(BadRequest) as refused:
        registry.log_artifact(tmp_path / "m.bin", project="training", name="classifier", type="t" * 100)
    assert (refused.value.status, refused.value.field) == (400, "type")
    assert ArtifactVersionRow.objects.count() == 0
    with pytest.raises(NotFound) as missing:
        registry.resolve("training/nothing:v3")
    assert missing.value.status == 404

    stranger = Registry(url=account.url, token="not-a-token", team=account.team.name)
    with stranger, pytest.raises(NotAuthorized) as unauthorised:
        stranger.resolve("training/classifier:v0")
    assert unauthorised.value.status == 401
    viewer = add_member(account.team, role=Role.VIEWER)
    _, viewer_token = services.api_token_create(user=viewer)
    read_only = Registry(url=account.url, token=viewer_token, team=account.team.name)
    with read_only, pytest.raises(NotAuthorized) as forbidden:
        read_only.log_artifact(tmp_path / "m.bin", project="training", name="classifier")
    assert forbidden.value.status == 403


def test_a_server_that_cannot_be_reached_is_its_own_error(account):
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with Registry(url=f"http://127.0.0.1:{port}", token=account.token, team="t") as registry:
        registry.transport.backoff = 0.01
        with pytest.raises(ServerUnreachable, match=f"127.0.0.1:{port}") as unreachable:
            registry.resolve("training/classifier:v0")
    assert account.token not in str(unreachable.value)


def test_settings_come_from_the_environment_and_the_default_team_is_the_only_one(account, monkeypatch):
    with pytest.raises(ConfigError, match="REGISTRY_URL"):
        Registry()
    monkeypatch.setenv("REGISTRY_URL", account.url + "/api/v1/")
    monkeypatch.setenv("REGISTRY_TOKEN", account.token)
    with Registry() as registry:
        assert registry.team == account.team.name
        assert account.token not in repr(registry) + repr(registry.transport)
    make_team(admin=make_user())
    services.membership_set(team=make_team(), username=account.user.username, role=Role.MEMBER)
    with Registry() as registry, pytest.raises(ConfigError, match="Which team"):
        registry.team  # noqa: B018


def test_listings_of_events_automations_deliveries_and_items(registry, account, tmp_path):
    (tmp_path / "m.bin").write_bytes(b"m")
    version = registry.log_artifact(tmp_path / "m.bin", project="training", name="classifier")
    linked = registry.link(version.reference, "classifier", aliases=["staging"])

    events = registry.events()
    assert [e.type for e in events] == ["ADD_ARTIFACT_ALIAS", "LINK_ARTIFACT", "CREATE_ARTIFACT"]  # newest first
    assert {e.id for e in events[:2]} == {e.id for e in linked.events}
    assert [e.type for e in registry.events(type="LINK_ARTIFACT")] == ["LINK_ARTIFACT"]
    assert registry.event(linked.events[0].id).artifact == version.reference
    assert registry.events(limit=1)[0].type == "ADD_ARTIFACT_ALIAS"
    assert registry.automations() == []
    assert registry.deliveries(event=linked.events[0].id) == []
    assert registry.items(event=linked.events[0].id) == []


def test_an_automation_is_listed_with_its_filter(registry, account, settings):
    settings.WEBHOOK_ALLOWED_NETWORKS = ["127.0.0.1/32"]
    webhook = automations.webhook_create(team=account.team, user=None, name="ci", url="http://127.0.0.1:9/hook")
    accurate = {"artifact_metadata.accuracy": {"$gte": 0.9}}
    automations.automation_create(
        team=account.team, user=None, name="accurate", event_type="ADD_ARTIFACT_ALIAS", alias_regex="^prod",
        filter=accurate, action_type="WEBHOOK", webhook=webhook.pk, payload={"a": 1},
    )  # fmt: skip

    (listed,) = registry.automations()

    assert (listed.alias_regex, listed.filter) == ("^prod", accurate)


# --- Automations: runs by hand, history, preview ------------------------------------------------------------


def test_a_run_by_hand_is_a_manual_event_for_that_automation_and_shows_in_its_history(registry, account, classifier_v0):
    deploy = deploy_automation(account, throttle_runs=1, throttle_window=3600)
    moved = registry.add_alias("classifier:v0", "production")
    dispatch_all()

    fired = registry.run_automation(deploy.pk, "classifier:production")
    dispatch_all()

    (event_ref,) = fired
    assert (event_ref.type, event_ref.alias, event_ref.manual) == ("ADD_ARTIFACT_ALIAS", "production", True)
    event = registry.event(event_ref.id)
    assert (event.manual, event.automation) == (True, deploy.pk)
    assert (moved.events[0].manual, registry.event(moved.events[0].id).automation) == (False, None)
    runs = registry.automation_runs(deploy.pk)
    # newest first; the run by hand is outside the throttle (one an hour)
    assert [(r.event, r.manual, r.outcome) for r in runs] == [
        (event_ref.id, True, "delivery"), (moved.events[0].id, False, "delivery")
    ]  # fmt: skip
    # an alias event names its version by the alias
    assert runs[0].version == f"{account.team.name}/model-registry/classifier:production" and runs[0].delivery_status
    assert registry.automation_runs(deploy.pk, outcome="skipped") == []
    (listed,) = registry.automations()
    assert (listed.throttle_runs, listed.throttle_window) == (1, 3600)


def test_a_run_by_hand_is_refused_for_a_disabled_automation_and_a_missing_version(registry, account, classifier_v0):
    deploy = deploy_automation(account)

    with pytest.raises(BadRequest) as no_version:
        registry.run_automation(deploy.pk, "classifier:v9", alias="production")
    with pytest.raises(BadRequest) as no_alias:
        registry.run_automation(deploy.pk, "classifier:v0")
    automations.automation_update(automation=deploy, enabled=False)
    with pytest.raises(Conflict, match="disabled") as disabled:
        registry.run_automation(deploy.pk, "classifier:v0", alias="production")

    assert (no_version.value.field, no_alias.value.field, disabled.value.status) == ("version", "alias", 409)
    assert registry.automation_runs(deploy.pk) == []


def test_a_preview_renders_the_body_against_a_past_event_with_secrets_masked(registry, account, classifier_v0):
    deploy = deploy_automation(account)
    first = registry.add_alias("classifier:v0", "production").events[0]
    (latest,) = registry.run_automation(deploy.pk, "v0", alias="production")

    preview = registry.preview_automation(deploy.pk)
    chosen = registry.preview_automation(deploy.pk, event=first.id)

    body = f'{{"v":"{account.team.name}/model-registry/classifier:production","token":"${{TOKEN}}"}}'
    assert (preview.event, preview.event_type, preview.body, preview.config) == (
        latest.id, "ADD_ARTIFACT_ALIAS", body, None
    )  # fmt: skip
    assert (chosen.event, chosen.body) == (first.id, body)
    assert "s3cr3t-value" not in json.dumps(preview.raw)
    with pytest.raises(BadRequest) as wrong_event:
        registry.preview_automation(deploy.pk, event="not-an-event")
    assert wrong_event.value.field == "event"
