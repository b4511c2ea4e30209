"""Recover: every delivery to a webhook that failed for good since a time is sent again, with the same id, through
the deliveries queue, on PostgreSQL, Redis and a real receiver on loopback."""

from __future__ import annotations

import base64
import json
from datetime import timedelta

import pytest
from django.conf import settings
from django.utils import timezone

from automations import attempts, services
from automations.models import Delivery
from core.roles import Role
from harness.receiver import Receiver, Reply
from registry import outbox
from registry.models import Event
from tests.factories import add_member, api_client, link, make_registered_model, make_team, make_user

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def loopback(settings):
    settings.WEBHOOK_ALLOWED_NETWORKS = ["127.0.0.1/32"]


def queued(name: str) -> list[list]:
    import redis

    client = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    return [json.loads(base64.b64decode(json.loads(raw)["body"]))[0] for raw in client.lrange(name, 0, -1)]


def failed_deliveries(receiver: Receiver, events: int = 3):
    """A team whose webhook answered 400 (failed for good) to ``events`` links."""
    admin = make_user()
    team = make_team(admin=admin)
    model = make_registered_model(team)
    webhook = services.webhook_create(team=team, name="ci", url=receiver.url, user=admin)
    services.automation_create(
        team=team, user=admin, webhook=webhook.pk, name="notify", event_type="LINK_ARTIFACT", action_type="WEBHOOK",
        payload={"v": "${artifact_version_string}"},
    )  # fmt: skip
    for _ in range(events):
        assert outbox.event_dispatch(event_id=Event.objects.get(model_version=link(model)).pk)
    assert set(Delivery.objects.values_list("status", flat=True)) == {"failed"}
    return admin, team, webhook


def recover_url(team, webhook) -> str:
    return f"/api/v1/teams/{team.name}/webhooks/{webhook.pk}/recover/"


def test_failed_deliveries_since_a_time_are_sent_again_with_their_ids(loopback, purge_broker):
    with Receiver(Reply(400), Reply(400), Reply(400), Reply(200)) as receiver:
        admin, team, webhook = failed_deliveries(receiver)
        before = list(Delivery.objects.order_by("created_at"))
        Delivery.objects.filter(pk=before[0].pk).update(created_at=timezone.now() - timedelta(days=2))
        since = timezone.now() - timedelta(days=1)

        answer = api_client(admin).post(recover_url(team, webhook), {"since": since.isoformat()}, format="json")

        assert answer.status_code == 202, answer.content
        assert answer.json() == {"recovered": 2}
        statuses = dict(Delivery.objects.values_list("pk", "status"))
        assert statuses[before[0].pk] == "failed"  # older than since: left alone
        assert [statuses[d.pk] for d in before[1:]] == ["pending", "pending"]

        # One batch of the destination went to the deliveries queue; a worker's attempt sends both again.
        (task,) = queued("deliveries")
        ids, destination, team_id = task
        assert sorted(ids) == sorted(str(d.pk) for d in before[1:])
        attempts.deliveries_attempt(delivery_ids=ids, destination=destination, team_id=team_id)

    resent = receiver.requests[3:]
    assert sorted(r.headers["webhook-id"] for r in resent) == sorted(ids)
    assert Delivery.objects.get(pk=before[1].pk).attempts == 2  # the history is kept


@pytest.mark.parametrize(
    ("body", "field"),
    [({}, "since"), ({"since": "yesterday"}, "since"), ({"since": "2999-01-01T00:00:00Z"}, "since")],
)
def test_a_bad_time_is_refused_with_the_field_and_changes_nothing(loopback, purge_broker, body, field):
    with Receiver(Reply(400)) as receiver:
        admin, team, webhook = failed_deliveries(receiver, events=1)
    answer = api_client(admin).post(recover_url(team, webhook), body, format="json")
    assert answer.status_code == 400, answer.content
    assert field in json.dumps(answer.json())
    assert set(Delivery.objects.values_list("status", flat=True)) == {"failed"}
    assert queued("deliveries") == []


def test_a_disabled_webhook_must_be_enabled_first(loopback, purge_broker):
    with Receiver(Reply(400)) as receiver:
        admin, team, webhook = failed_deliveries(receiver, events=1)
    webhook.enabled = False
    webhook.save()
    answer = api_client(admin).post(recover_url(team, webhook), {"since": "2000-01-01T00:00:00Z"}, format="json")
    assert answer.status_code == 409, answer.content
    assert "enable it" in json.dumps(answer.json())
    assert set(Delivery.objects.values_list("status", flat=True)) == {"failed"}


def test_only_the_teams_admins_recover_and_only_their_webhooks(loopback, purge_broker):
    with Receiver(Reply(400)) as receiver:
        _, team, webhook = failed_deliveries(receiver, events=1)
    member = add_member(team, role=Role.MEMBER)
    outsider = make_user()
    make_team(admin=outsider)
    body = {"since": "2000-01-01T00:00:00Z"}

    assert api_client(member).post(recover_url(team, webhook), body, format="json").status_code == 403
    assert api_client(outsider).post(recover_url(team, webhook), body, format="json").status_code in (403, 404)
    assert set(Delivery.objects.values_list("status", flat=True)) == {"failed"}


# --- The admin -------------------------------------------------------------------------------------------


def admin_recover_url(webhook) -> str:
    from django.urls import reverse

    return reverse("admin:automations_webhook_recover", args=[webhook.pk])


def admin_logged_in(client, *, events: int):
    """``failed_deliveries``' team, its admin (staff) logged in to the admin; its webhook."""
    with Receiver(Reply(400)) as receiver:
        admin, _, webhook = failed_deliveries(receiver, events=events)
    admin.is_staff = True
    admin.save()
    client.force_login(admin)
    return webhook


def test_the_webhook_page_recovers_from_the_admin(client, loopback, purge_broker):
    webhook = admin_logged_in(client, events=2)

    page = client.get(admin_recover_url(webhook))
    assert page.status_code == 200
    assert "2 of its deliveries have failed for good in all" in page.content.decode()
    answer = client.post(admin_recover_url(webhook), {"since": "2000-01-01 00:00"}, follow=True)

    assert "2 failed deliveries are sent again." in answer.content.decode()
    assert set(Delivery.objects.values_list("status", flat=True)) == {"pending"}
    assert len(queued("deliveries")) == 1


def test_the_admin_shows_why_a_recover_was_refused(client, loopback, purge_broker):
    webhook = admin_logged_in(client, events=1)

    future = client.post(admin_recover_url(webhook), {"since": "2999-01-01 00:00"})
    assert future.status_code == 200 and "in the future" in future.content.decode()
    webhook.enabled = False
    webhook.save()
    disabled = client.post(admin_recover_url(webhook), {"since": "2000-01-01 00:00"})
    assert "enable it before" in disabled.content.decode()
    assert set(Delivery.objects.values_list("status", flat=True)) == {"failed"}
