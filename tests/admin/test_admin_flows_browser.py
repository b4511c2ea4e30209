"""The admin's flows in a real browser (see tests/admin/browser.py), each ending on a screenshot in tests/output/."""

from __future__ import annotations

import hashlib
import io
from datetime import timedelta

import pytest
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.utils import timezone

from alerts import grouping
from alerts.choices import AlertKind
from alerts.services import Happened, occurrences_record
from automations import services as automations
from automations.models import Delivery, Webhook
from core.roles import Role
from harness.receiver import Receiver
from harness.util import wait_until
from launch import services as launch
from launch.models import RunQueueItem
from registry import blobs, manifests, outbox, services
from registry.models import ApiToken, ArtifactVersion, Event
from secrets_vault import services as vault
from secrets_vault.models import Secret
from tests.factories import (
    add_member,
    link,
    make_artifact_version,
    make_project,
    make_registered_model,
    make_team,
    make_user,
)

from .browser import SECRET_VALUE, TOKEN_VALUE

pytest_plugins = ["tests.admin.browser_fixtures"]
pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def busy_team(settings):
    """A team with something on every list, named the way real teams name things (long), with the longest values
    each column can hold: a digest, a URL, a failing webhook's error, a finished run."""
    settings.WEBHOOK_ALLOWED_NETWORKS = ["127.0.0.1/32"]
    root = make_user("root", superuser=True)
    admin_user = make_user("ada-lovelace-admin", staff=True)
    team = make_team("computer-vision-research", admin=root)
    add_member(team, admin_user, Role.ADMIN)
    model = make_registered_model(team, name="image-classifier-resnet50-finetuned")
    training = make_project(team, "training-experiments-2026")
    vault.secret_create(team=team, name="SLACK_SIGNING_SECRET_PRODUCTION", value=SECRET_VALUE, user=root)
    webhook = automations.webhook_create(
        team=team, name="slack-release-notifications", user=root, secret="SLACK_SIGNING_SECRET_PRODUCTION",
        url="http://127.0.0.1:9/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX?channel=ml-releases",
    )  # fmt: skip
    Webhook.objects.filter(pk=webhook.pk).update(last_error="Connection refused by 127.0.0.1:9 " * 8)
    automations.automation_create(
        team=team, user=root, name="notify slack when production moves", event_type="ADD_ARTIFACT_ALIAS",
        action_type="WEBHOOK", webhook=webhook.pk, payload={"text": "${artifact_version_string}"},
        registered_model=model.name, alias_regex="production|staging",
    )  # fmt: skip
    version = link(model, user=root, aliases=["production", "staging-candidate-2026-12"])
    ArtifactVersion.objects.update(digest=hashlib.sha256(b"weights").hexdigest())
    # A committed version with files and a reference, one pending, and an automation watching their collection
    weights = b"\x00" * 3_000_000
    blobs.blob_receive(team=team, sha256=hashlib.sha256(weights).hexdigest(), size=len(weights),
                       stream=io.BytesIO(weights))  # fmt: skip
    for commit in (True, False):
        logged = manifests.artifact_version_log(
            project=training, collection_name="image-classifier-resnet50-finetuned-checkpoints", type="model",
            user=root, files=[{"path": "checkpoints/epoch-0042/model-weights-fp16-sharded-00001-of-00008.safetensors",
                               "size": len(weights), "sha256": hashlib.sha256(weights).hexdigest()}],
            references=[{"path": "data/train.parquet", "size": 7 << 30, "sha256": hashlib.sha256(b"t").hexdigest(),
                         "uri": "s3://computer-vision-research-datasets/imagenet/train/shard-00000-of-01024.parquet"}],
        )  # fmt: skip
        if commit:
            manifests.artifact_version_commit(artifact_version=logged)
            services.artifact_tag_add(artifact_version=logged, name="reviewed-by-ml-platform-team-2026", user=root)
    services.protected_alias_add(team=team, name="production", user=root)
    automations.automation_create(
        team=team, user=root, name="notify slack of new classifier checkpoints", event_type="CREATE_ARTIFACT",
        action_type="WEBHOOK", webhook=webhook.pk, payload={"files": "${artifact_files_url}"},
        project=training.name, collection="image-classifier-resnet50-finetuned-checkpoints",
    )  # fmt: skip
    for event in Event.objects.filter(model_version=version):
        outbox.event_dispatch(event_id=event.pk)
    Delivery.objects.filter(pk=Delivery.objects.first().pk).update(
        status="retrying", attempts=10, last_status_code=503, next_attempt_at=timezone.now()
    )
    job = launch.job_create(team=team, name="evaluate-on-holdout-set", project="training-experiments-2026")
    job_version = launch.job_version_create(
        job=job, entrypoint=["python", "-m", "evaluation.run", "--holdout", "--batch-size", "512", "--report-to=slack"]
    )
    queue = launch.run_queue_create(team=team, name="gpu-a100-large-batch")
    agent, _ = launch.agent_create(team=team, name="gpu-box-01.cluster.internal", queues=[queue.name])
    item = launch.item_enqueue(queue=queue, job_version=job_version, destination_project=job.project)
    RunQueueItem.objects.filter(pk=item.pk).update(
        state="failed", agent=agent, attempts=3, exit_code=137, automation_name="evaluate when staging moves"
    )
    services.api_token_create(user=admin_user, name="ci-pipeline-release-token")
    Group.objects.create(name="release-managers")
    occurrences_record(
        Happened(team_id=team.pk, kind=AlertKind.DELIVERY_FAILED, subject_id=webhook.pk, subject_name=webhook.name,
                 at=timezone.now(), detail={"delivery": str(Delivery.objects.first().pk), "error": "HTTP 503" * 20})
        for _ in range(1200)
    )  # fmt: skip
    grouping.alerts_group(now=timezone.now() + timedelta(hours=1))
    return root, team


