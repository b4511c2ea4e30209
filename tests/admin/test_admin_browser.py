"""The seed's admin flows in a real browser: headless Chromium driven by Playwright, a live server on PostgreSQL,
a real Celery worker, a loopback receiver. Each test leaves a screenshot of its last page in tests/output/."""

from __future__ import annotations

import pytest
import requests

from automations import services as automations
from automations.models import Delivery
from core.roles import Role
from harness.receiver import Receiver
from harness.util import wait_until
from launch import services as launch
from registry import services as registry_services
from secrets_vault import services as vault
from secrets_vault.models import Secret
from tests.factories import (
    add_member,
    make_artifact_version,
    make_project,
    make_registered_model,
    make_team,
    make_user,
)

from .browser import SECRET_VALUE, TOKEN_VALUE

pytest_plugins = ["tests.admin.browser_fixtures"]
pytestmark = [pytest.mark.e2e, pytest.mark.browser, pytest.mark.django_db(transaction=True)]

WORKER = {"queues": "events,deliveries", "pool": "threads", "concurrency": 4}
WORKER_ENV = {"WEBHOOK_ALLOWED_NETWORKS": "127.0.0.1/32"}


@pytest.fixture
def team_admin(settings):
    settings.WEBHOOK_ALLOWED_NETWORKS = ["127.0.0.1/32"]
    user = make_user("ada", staff=True)
    team = make_team("vision", admin=user)
    model = make_registered_model(team, name="classifier")
    return user, team, model


def test_secret_webhook_test_automation_delivery_and_redelivery(admin_tab, team_admin, worker_factory, live_server):
    user, team, model = team_admin
    worker_factory(**WORKER, extra_env=WORKER_ENV)
    with Receiver() as receiver:
        admin_tab.login("ada")

        # Team settings: team secrets, then a webhook using them.
        page = admin_tab.goto(f"/admin/registry/team/{team.pk}/change/")
        assert page.locator("#secrets-group").is_visible() and page.locator("#webhooks-group").is_visible()
        for name, value in (("SLACK_SIGNING", SECRET_VALUE), ("SLACK_TOKEN", TOKEN_VALUE)):
            admin_tab.goto(f"/admin/registry/team/{team.pk}/change/")
            page = admin_tab.click("#secrets-group a.addlink")
            page.fill("#id_name", name)
            page.fill("#id_value", value)
            admin_tab.click("input[name=_save]")
            assert "was added successfully" in page.content()
        assert Secret.objects.filter(team=team).count() == 2

        admin_tab.goto(f"/admin/registry/team/{team.pk}/change/")
        page = admin_tab.click("#webhooks-group a.addlink")
        page.fill("#id_name", "slack")
        page.fill("#id_url", receiver.url)
        page.select_option("#id_secret", label="SLACK_SIGNING")
        page.select_option("#id_access_token", label="SLACK_TOKEN")
        admin_tab.click("input[name=_continue]")
        assert "was added successfully" in page.content()

        # Test it against the receiver and see its answer.
        page = admin_tab.click("a:has-text('Test webhook')")
        assert '"blocks"' in page.input_value("#id_payload")  # prefilled with the Slack example
        admin_tab.click("input[name=_test]")
        assert page.inner_text("#webhook-test-result .webhook-test-status") == "200"
        assert '{"ok":true}' in page.inner_text("#webhook-test-result .webhook-test-body")
        assert len(receiver.requests) == 1
        assert receiver.requests[0].headers["Authorization"] == f"Bearer {TOKEN_VALUE}"

        # An automation from the Slack preset, in the seed's order.
        page = admin_tab.goto("/admin/automations/automation/add/")
        page.select_option("#id_event_type", "LINK_ARTIFACT")
        page.select_option("#id_registered_model", label="classifier")
        page.select_option("#id_action_type", "WEBHOOK")
        assert page.locator("fieldset.action-launch").is_hidden()
        page.select_option("#id_webhook", label="slack")
        page.select_option("#id_preset", "slack")
        assert '"blocks"' in page.input_value("#id_payload")
        page.fill("#id_name", "notify slack")
        admin_tab.click("input[name=_save]")
        assert "was added successfully" in page.content()

        # Link a version through the API: the worker delivers it.
        _, token = registry_services.api_token_create(user=user)
        make_project(team, "training")
        version = make_artifact_version(team, project="training")
        response = requests.post(
            f"{live_server.url}/api/v1/teams/{team.name}/registered-models/{model.name}/versions/",
            json={"artifact": version.reference}, headers={"Authorization": f"Token {token}"}, timeout=10,
        )  # fmt: skip
        assert response.status_code == 201, response.text
        delivery = wait_until(
            lambda: Delivery.objects.filter(status="succeeded").first(), timeout=30, message="the delivery"
        )

        # See it succeed in the admin, then redeliver it.
        page = admin_tab.goto("/admin/automations/delivery/?status__exact=succeeded")
        assert page.locator("#result_list tbody tr").count() == 1
        page = admin_tab.click("#result_list tbody tr th a")
        assert "succeeded" in page.inner_text("#content") and page.locator(".field-payload_as_sent pre").is_visible()
        page = admin_tab.goto("/admin/automations/delivery/")
        page.check(f"input[name=_selected_action][value='{delivery.pk}']")
        page.select_option("select[name=action]", "redeliver")
        admin_tab.click("button[name=index]")
        assert "queued again" in page.content()
        wait_until(lambda: len(receiver.requests) == 3, timeout=30, message="the redelivery")
        delivery = wait_until(
            lambda: Delivery.objects.filter(pk=delivery.pk, status="succeeded", attempts=2).first(),
            timeout=30, message="the redelivery to succeed",
        )  # fmt: skip
        assert receiver.requests[1].headers["webhook-id"] == receiver.requests[2].headers["webhook-id"]
        page = admin_tab.goto(f"/admin/automations/delivery/{delivery.pk}/change/")
        assert page.locator("#attempt_log-group tbody tr.has_original").count() == 2


