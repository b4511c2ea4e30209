"""Alerts: what records them (a delivery failed for good, a webhook disabled, a lease lapsed), how a burst folds into
one alert and one message, and how notices reach a real mail server and a real operational webhook on loopback."""

from __future__ import annotations

import base64
import json
from datetime import timedelta
from urllib.parse import quote

import pytest
import standardwebhooks
from django.utils import timezone

from alerts import grouping, notify
from alerts.choices import AlertKind, Channel, NoticeStatus
from alerts.models import Alert, Notice, Occurrence
from alerts.services import Happened, occurrences_record
from automations import services
from harness.receiver import Receiver, Reply
from harness.smtp import MailServer
from harness.util import free_port
from launch import services as launch
from launch.models import RunQueueItem
from registry.models import Membership
from secrets_vault import services as vault
from tests.factories import add_member, make_project, make_team, make_user
from tests.unit.test_delivery_path import attempt, pending_deliveries, team_with_hooks

pytestmark = pytest.mark.django_db

OPS_SECRET = "whsec_" + base64.b64encode(b"operational alerts key 0123456789").decode()
TOKEN = 'tok"en\\with-quote-and-naïve-7f3e'


@pytest.fixture
def loopback(settings):
    settings.WEBHOOK_ALLOWED_NETWORKS = ["127.0.0.1/32"]
    settings.ALERT_GROUP_WAIT = 30
    settings.ALERT_GROUP_MAX_WAIT = 600


@pytest.fixture
def mail(settings):
    with MailServer() as server:
        settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
        settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", server.port
        settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
        settings.EMAIL_HOST_USER = settings.EMAIL_HOST_PASSWORD = ""
        yield server


def failed(team, webhook, n: int, *, at=None, error: str = "HTTP 400") -> None:
    at = at or timezone.now()
    occurrences_record(
        Happened(
            team_id=team.pk, kind=AlertKind.DELIVERY_FAILED, subject_id=webhook.pk, subject_name=webhook.name, at=at,
            detail={"delivery": f"d{i:04}", "automation": "notify", "destination": "http://127.0.0.1:9",
                    "attempts": 4, "error": error},
        )
        for i in range(n)
    )  # fmt: skip


def flush(after: float = 31) -> int:
    """The beat's flush, ``after`` seconds from now."""
    later = timezone.now() + timedelta(seconds=after)
    grouping.alerts_group(now=later)
    return notify.notices_send(now=later)


# --- What records an occurrence ---------------------------------------------------------------------------------


def test_a_delivery_failing_for_good_records_one_occurrence_and_a_retry_none(loopback):
    with Receiver(Reply(503), Reply(400)) as receiver:
        team, _, (webhook,) = team_with_hooks(receiver.url)
        first, second = pending_deliveries(webhook, 2)
        attempt(webhook, [str(first.pk), str(second.pk)])
    (occurrence,) = Occurrence.objects.all()  # the 503 is retried: nothing to tell yet
    assert (occurrence.team_id, occurrence.kind, occurrence.subject_id) == (team.pk, "delivery.failed", webhook.pk)
    assert occurrence.detail["delivery"] == str(second.pk) and occurrence.detail["error"] == "HTTP 400"
    assert occurrence.detail["destination"] == f"http://127.0.0.1:{receiver.port}"


def test_a_410_disables_the_webhook_and_records_it_once(loopback):
    with Receiver(Reply(410)) as receiver:
        _team, _, (webhook,) = team_with_hooks(receiver.url)
        batch = pending_deliveries(webhook, 3)
        attempt(webhook, [str(d.pk) for d in batch])
    kinds = sorted(Occurrence.objects.values_list("kind", flat=True))
    # The first answer disables it; the rest of the batch fails unsent, each a failed delivery.
    assert kinds == ["delivery.failed"] * 3 + ["webhook.disabled"]
    disabled = Occurrence.objects.get(kind="webhook.disabled")
    assert "410 Gone" in disabled.detail["reason"] and disabled.subject_name == webhook.name
    assert services.webhook_disable(webhook_id=webhook.pk, reason="again") is False  # already: no second alert