@pytest.mark.parametrize("username", ["root", "ada-lovelace-admin"])
def test_every_changelist_fits_a_1280_pixel_window(admin_tab, busy_team, username):
    """Each list with rows, as a superuser (every filter) and as a team admin, has nothing to scroll sideways."""
    admin_tab.login(username)
    wide, seen = {}, 0
    for model in admin.site._registry:
        opts = model._meta
        page = admin_tab.goto(f"/admin/{opts.app_label}/{opts.model_name}/")
        if page.locator("#result_list").count() == 0:
            assert username != "root", f"{opts.model_name}: no rows to measure"
            continue  # not this user's to see
        seen += 1
        admin_tab.screenshot(f"changelist-{username}-{opts.app_label}-{opts.model_name}")
        if overflow := admin_tab.sideways_overflow():
            wide[opts.model_name] = overflow
    assert wide == {}
    assert seen >= (len(admin.site._registry) if username == "root" else 15)


# --- The flows --------------------------------------------------------------------------------------------


@pytest.fixture
def vision(settings):
    """Team vision: admin ada, member max, viewer vic; a registered model with v0 (production) and v1."""
    settings.WEBHOOK_ALLOWED_NETWORKS = ["127.0.0.1/32"]
    ada = make_user("ada", staff=True)
    team = make_team("vision", admin=ada)
    add_member(team, make_user("max", staff=True), Role.MEMBER)
    add_member(team, make_user("vic", staff=True), Role.VIEWER)
    model = make_registered_model(team, name="classifier")
    link(model, user=ada, aliases=["production"])
    link(model, user=ada)
    for _ in range(2):
        make_artifact_version(team, collection="classifier")
    other = make_team("audio", admin=make_user("bella", staff=True))
    make_artifact_version(other, collection="speech-net")
    return team, model


def model_events(model) -> list[tuple[str, str, str]]:
    rows = Event.objects.filter(registered_model=model).order_by("created_at")
    return [(e.type, e.context.get("version", ""), e.alias) for e in rows]


