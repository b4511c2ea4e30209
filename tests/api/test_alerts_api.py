"""GET teams/{team}/alerts/: a team admin reads what the team was alerted about and each message's fate."""

from __future__ import annotations

import pytest

from automations import services
from core.roles import Role
from harness.smtp import MailServer
from tests.factories import add_member, api_client, make_team, make_user
from tests.unit.test_alerts import failed, flush

pytestmark = pytest.mark.django_db


@pytest.fixture
def alerted(settings):
    settings.WEBHOOK_ALLOWED_NETWORKS = ["127.0.0.1/32"]
    settings.ALERT_GROUP_WAIT, settings.ALERT_GROUP_MAX_WAIT = 30, 600
    admin = make_user()
    team = make_team(admin=admin)
    failed(team, services.webhook_create(team=team, name="ci", url="http://127.0.0.1:9/", user=admin), 25)
    with MailServer() as mail:
        settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
        settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", mail.port
        flush()
    return admin, team


def test_a_team_admin_lists_alerts_with_their_messages(alerted):
    admin, team = alerted
    answer = api_client(admin).get(f"/api/v1/teams/{team.name}/alerts/")
    assert answer.status_code == 200
    (alert,) = answer.json()["results"]
    assert (alert["kind"], alert["count"], alert["summary"]) == (
        "delivery.failed",
        25,
        "25 deliveries of webhook ci failed for good",
    )
    (notice,) = alert["notices"]
    assert (notice["channel"], notice["to"], notice["status"]) == ("email", admin.email, "sent")
    only = api_client(admin).get(f"/api/v1/teams/{team.name}/alerts/?kind=agent.lost")
    assert only.json()["results"] == []


def test_an_unknown_kind_is_a_400_naming_the_filter(alerted):
    admin, team = alerted
    answer = api_client(admin).get(f"/api/v1/teams/{team.name}/alerts/?kind=everything")
    assert answer.status_code == 400 and list(answer.json()["errors"]) == ["kind"]


@pytest.mark.parametrize("role", [Role.MEMBER, Role.VIEWER])
def test_only_admins_read_alerts(alerted, role):
    _, team = alerted
    answer = api_client(add_member(team, role=role)).get(f"/api/v1/teams/{team.name}/alerts/")
    assert answer.status_code == 403