def test_a_webhook_disabled_by_an_admin_is_not_an_alert(loopback):
    _team, _, (webhook,) = team_with_hooks("http://127.0.0.1:9/")
    services.webhook_update(webhook=webhook, enabled=False)
    assert not Occurrence.objects.exists()


def test_an_agent_lost_holding_items_records_one_occurrence_per_item():
    team = make_team()
    make_project(team, "evaluation")
    job = launch.job_create(team=team, name="evaluate", project="evaluation")
    version = launch.job_version_create(job=job, entrypoint=["python", "eval.py"])
    queue = launch.run_queue_create(team=team, name="gpu")
    agent, _ = launch.agent_create(team=team, name="gpu-box-1", queues=["gpu"])
    for _ in range(2):
        launch.item_enqueue(queue=queue, job_version=version, destination_project=make_project(team, "evaluation"))
        launch.item_claim(agent=agent, queue_name="gpu")
    RunQueueItem.objects.update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    assert launch.items_expire_leases() == 2
    lost = list(Occurrence.objects.order_by("pk"))
    assert [(o.kind, o.subject_id, o.subject_name) for o in lost] == [("agent.lost", agent.pk, "gpu-box-1")] * 2
    assert {o.detail["queue"] for o in lost} == {"gpu"} and all("queued again" in o.detail["outcome"] for o in lost)


# --- Grouping ------------------------------------------------------------------------------------------------------


def test_a_thousand_failed_deliveries_are_one_alert_and_one_email(loopback, mail):
    admin = make_user()
    team = make_team(admin=admin)
    other_admin = add_member(team, role="admin")
    add_member(team, role="member")  # members are not e-mailed
    webhook = services.webhook_create(team=team, name="ci", url="http://127.0.0.1:9/", user=admin)
    failed(team, webhook, 1000)

    assert flush() == 1
    (alert,) = Alert.objects.all()
    assert (alert.kind, alert.count, alert.subject_name) == ("delivery.failed", 1000, "ci")
    assert len(alert.samples) == grouping.SAMPLES and not Occurrence.objects.exists()
    (message,) = mail.messages
    assert sorted(message["To"].split(", ")) == sorted([admin.email, other_admin.email])
    assert message["Subject"] == f"[registry] {team.name}: 1,000 deliveries of webhook ci failed for good"
    body = message.get_content()
    assert "d0000, d0001, d0002 and 997 more" in body and "last error: HTTP 400" in body
    assert f"/admin/automations/webhook/{webhook.pk}/recover/" in body
    assert flush(after=3600) == 0 and len(mail.messages) == 1  # nothing left to tell


def test_a_burst_is_sent_once_quiet_or_once_its_oldest_is_too_old(loopback, mail, settings):
    team = make_team()
    webhook = services.webhook_create(team=team, name="ci", url="http://127.0.0.1:9/", user=None)
    now = timezone.now()
    failed(team, webhook, 5, at=now - timedelta(seconds=20))
    failed(team, webhook, 5, at=now - timedelta(seconds=5))
    assert grouping.alerts_group(now=now) == []  # still coming in
    assert grouping.alerts_group(now=now + timedelta(seconds=26)) != []  # quiet for 30 s
    assert Alert.objects.get().count == 10

    # An outage that never pauses is still told about, ALERT_GROUP_MAX_WAIT after it began.
    for second in range(0, 600, 20):
        failed(team, webhook, 1, at=now + timedelta(seconds=second))
    assert grouping.alerts_group(now=now + timedelta(seconds=590)) == []
    assert len(grouping.alerts_group(now=now + timedelta(seconds=601))) == 1
    assert list(Alert.objects.order_by("created_at").values_list("count", flat=True)) == [10, 30]


def test_occurrences_written_after_the_fold_are_counted_in_the_next_burst(loopback):
    team = make_team()
    webhook = services.webhook_create(team=team, name="ci", url="http://127.0.0.1:9/", user=None)
    failed(team, webhook, 3, at=timezone.now() - timedelta(seconds=60))
    grouping.alerts_group(now=timezone.now())
    failed(team, webhook, 2)
    grouping.alerts_group(now=timezone.now() + timedelta(seconds=31))
    assert sorted(Alert.objects.values_list("count", flat=True)) == [2, 3]