def test_a_member_links_a_version_then_adds_moves_and_removes_aliases(admin_tab, vision):
    _, model = vision
    before = model_events(model)
    admin_tab.login("max")
    page = admin_tab.goto(f"/admin/registry/registeredmodel/{model.pk}/change/")

    # Link: the team's unlinked versions by name, never another team's
    page = admin_tab.click("#versions-group a.addlink")
    assert page.inner_text("h1") == "Link an artifact version to classifier"
    options = page.locator("#id_artifact option").all_inner_texts()
    assert [o for o in options if "-" not in o] == ["training/classifier:v3", "training/classifier:v2"]
    page.select_option("#id_artifact", label="training/classifier:v3")
    page.fill("#id_aliases", "staging, candidate")
    admin_tab.screenshot("flow-link-form")
    admin_tab.click("input[name=_save]")
    assert (
        page.url.endswith(f"/registeredmodel/{model.pk}/change/") and "was added successfully" in admin_tab.messages()
    )
    assert "training/classifier:v3" in page.inner_text("#versions-group")
    admin_tab.screenshot("flow-link-an-artifact-version")

    # Add an alias to v0
    page = admin_tab.click("#aliases-group a.addlink")
    page.select_option("#id_model_version", label="v0 · training/classifier:v0 · production")
    page.fill("#id_alias", "baseline")
    admin_tab.click("input[name=_save]")
    assert "baseline" in page.inner_text("#aliases-group")

    # Move production to v2 (its change page), then remove staging
    row = page.locator("#aliases-group tr.section-row", has_text="production")
    admin_tab.page.click("#aliases-group tr.section-row:has-text('production') a:has-text('Move')")
    page = admin_tab.seen()
    assert page.inner_text(".field-name .readonly") == "production"
    admin_tab.screenshot("flow-alias-move-form")
    page.select_option("#id_model_version", label="v2 · training/classifier:v3 · candidate, latest, staging")
    admin_tab.click("input[name=_save]")
    row = page.locator("#aliases-group tr.section-row", has_text="production")
    assert "v2" in row.inner_text()
    admin_tab.page.click("#aliases-group tr.section-row:has-text('staging') a:has-text('Remove')")
    page = admin_tab.seen()
    admin_tab.click("input[type=submit]")  # "Yes, I'm sure"
    assert "staging" not in page.inner_text("#aliases-group")

    # The events the API would have fired, each once
    assert model_events(model)[len(before) :] == [
        ("LINK_ARTIFACT", "v2", ""),
        ("ADD_ARTIFACT_ALIAS", "v2", "staging"),
        ("ADD_ARTIFACT_ALIAS", "v2", "candidate"),
        ("ADD_ARTIFACT_ALIAS", "v0", "baseline"),
        ("ADD_ARTIFACT_ALIAS", "v2", "production"),
        ("REMOVE_ARTIFACT_ALIAS", "v2", "staging"),
    ]
    # latest is the system's: no Move or Remove on its row
    latest = page.locator("#aliases-group tr.section-row", has_text="latest").inner_text()
    assert "Move" not in latest and "Remove" not in latest


def test_a_viewer_sees_versions_and_aliases_without_a_way_to_change_them(admin_tab, vision):
    _, model = vision
    admin_tab.login("vic")
    page = admin_tab.goto(f"/admin/registry/registeredmodel/{model.pk}/change/")
    assert "production" in page.inner_text("#aliases-group") and "v1" in page.inner_text("#versions-group")
    assert page.locator("#versions-group a.addlink, #aliases-group a.addlink, a:has-text('Move')").count() == 0
    page = admin_tab.goto(f"/admin/registry/modelversion/add/?registered_model={model.pk}")
    assert "403" in page.title() or "Forbidden" in page.content()
    admin_tab.goto(f"/admin/registry/registeredmodel/{model.pk}/change/")


