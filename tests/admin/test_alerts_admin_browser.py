"""Alerts in a real browser: a team admin makes a webhook the team's operational webhook, and reads an alert and
the messages it sent. Screenshots in tests/output/."""

from __future__ import annotations

import pytest

from alerts.models import Alert
from automations.models import Webhook
from harness.receiver import Receiver
from harness.smtp import MailServer
from tests.factories import make_team, make_user
from tests.unit.test_alerts import failed, flush

pytest_plugins = ["tests.admin.browser_fixtures"]
pytestmark = [pytest.mark.e2e, pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_a_team_admin_turns_on_alerts_for_a_webhook_and_reads_what_was_sent(admin_tab, settings):
    settings.WEBHOOK_ALLOWED_NETWORKS = ["127.0.0.1/32"]
    settings.ALERT_GROUP_WAIT, settings.ALERT_GROUP_MAX_WAIT = 30, 600
    make_team("vision", admin=make_user("ada", staff=True))
    admin_tab.login("ada")
    with Receiver() as pager, MailServer() as mail:
        page = admin_tab.goto("/admin/automations/webhook/add/")
        page.select_option("#id_team", label="vision")
        page.fill("#id_name", "pager")
        page.fill("#id_url", pager.url)
        assert "operational alerts" in page.inner_text(".field-alerts")
        page.check("#id_alerts")
        admin_tab.click("input[name=_save]")
        webhook = Webhook.objects.get(name="pager")
        assert webhook.alerts

        settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
        settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", mail.port
        ci = Webhook.objects.create(team=webhook.team, name="ci", url="http://127.0.0.1:9/")
        failed(webhook.team, ci, 40)
        assert flush() == 2
        assert len(pager.requests) == 1 and len(mail.messages) == 1

    page = admin_tab.goto("/admin/alerts/alert/")
    assert "40 deliveries of webhook ci failed for good" in page.inner_text("#result_list")
    admin_tab.screenshot("alerts_list")
    page = admin_tab.goto(f"/admin/alerts/alert/{Alert.objects.get().pk}/change/")
    messages = page.inner_text(".inline-group")
    assert "pager" in messages and "ada@example.com" in messages and messages.count("sent") >= 2
    assert admin_tab.sideways_overflow() == 0