def test_one_email_per_team_holds_every_alert_of_its_burst(loopback, mail):
    team = make_team()
    webhook = services.webhook_create(team=team, name="ci", url="http://127.0.0.1:9/", user=None)
    other = make_team()
    failed(team, webhook, 3)
    failed(other, services.webhook_create(team=other, name="cd", url="http://127.0.0.1:9/", user=None), 1)
    occurrences_record(
        [Happened(team_id=team.pk, kind=AlertKind.WEBHOOK_DISABLED, subject_id=webhook.pk, subject_name="ci",
                  at=timezone.now(), detail={"reason": "The endpoint answered 410 Gone.", "destination": "x"})]
    )  # fmt: skip
    assert flush() == 2
    by_team = {m["Subject"].split(":")[0]: m for m in mail.messages}
    mine = by_team[f"[registry] {team.name}"]
    assert mine["Subject"].endswith("webhook ci was disabled (and 1 more)")  # the disabling first
    assert "3 deliveries of webhook ci failed for good" in mine.get_content()


def test_a_team_whose_admins_have_no_address_gets_no_email_but_keeps_its_alert(loopback, mail):
    admin = make_user()
    team = make_team(admin=admin)
    type(admin).objects.filter(pk=admin.pk).update(email="")
    failed(team, services.webhook_create(team=team, name="ci", url="http://127.0.0.1:9/", user=admin), 1)
    assert flush() == 0
    assert Alert.objects.count() == 1 and not Notice.objects.exists() and not mail.messages


# --- Sending ---------------------------------------------------------------------------------------------------


def ops_team(url: str):
    admin = make_user()
    team = make_team(admin=admin)
    vault.secret_create(team=team, name="OPS_SIGNING", value=OPS_SECRET, user=admin)
    vault.secret_create(team=team, name="OPS_TOKEN", value=TOKEN, user=admin)
    ops = services.webhook_create(
        team=team, name="pager", url=url, secret="OPS_SIGNING", access_token="OPS_TOKEN", alerts=True, user=admin
    )
    ci = services.webhook_create(team=team, name="ci", url="http://127.0.0.1:9/", user=admin)
    return team, ops, ci


def test_the_operational_webhook_gets_each_alert_signed_but_none_about_itself(loopback, mail):
    with Receiver() as receiver:
        team, ops, ci = ops_team(receiver.url)
        failed(team, ci, 1000)
        failed(team, ops, 2)  # its own failures go to the admins' e-mail only
        assert flush() == 2
        (got,) = receiver.requests
    body = standardwebhooks.Webhook(OPS_SECRET).verify(got.body, got.headers)
    assert got.headers["Authorization"] == f"Bearer {TOKEN}"
    assert body["type"] == "delivery.failed"
    data = body["data"]
    assert (data["team"], data["count"], data["webhook"]["name"], data["last_error"]) == (
        team.name,
        1000,
        "ci",
        "HTTP 400",
    )
    assert data["deliveries"] == [f"d{i:04}" for i in range(grouping.SAMPLES)]
    assert data["recover_url"].endswith(f"/admin/automations/webhook/{ci.pk}/recover/")
    notice = Notice.objects.get(channel=Channel.WEBHOOK)
    assert got.headers["webhook-id"] == str(notice.pk) and notice.status == NoticeStatus.SENT
    assert "pager" in mail.messages[0].get_content()  # the e-mail still tells of the operational webhook's own


def test_an_agent_lost_alert_names_the_agent_and_its_items(loopback, mail):
    with Receiver() as receiver:
        team, _, _ = ops_team(receiver.url)
        occurrences_record(
            Happened(team_id=team.pk, kind=AlertKind.AGENT_LOST, subject_id=7, subject_name="gpu-box-1",
                     at=timezone.now(), detail={"item": f"item-{i}", "queue": "gpu", "held": "running",
                                                "last_seen_at": None, "outcome": "Lease expired; queued again."})
            for i in range(2)
        )  # fmt: skip
        flush()
        (got,) = receiver.requests
    body = json.loads(got.body)
    assert body["type"] == "agent.lost" and body["data"]["agent"]["name"] == "gpu-box-1"
    assert [i["item"] for i in body["data"]["items"]] == ["item-0", "item-1"]
    assert mail.messages[0]["Subject"].endswith("agent gpu-box-1 went silent holding 2 items")