def test_an_admin_adds_a_job_version_and_registers_an_agent_whose_token_shows_once(admin_tab, vision):
    team, _ = vision
    make_project(team, "evaluation")
    job = launch.job_create(team=team, name="evaluate", project="evaluation")
    launch.run_queue_create(team=team, name="gpu")
    launch.run_queue_create(team=team, name="cpu")
    admin_tab.login("ada")

    page = admin_tab.goto(f"/admin/launch/job/{job.pk}/change/")
    page = admin_tab.click("#versions-group a.addlink")
    page.fill("#id_entrypoint", '["python", "evaluate.py",')  # not JSON: refused, kept as typed
    page.fill("#id_default_config", '{"epochs": 3}')
    admin_tab.click("input[name=_save]")
    assert "Enter a valid JSON" in page.inner_text(".field-entrypoint .errorlist")
    assert page.input_value("#id_entrypoint") == '["python", "evaluate.py",'
    page.fill("#id_entrypoint", '["python", "evaluate.py", "--holdout"]')
    admin_tab.click("input[name=_save]")
    assert page.url.endswith(f"/job/{job.pk}/change/")
    assert "--holdout" in page.inner_text("#versions-group")
    admin_tab.screenshot("flow-add-a-job-version")

    page = admin_tab.goto("/admin/launch/agent/add/")
    page.fill("#id_name", "gpu-box-01")
    page.check("#id_queues label:has-text('gpu') input")
    admin_tab.screenshot("flow-agent-form")
    admin_tab.click("input[name=_save]")
    token = page.input_value("#agent-token")
    assert token.startswith("agt_") and "--queue gpu" in page.inner_text("#agent-command")
    assert launch.agent_authenticate(raw=token).name == "gpu-box-01"
    admin_tab.screenshot("flow-register-an-agent-token-page")
    admin_tab.forbidden.append(token)  # from here on, no page may show it
    page = admin_tab.click('a:has-text("The agent\'s page")')
    assert "gpu-box-01" in page.inner_text("#content") and token[:10] in page.inner_text("#content")
    admin_tab.goto("/admin/launch/agent/")


def test_a_user_revokes_their_own_api_token(admin_tab, vision):
    _, raw = services.api_token_create(user=get_user_model().objects.get(username="max"))
    services.api_token_create(user=get_user_model().objects.get(username="ada"))
    admin_tab.login("max")
    page = admin_tab.goto("/admin/registry/apitoken/")
    assert page.locator("#result_list tbody tr").count() == 1  # only max's own
    page = admin_tab.click("#result_list tbody tr th a")
    page = admin_tab.click("a.deletelink")
    page = admin_tab.click("input[type=submit]")
    assert "was deleted successfully" in admin_tab.messages()
    assert page.url.endswith("/admin/registry/apitoken/") and "0 api tokens" in page.inner_text("#changelist")
    assert services.api_token_use(raw=raw) is None
    assert ApiToken.objects.count() == 1


@pytest.mark.e2e
def test_redeliver_from_a_deliverys_page(admin_tab, vision, worker_factory):
    team, model = vision
    worker_factory(queues="events,deliveries", pool="threads", concurrency=2,
                   extra_env={"WEBHOOK_ALLOWED_NETWORKS": "127.0.0.1/32"})  # fmt: skip
    with Receiver() as receiver:
        webhook = automations.webhook_create(team=team, name="ci", url=receiver.url, user=None)
        automations.automation_create(
            team=team, user=None, name="notify", event_type="LINK_ARTIFACT", action_type="WEBHOOK",
            webhook=webhook.pk, payload={"v": "${artifact_version_string}"},
        )  # fmt: skip
        link(model)
        delivery = wait_until(lambda: Delivery.objects.filter(status="succeeded").first(), timeout=30,
                              message="the first delivery")  # fmt: skip
        admin_tab.login("ada")
        page = admin_tab.goto(f"/admin/automations/delivery/{delivery.pk}/change/")
        admin_tab.click("button.redeliver")
        assert "1 delivery queued again" in admin_tab.messages()
        wait_until(lambda: len(receiver.requests) == 2, timeout=30, message="the redelivery")
        assert receiver.requests[0].headers["webhook-id"] == receiver.requests[1].headers["webhook-id"]
        wait_until(lambda: Delivery.objects.filter(pk=delivery.pk, status="succeeded", attempts=2).exists(),
                   timeout=30, message="the redelivery to be recorded")  # fmt: skip
        page = admin_tab.goto(f"/admin/automations/delivery/{delivery.pk}/change/")
        assert page.locator("#attempt_log-group tbody tr.has_original").count() == 2


