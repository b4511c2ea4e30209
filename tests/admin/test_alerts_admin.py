"""The alerts pages: a team admin sees their team's alerts and whether each message got through; no one else sees
them, and nobody edits them."""

from __future__ import annotations

import pytest
from django.urls import reverse

from alerts.models import Alert
from automations import services
from core.roles import Role
from harness.smtp import MailServer
from tests.factories import add_member, make_team, make_user
from tests.unit.test_alerts import failed, flush

pytestmark = pytest.mark.django_db


@pytest.fixture
def alerted(settings):
    settings.ALERT_GROUP_WAIT, settings.ALERT_GROUP_MAX_WAIT = 30, 600
    settings.WEBHOOK_ALLOWED_NETWORKS = ["127.0.0.1/32"]
    alice = make_user("alice", staff=True)
    team = make_team("team-a", admin=alice)
    other = make_team("team-b", admin=make_user("bella", staff=True))
    for owner in (team, other):
        failed(
            owner,
            services.webhook_create(team=owner, name=f"ci-{owner.name}", url="http://127.0.0.1:9/", user=None),
            12,
        )
    with MailServer(refuse="550 5.1.1 mailbox unavailable") as mail:
        settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
        settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", mail.port
        flush()
    return alice, team


def test_a_team_admin_sees_their_alerts_and_the_refused_email(client, alerted):
    alice, team = alerted
    client.force_login(alice)
    listing = client.get(reverse("admin:alerts_alert_changelist")).content.decode()
    assert "12 deliveries of webhook ci-team-a failed for good" in listing
    assert "ci-team-b" not in listing
    page = client.get(reverse("admin:alerts_alert_change", args=[Alert.objects.get(team=team).pk])).content.decode()
    assert "alice@example.com" in page and "SMTPRecipientsRefused" in page and ">failed<" in page
    assert "Save" not in page  # read-only


def test_members_and_other_teams_admins_do_not_see_them(client, alerted):
    _, team = alerted
    member = add_member(team, make_user(staff=True), role=Role.MEMBER)
    client.force_login(member)
    assert client.get(reverse("admin:alerts_alert_changelist")).status_code == 403
    client.force_login(make_user("bella2", staff=True))
    assert client.get(reverse("admin:alerts_alert_change", args=[Alert.objects.get(team=team).pk])).status_code in (
        302,
        403,
        404,
    )