def test_an_operational_webhook_answering_500_is_retried_with_the_same_id(loopback, mail):
    with Receiver(Reply(500), Reply(204)) as receiver:
        team, _, ci = ops_team(receiver.url)
        failed(team, ci, 1)
        flush()
        notice = Notice.objects.get(channel=Channel.WEBHOOK)
        assert (notice.status, notice.attempts, notice.last_error) == ("retrying", 1, "HTTP 500")
        assert notice.next_attempt_at > timezone.now()
        assert notify.notices_send(now=timezone.now()) == 0  # not due yet
        assert notify.notices_send(now=notice.next_attempt_at) == 1
        first, second = receiver.requests
    assert first.headers["webhook-id"] == second.headers["webhook-id"] == str(notice.pk)
    assert Notice.objects.get(pk=notice.pk).status == "sent"


def test_a_mail_server_refusing_the_recipients_fails_the_notice_for_good(loopback, settings):
    with MailServer(refuse="550 5.1.1 mailbox unavailable") as mail:
        settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
        settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", mail.port
        team = make_team()
        failed(team, services.webhook_create(team=team, name="ci", url="http://127.0.0.1:9/", user=None), 1)
        flush()
    notice = Notice.objects.get()
    assert notice.status == "failed" and "SMTPRecipientsRefused" in notice.last_error and not mail.messages


def test_a_mail_server_that_is_down_is_retried_until_it_is_back(loopback, settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", free_port()
    settings.EMAIL_HOST_PASSWORD = "smtp-password-never-shown"
    team = make_team()
    failed(team, services.webhook_create(team=team, name="ci", url="http://127.0.0.1:9/", user=None), 1)
    flush()
    notice = Notice.objects.get()
    assert notice.status == "retrying" and "ConnectionRefusedError" in notice.last_error
    assert "smtp-password-never-shown" not in notice.last_error
    with MailServer() as mail:
        settings.EMAIL_PORT = mail.port
        settings.EMAIL_HOST_PASSWORD = ""
        assert notify.notices_send(now=notice.next_attempt_at) == 1
        assert len(mail.messages) == 1


def test_alerts_carry_no_secret_in_any_encoding(loopback, mail):
    """A failing endpoint whose URL holds a token, signed with a secret it echoes back: neither the e-mail nor the
    operational request carries either."""
    url_token = "urltoken-a9c2-never-in-an-alert"
    echoed = TOKEN + "-ci"
    with Receiver() as ops_receiver:
        team, _, _ = ops_team(ops_receiver.url)
        admin = Membership.objects.get(team=team).user
        vault.secret_create(team=team, name="CI_SIGNING", value=echoed, user=admin)
        with Receiver(Reply(400, body=json.dumps({"echo": echoed}).encode())) as ci_receiver:
            hook = services.webhook_create(
                team=team, name="deploy", url=f"{ci_receiver.url}?token={url_token}", secret="CI_SIGNING", user=admin
            )
            batch = pending_deliveries(hook, 2)
            attempt(hook, [str(d.pk) for d in batch])
            assert len(ci_receiver.requests) == 2
        flush()
        texts = [r.body.decode() for r in ops_receiver.requests] + [m.as_string() for m in mail.messages]
    assert len(texts) == 2 and all("deploy" in text for text in texts)
    for secret in (TOKEN, echoed, OPS_SECRET, url_token):
        for form in (secret, json.dumps(secret)[1:-1], quote(secret), base64.b64encode(secret.encode()).decode()):
            assert all(form not in text for text in texts), form


def test_a_notice_whose_retries_are_spent_fails_for_good(loopback, settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", free_port()
    settings.WEBHOOK_RETRY_SCHEDULE = [1]
    team = make_team()
    failed(team, services.webhook_create(team=team, name="ci", url="http://127.0.0.1:9/", user=None), 1)
    flush()
    notice = Notice.objects.get()
    assert notice.status == "retrying"
    notify.notices_send(now=notice.next_attempt_at)
    notice.refresh_from_db()
    assert (notice.status, notice.attempts, notice.next_attempt_at) == ("failed", 2, None)
    assert "gave up after 2 attempts" in notice.last_error