def test_the_webhook_test_page_shows_the_request_as_sent_with_secrets_masked(admin_tab, vision):
    team, _ = vision
    vault.secret_create(team=team, name="SIGNING", value=SECRET_VALUE, user=None)
    vault.secret_create(team=team, name="TOKEN", value=TOKEN_VALUE, user=None)
    with Receiver() as receiver:
        webhook = automations.webhook_create(
            team=team, name="ci", url=receiver.url, secret="SIGNING", access_token="TOKEN", user=None
        )
        admin_tab.login("ada")
        page = admin_tab.goto(f"/admin/automations/webhook/{webhook.pk}/test/")
        page.fill("#id_payload", '{"event": "${event_type}", "token": "${TOKEN}"}')
        admin_tab.click("input[name=_test]")
    (got,) = receiver.requests
    assert got.headers["Authorization"] == f"Bearer {TOKEN_VALUE}"
    headers = dict(
        row.split("\t", 1) for row in page.locator("#webhook-test-request-headers tbody tr").all_inner_texts()
    )
    assert headers["Authorization"] == "Bearer ••••••••" and headers["X-Wandb-Signature"] == "••••••••"
    assert headers["webhook-signature"] == "v1,••••••••" and headers["webhook-id"] == got.headers["webhook-id"]
    # The body as sent, secrets as ${NAME}
    assert page.inner_text("#webhook-test-request-body") == got.body.decode().replace(TOKEN_VALUE, "${TOKEN}")
    assert '"token":"${TOKEN}"' in page.inner_text("#webhook-test-request-body")


def test_a_registered_models_automations_include_the_team_wide_ones(admin_tab, vision):
    team, model = vision
    webhook = automations.webhook_create(team=team, name="ci", url="http://127.0.0.1:9/", user=None)
    for name, scope in (
        ("on classifier", {"registered_model": "classifier", "alias_regex": "^prod"}),
        ("team-wide", {}),
    ):
        automations.automation_create(
            team=team, user=None, name=name, event_type="ADD_ARTIFACT_ALIAS", action_type="WEBHOOK",
            webhook=webhook.pk, payload={"a": "${alias}"}, **scope,
        )  # fmt: skip
    admin_tab.login("ada")
    page = admin_tab.goto(f"/admin/registry/registeredmodel/{model.pk}/change/")
    rows = {text.split("\t")[0]: text for text in page.locator("#automations-group tr.section-row").all_inner_texts()}
    assert set(rows) == {"on classifier", "team-wide"}
    assert "this model" in rows["on classifier"] and "^prod" in rows["on classifier"]
    assert "every model (team-wide)" in rows["team-wide"] and "any alias" in rows["team-wide"]
    page.locator("#automations-group").scroll_into_view_if_needed()


def test_a_secret_needs_a_value_on_create_and_keeps_it_when_left_blank(admin_tab, vision):
    team, _ = vision
    admin_tab.login("ada")
    page = admin_tab.goto(f"/admin/registry/team/{team.pk}/change/")
    page = admin_tab.click("#secrets-group a.addlink")
    assert "never shown again" in page.inner_text(".field-value")
    page.fill("#id_name", "SLACK_TOKEN")
    admin_tab.click("input[name=_save]")
    assert "This field is required." in page.inner_text(".field-value .errorlist")
    page.fill("#id_value", SECRET_VALUE)
    admin_tab.click("input[name=_save]")
    page = admin_tab.click("#secrets-group a:has-text('SLACK_TOKEN')")
    assert "Leave blank to keep it" in page.inner_text(".field-value")
    admin_tab.click("input[name=_save]")
    assert "was changed successfully" in admin_tab.messages()
    secret = Secret.objects.get(name="SLACK_TOKEN")
    assert vault.secret_values(team=team, names=["SLACK_TOKEN"]) == {"SLACK_TOKEN": SECRET_VALUE}
    admin_tab.goto(f"/admin/secrets_vault/secret/{secret.pk}/change/")


def test_a_refused_automation_payload_keeps_its_formatting(admin_tab, vision):
    team, _ = vision
    automations.webhook_create(team=team, name="ci", url="http://127.0.0.1:9/", user=None)
    typed = '{\n    "text":    "${nope}",\n\n    "n": 1.50\n}'
    admin_tab.login("ada")
    page = admin_tab.goto("/admin/automations/automation/add/")
    page.select_option("#id_event_type", "LINK_ARTIFACT")
    page.select_option("#id_action_type", "WEBHOOK")
    page.select_option("#id_webhook", label="ci")
    page.fill("#id_payload", typed)
    page.fill("#id_name", "notify")
    admin_tab.click("input[name=_save]")
    assert "nope" in page.inner_text(".field-payload .errorlist")
    assert page.input_value("#id_payload") == typed
