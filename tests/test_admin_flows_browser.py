"""The admin's flows in a real browser (see tests/browser.py), each ending on a screenshot in tests/output/."""

from __future__ import annotations

import hashlib

import pytest
from django.contrib import admin
from django.contrib.auth.models import Group
from django.utils import timezone

from automations import services as automations
from automations.models import Delivery, Webhook
from launch import services as launch
from launch.models import RunQueueItem
from registry import outbox, services
from registry.choices import Role
from registry.models import ArtifactVersion, Event
from secrets_vault import services as vault

from .browser import SECRET_VALUE
from .factories import add_member, link, make_project, make_registered_model, make_team, make_user

pytest_plugins = ["tests.browser_fixtures"]
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
    make_project(team, "training-experiments-2026")
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
