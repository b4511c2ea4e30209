"""Alerts through real processes: a Celery worker with beat, PostgreSQL, Redis, a mail server (aiosmtpd) and an
operational webhook on loopback. An outage of 1,000 deliveries, the webhook it disables and an agent lost at the
same time are one e-mail to the team's admins and one signed request per alert."""

from __future__ import annotations

import base64
import json
import time
from datetime import timedelta

import pytest
import standardwebhooks
from django.utils import timezone

from automations import services
from automations.models import Delivery, Webhook
from harness.receiver import Receiver, Reply
from harness.smtp import MailServer
from harness.util import wait_until
from launch import services as launch
from launch.models import RunQueueItem
from secrets_vault import services as vault
from tests.factories import add_member, make_project, make_team, make_user
from tests.unit.test_delivery_path import pending_deliveries

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

OPS_SECRET = "whsec_" + base64.b64encode(b"the pager's signing key, 32 bytes").decode()
GROUP_WAIT = 8  # seconds: far above any pause inside the burst below, so it is one burst however loaded the machine


def test_an_outage_of_a_thousand_deliveries_is_one_email_and_one_request_per_alert(worker_factory, settings):
    settings.WEBHOOK_ALLOWED_NETWORKS = ["127.0.0.1/32"]
    admin = make_user()
    team = make_team(admin=admin)
    second_admin = add_member(team, role="admin")
    vault.secret_create(team=team, name="PAGER_SIGNING", value=OPS_SECRET, user=admin)
    with MailServer() as mail, Receiver() as pager, Receiver(Reply(410)) as gone:
        services.webhook_create(team=team, name="pager", url=pager.url, secret="PAGER_SIGNING", alerts=True, user=admin)
        ci = services.webhook_create(team=team, name="ci", url=gone.url, user=admin)
        # An agent holding an item whose lease has lapsed: the beat's lease sweep finds it.
        make_project(team, "evaluation")
        job = launch.job_create(team=team, name="evaluate", project="evaluation")
        version = launch.job_version_create(job=job, entrypoint=["python", "eval.py"])
        queue = launch.run_queue_create(team=team, name="gpu")
        agent, _ = launch.agent_create(team=team, name="gpu-box-1", queues=["gpu"])
        launch.item_enqueue(queue=queue, job_version=version, destination_project=make_project(team, "evaluation"))
        launch.item_claim(agent=agent, queue_name="gpu")
        RunQueueItem.objects.update(lease_expires_at=timezone.now() - timedelta(seconds=1))
        # 1,000 deliveries due at once to an endpoint that answers 410 Gone: the first disables the webhook, and
        # every one of them fails for good.
        pending_deliveries(ci, 1000)
        Delivery.objects.update(next_attempt_at=timezone.now() - timedelta(seconds=5))

        started = time.monotonic()
        worker = worker_factory(
            queues="events,deliveries", pool="threads", concurrency=8, beat=True,
            extra_env={
                "WEBHOOK_ALLOWED_NETWORKS": "127.0.0.1/32", "DELIVERY_SWEEP_INTERVAL": "0.5",
                "DELIVERY_SWEEP_GRACE": "0", "LAUNCH_LEASE_SWEEP_INTERVAL": "0.5", "ALERT_FLUSH_INTERVAL": "0.5",
                "ALERT_GROUP_WAIT": str(GROUP_WAIT), "EMAIL_URL": mail.url, "PUBLIC_BASE_URL": "https://registry.test",
            },
        )  # fmt: skip
        wait_until(
            lambda: Delivery.objects.filter(status="failed").count() == 1000,
            timeout=120, message="1,000 deliveries to fail", details=worker.tail,
        )  # fmt: skip
        burst = time.monotonic() - started
        (message,) = mail.wait_for(1, timeout=GROUP_WAIT + 60)
        wait_until(lambda: len(pager.requests) >= 3, timeout=30, message="3 requests to the pager", details=worker.tail)
        time.sleep(GROUP_WAIT + 2)  # long enough for a second message, were the burst split
        requests = list(pager.requests)
        assert len(mail.messages) == 1 and len(requests) == 3, worker.tail()

    # The first 410 disabled it: only the batches already sending at that moment each sent one request.
    assert 1 <= len(gone.requests) <= 8
    assert not Webhook.objects.get(pk=ci.pk).enabled
    assert sorted(message["To"].split(", ")) == sorted([admin.email, second_admin.email])
    assert message["Subject"] == f"[registry] {team.name}: webhook ci was disabled (and 2 more)"
    body = message.get_content()
    assert "1,000 deliveries of webhook ci failed for good" in body
    assert "agent gpu-box-1 went silent holding 1 item" in body
    assert f"https://registry.test/admin/automations/webhook/{ci.pk}/recover/" in body

    verifier = standardwebhooks.Webhook(OPS_SECRET)
    by_type = {}
    for got in requests:
        payload = verifier.verify(got.body, got.headers)
        by_type[payload["type"]] = payload["data"]
    assert set(by_type) == {"webhook.disabled", "delivery.failed", "agent.lost"}
    assert by_type["delivery.failed"]["count"] == 1000
    assert "410 Gone" in by_type["webhook.disabled"]["reason"]
    assert by_type["agent.lost"]["agent"]["name"] == "gpu-box-1"
    assert len({got.headers["webhook-id"] for got in requests}) == 3
    print(f"alerts e2e: 1,000 deliveries failed in {burst:.1f} s; one e-mail, {len(requests)} pager requests")
    assert json.loads(requests[0].body)["data"]["team"] == team.name
