"""A filter expression in a real browser: a team admin saves an automation that fires only for accurate versions,
sees a refusal naming the operator and path next to the filter (the text as typed kept), and finds the filter again
on the change page. Screenshot in tests/output/."""

from __future__ import annotations

import json

import pytest

from automations import services as automations
from automations.models import Automation
from tests.factories import make_registered_model, make_team, make_user

pytest_plugins = ["tests.admin.browser_fixtures"]
pytestmark = [pytest.mark.e2e, pytest.mark.browser, pytest.mark.django_db(transaction=True)]

BAD = '{"$and": [{"alias": {"$regex": "^prod"}},\n          {"artifact_metadata.accuracy": {"$gte": "high"}}]}'
GOOD = '{"$and": [{"alias": {"$regex": "^prod"}}, {"artifact_metadata.accuracy": {"$gte": 0.9}}]}'


def test_a_filter_is_refused_next_to_its_field_then_saved_and_shown_again(admin_tab, settings):
    settings.WEBHOOK_ALLOWED_NETWORKS = ["127.0.0.1/32"]
    ada = make_user("ada", staff=True)
    team = make_team("vision", admin=ada)
    make_registered_model(team, name="classifier")
    automations.webhook_create(team=team, name="ci", url="http://127.0.0.1:9/hook", user=ada)
    admin_tab.login("ada")

    page = admin_tab.goto("/admin/automations/automation/add/")
    page.select_option("#id_event_type", "ADD_ARTIFACT_ALIAS")
    page.select_option("#id_registered_model", label="classifier")
    assert page.locator(".field-filter").is_visible()
    assert "$regex" in page.locator(".field-filter").inner_text()  # the help lists the operators
    page.select_option("#id_action_type", "WEBHOOK")
    page.select_option("#id_webhook", label="ci")
    page.fill("#id_payload", '{"text": "${alias} is accurate"}')
    page.fill("#id_filter", BAD)
    page.fill("#id_name", "accurate prod")
    admin_tab.click("input[name=_save]")

    error = page.locator(".field-filter .errorlist").inner_text()
    assert '$and[1].artifact_metadata.accuracy.$gte: expects a number, got "high".' in error
    assert page.input_value("#id_filter") == BAD  # as typed, to be corrected
    assert not Automation.objects.exists()

    page.fill("#id_filter", GOOD)
    admin_tab.click("input[name=_save]")
    assert "was added successfully" in page.content()
    automation = Automation.objects.get(name="accurate prod")
    assert automation.filter == json.loads(GOOD)

    page = admin_tab.goto(f"/admin/automations/automation/{automation.pk}/change/")
    assert json.loads(page.input_value("#id_filter")) == json.loads(GOOD)
    assert admin_tab.sideways_overflow() == 0