def test_a_launch_automation_shows_its_queue_on_the_registered_model(admin_tab, team_admin):
    _, team, model = team_admin
    make_project(team, "evaluation")
    launch.run_queue_create(team=team, name="gpu")
    job = launch.job_create(team=team, name="evaluate", project="evaluation")
    launch.job_version_create(job=job, entrypoint=["python", "evaluate.py"])
    launch.job_version_create(job=job, entrypoint=["python", "evaluate.py", "--fast"])
    automations.webhook_create(team=team, name="ci", url="http://127.0.0.1:9/", user=None)
    admin_tab.login("ada")

    page = admin_tab.goto(f"/admin/registry/registeredmodel/{model.pk}/change/")
    page = admin_tab.click("#automations-group a.addlink")
    assert page.input_value("#id_registered_model") == str(model.pk)
    page.select_option("#id_event_type", "ADD_ARTIFACT_ALIAS")
    assert page.locator(".field-alias_regex").is_visible()
    page.fill("#id_alias_regex", "staging")
    page.select_option("#id_action_type", "LAUNCH_JOB")
    assert page.locator("fieldset.action-webhook").is_hidden()
    page.select_option("#id_job", label="evaluate")
    page.select_option("#id_job_version", label="v1")
    page.fill("#id_overrides", '{"model": "${artifact_version_string}", "alias": "${alias}"}')
    page.select_option("#id_destination_project", label="evaluation")
    page.select_option("#id_queue", label="gpu")
    page.fill("#id_name", "evaluate on staging")
    admin_tab.click("input[name=_save]")
    assert "was added successfully" in page.content()

    page = admin_tab.goto(f"/admin/registry/registeredmodel/{model.pk}/change/")
    row = page.locator("#automations-group tr.section-row")
    assert row.count() == 1
    text = row.inner_text()
    for expected in ("evaluate on staging", "An alias is added", "Launch", "evaluate:v1", "gpu"):
        assert expected in text, (expected, text)

    # A bad variable is shown next to its field, naming it.
    page = admin_tab.click("#automations-group a.addlink")
    page.select_option("#id_event_type", "LINK_ARTIFACT")
    page.select_option("#id_action_type", "WEBHOOK")
    page.select_option("#id_webhook", label="ci")
    page.fill("#id_payload", '{"x": "${no_such_thing}"}')
    page.fill("#id_name", "broken")
    admin_tab.click("input[name=_save]")
    assert "no_such_thing" in page.inner_text(".field-payload .errorlist")


def test_a_team_admin_cannot_reach_another_teams_objects(admin_tab, team_admin):
    _, team, _ = team_admin
    other = make_team("audio", admin=make_user("bella", staff=True))
    theirs = vault.secret_create(team=other, name="AUDIO_KEY", value=SECRET_VALUE, user=None)
    hook = automations.webhook_create(
        team=other, name="audio-hook", url="http://127.0.0.1:9/", secret=theirs.name, user=None
    )
    mine = vault.secret_create(team=team, name="VISION_KEY", value=TOKEN_VALUE, user=None)
    viewer = make_user("vic", staff=True)
    add_member(team, viewer, Role.MEMBER)
    admin_tab.login("ada")

    for path in (
        f"/admin/automations/webhook/{hook.pk}/change/",
        f"/admin/secrets_vault/secret/{theirs.pk}/change/",
        f"/admin/registry/team/{other.pk}/change/",
        f"/admin/automations/webhook/{hook.pk}/test/",
    ):
        page = admin_tab.goto(path)
        assert "audio-hook" not in page.content() and "AUDIO_KEY" not in page.content(), path
        assert page.url == admin_tab.base + "/admin/" or "Not Found" in page.content(), path

    page = admin_tab.goto("/admin/automations/webhook/add/")
    assert [o for o in page.locator("#id_team option").all_inner_texts() if o.strip("-")] == ["vision"]
    assert "AUDIO_KEY" not in page.locator("#id_secret").inner_text()
    assert "VISION_KEY" in page.locator("#id_secret").inner_text()
    # A choice forged into the form is refused, not saved.
    page.evaluate(
        "([team, secret]) => {"
        " document.querySelector('#id_team').add(new Option('audio', team, true, true));"
        " document.querySelector('#id_secret').add(new Option('AUDIO_KEY', secret, true, true)); }",
        [str(other.pk), str(theirs.pk)],
    )
    page.fill("#id_name", "sneaky")
    page.fill("#id_url", "http://127.0.0.1:9/")
    admin_tab.click("input[name=_save]")
    assert "Select a valid choice" in page.inner_text("#content")
    assert not other.webhooks.filter(name="sneaky").exists()

    admin_tab.page.context.clear_cookies()
    admin_tab.login("vic")  # a member, not an admin: no secrets, no webhooks
    page = admin_tab.goto("/admin/")
    assert "Secrets" not in page.inner_text("#content") and "Webhooks" not in page.inner_text("#content")
    page = admin_tab.goto(f"/admin/secrets_vault/secret/{mine.pk}/change/")
    assert "VISION_KEY" not in page.content()
    assert all(SECRET_VALUE not in html and TOKEN_VALUE not in html for html in admin_tab.sources)
