"""Presets in a real browser: a team admin creates an automation from the Teams Workflows preset, and the form fills
in the Adaptive Card. Screenshot in tests/output/."""

from __future__ import annotations

import json

import pytest

from automations import services as automations
from automations.models import Automation
from automations.presets import preset_payload
from tests.factories import make_registered_model, make_team, make_user

pytest_plugins = ["tests.admin.browser_fixtures"]
pytestmark = [pytest.mark.e2e, pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_the_teams_workflows_preset_fills_in_an_adaptive_card(admin_tab, settings):
    settings.WEBHOOK_ALLOWED_NETWORKS = ["127.0.0.1/32"]
    ada = make_user("ada", staff=True)
    team = make_team("vision", admin=ada)
    make_registered_model(team, name="classifier")
    automations.webhook_create(team=team, name="teams", url="http://127.0.0.1:9/workflows", user=ada)
    admin_tab.login("ada")

    page = admin_tab.goto("/admin/automations/automation/add/")
    labels = page.locator("#id_preset option").all_inner_texts()
    assert "Microsoft Teams notification (Workflows)" in labels
    assert "Microsoft Teams notification (legacy connector, MessageCard)" in labels
    page.select_option("#id_event_type", "ADD_ARTIFACT_ALIAS")
    page.select_option("#id_registered_model", label="classifier")
    page.select_option("#id_action_type", "WEBHOOK")
    page.select_option("#id_webhook", label="teams")
    page.select_option("#id_preset", "microsoft_teams")
    assert json.loads(page.input_value("#id_payload")) == preset_payload("microsoft_teams")
    page.fill("#id_name", "tell the channel")
    admin_tab.click("input[name=_save]")
    assert "was added successfully" in page.content()
    assert Automation.objects.get(name="tell the channel").payload == preset_payload("microsoft_teams")
