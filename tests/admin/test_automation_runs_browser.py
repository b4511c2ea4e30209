"""An automation's page in a real browser: a throttle set on the form, a run by hand for the version that holds
production, the history showing it (manual) beside a run the throttle skipped, and a preview of the payload for a
chosen past event. Screenshots in tests/output/."""

from __future__ import annotations

import pytest

from automations import services as automations
from automations.models import Automation, AutomationRun, Delivery
from registry import services
from registry.models import Event
from secrets_vault import services as vault
from tests.factories import dispatch_all, link, make_registered_model, make_team, make_user

pytest_plugins = ["tests.admin.browser_fixtures"]
pytestmark = [pytest.mark.e2e, pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def deploy(settings):
    settings.WEBHOOK_ALLOWED_NETWORKS = ["127.0.0.1/32"]
    ada = make_user("ada", staff=True)
    team = make_team("vision", admin=ada)
    model = make_registered_model(team, "classifier")
    link(model, user=ada, aliases=["production"])
    link(model, user=ada, aliases=["staging"])
    dispatch_all()
    vault.secret_create(team=team, name="DEPLOY_TOKEN", value="very-secret-token-value", user=ada)
    webhook = automations.webhook_create(team=team, name="ci", url="http://127.0.0.1:9/dispatch", user=ada)
    return automations.automation_create(
        team=team, user=ada, name="deploy", event_type="ADD_ARTIFACT_ALIAS", registered_model="classifier",
        alias_regex="^prod", action_type="WEBHOOK", webhook=webhook.pk,
        payload={"ref": "${artifact_version_string}", "token": "${DEPLOY_TOKEN}"},
    )  # fmt: skip


def test_throttle_run_now_history_and_preview(admin_tab, deploy):
    admin_tab.login("ada")
    page = admin_tab.goto(f"/admin/automations/automation/{deploy.pk}/change/")
    page.fill("#id_throttle_runs", "1")
    admin_tab.click("input[name=_continue]")
    assert "needs both" in page.locator(".field-throttle_window .errorlist").inner_text()
    page.fill("#id_throttle_window", "3600")
    admin_tab.click("input[name=_continue]")
    assert "was changed successfully" in admin_tab.messages()
    deploy.refresh_from_db()
    assert (deploy.throttle_runs, deploy.throttle_window) == (1, 3600)

    # Two moves of production within the hour: the second is over the throttle.
    model = deploy.registered_model
    for version in (1, 0):
        services.alias_add(model_version=model.versions.get(index=version), name="production", user=None)
        dispatch_all()

    admin_tab.click("text=Run now")
    admin_tab.click("input[name=_run]")
    assert "This field is required" in page.locator(".field-version .errorlist").inner_text()
    page.fill("#id_version", "classifier:nightly")
    admin_tab.click("input[name=_run]")
    assert "has no version" in page.locator(".field-version .errorlist").inner_text()
    page.fill("#id_version", "classifier:production")
    admin_tab.click("input[name=_run]")
    assert "Run by hand: manual ADD_ARTIFACT_ALIAS event" in admin_tab.messages()
    dispatch_all()

    page = admin_tab.goto(f"/admin/automations/automation/{deploy.pk}/change/")
    history = page.locator("#runs-group")
    rows = history.locator("tbody tr")
    assert rows.count() == 3
    assert "manual" in rows.nth(0).inner_text() and "delivery" in rows.nth(0).inner_text().lower()
    assert "Throttled: 1 run in the last hour" in history.inner_text()
    admin_tab.screenshot("automation_history")
    assert list(AutomationRun.objects.values_list("manual", "outcome")) == [
        (True, "delivery"), (False, "skipped"), (False, "delivery"),
    ]  # fmt: skip

    admin_tab.click("text=Preview")
    body = page.locator(".automation-preview").inner_text()
    assert '"ref":"vision/model-registry/classifier:production"' in body and "${DEPLOY_TOKEN}" in body
    first = Event.objects.filter(type="ADD_ARTIFACT_ALIAS").order_by("created_at").first()
    page.select_option("#id_event", str(first.pk))
    admin_tab.click("#automation_preview_form input[type=submit]")
    assert page.locator(".automation-preview").is_visible()
    admin_tab.screenshot("automation_preview")
    deliveries = Delivery.objects.count()
    assert deliveries == 2  # the preview sent nothing

    Automation.objects.filter(pk=deploy.pk).update(enabled=False)
    page = admin_tab.goto(f"/admin/automations/automation/{deploy.pk}/run/")
    page.fill("#id_version", "classifier:production")
    admin_tab.click("input[name=_run]")
    assert "is disabled: enable it to run it" in page.locator("#content").inner_text()
    assert Delivery.objects.count() == deliveries
