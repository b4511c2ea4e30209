"""Webhook deliveries end to end: real Celery worker processes, Redis, PostgreSQL and HTTP receivers on loopback."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import re
import subprocess
import threading
import time

import pytest
import redis
import requests
from django.conf import settings

from automations import services
from automations.models import Automation, Delivery, DeliveryAttempt, Webhook
from harness.receiver import Receiver, Reply
from harness.util import wait_until
from registry import services as registry_services
from registry.models import Event
from secrets_vault import services as vault
from tests.factories import PASSWORD, link, make_artifact_version, make_registered_model, make_team, make_user

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

SIGNING = "whsec-not-base64 s3cr3t/signing+value"
TOKEN = "ghp_TOKEN_value_that_must_never_leak_0123"
WORKER_ENV = {
    "WEBHOOK_ALLOWED_NETWORKS": "127.0.0.1/32",
    "WEBHOOK_RETRY_SCHEDULE": "1,1,1",
    "WEBHOOK_READ_TIMEOUT": "1",
    "WEBHOOK_DEADLINE": "3",
    "DELIVERY_SWEEP_INTERVAL": "0.5",
    "DELIVERY_SWEEP_GRACE": "1",
}

# As in the Procfile: deliveries run on the threads pool.
DELIVERY_WORKER = {"queues": "events,deliveries", "pool": "threads", "concurrency": 8}

EVERY_VARIABLE = {
    "event_type": "${event_type}",
    "event_author": "${event_author}",
    "artifact_version": "${artifact_version}",
    "artifact_version_string": "${artifact_version_string}",
    "artifact_collection_name": "${artifact_collection_name}",
    "project_name": "${project_name}",
    "entity_name": "${entity_name}",
    "alias": "${alias}",
    "notes": "${artifact_metadata.notes}",
    "accuracy": "${artifact_metadata.accuracy}",
    "summary": "acc=${artifact_metadata.accuracy} by ${event_author}",
    "api_key": "${DEPLOY_TOKEN}",
}
TRICKY_NOTES = 'quote " backslash \\ newline \n tab \t naïve ✓ 模型 </script>'


@pytest.fixture
def allow_loopback(settings):
    settings.WEBHOOK_ALLOWED_NETWORKS = ["127.0.0.1/32"]


def team_with_webhook(url: str, *, author=None, **automation):
    admin = author or make_user()
    team = make_team(admin=admin)
    model = make_registered_model(team)
    vault.secret_create(team=team, name="SIGNING", value=SIGNING, user=admin)
    vault.secret_create(team=team, name="DEPLOY_TOKEN", value=TOKEN, user=admin)
    webhook = services.webhook_create(
        team=team, name="ci", url=url, secret="SIGNING", access_token="DEPLOY_TOKEN", user=admin
    )
    defaults = {
        "name": "notify",
        "event_type": "LINK_ARTIFACT",
        "action_type": "WEBHOOK",
        "payload": {"v": "${artifact_version_string}"},
    }
    created = services.automation_create(team=team, user=admin, webhook=webhook.pk, **{**defaults, **automation})
    return team, model, webhook, created


def openssl_signature(secret: str, body: bytes) -> str:
    """The seed's own troubleshooting recipe, run for real on the received bytes."""
    result = subprocess.run(
        ["bash", "-c", 'openssl dgst -sha256 -hmac "$SECRET" -binary | base64'],
        input=body, capture_output=True, env={"SECRET": secret, "PATH": "/usr/bin:/bin"}, check=True,
    )  # fmt: skip
    return result.stdout.decode().strip()


def standard_signature(secret: str, headers: dict, body: bytes) -> str:
    signed = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(secret.encode(), signed, hashlib.sha256).digest()).decode()


def only_delivery() -> Delivery:
    return wait_until(lambda: Delivery.objects.first(), message="a delivery row")


def settled(delivery_pk, *statuses: str, timeout: float = 30) -> Delivery:
    def check():
        found = Delivery.objects.get(pk=delivery_pk)
        return found if found.status in statuses else None

    return wait_until(check, timeout=timeout, message=f"delivery to become {statuses}")


class BrokerTap:
    """Every command sent to the test Redis (MONITOR), with message bodies base64-decoded, for leak checks."""

    def __init__(self) -> None:
        # No read timeout: redis-py's default (5 s) would end the tap at the first quiet moment of the server.
        self.client = redis.Redis.from_url(settings.CELERY_BROKER_URL, socket_timeout=None)
        self.lines: list[str] = []
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with self.client.monitor() as monitor:
            while True:
                # MONITOR shows every client of the server (other test workers too): a reply the client cannot
                # parse (None, or a line its pattern misses) is skipped, not the end of the tap.
                try:
                    command = monitor.next_command()
                except (AttributeError, ValueError):
                    continue
                if not command:
                    continue
                text = command.get("command", "")
                if "broker-tap-stop" in text:
                    return
                self.lines.append(text)
                for encoded in re.findall(r'"body": ?"([A-Za-z0-9+/=]+)"', text):
                    self.lines.append(base64.b64decode(encoded).decode(errors="replace"))

    def __enter__(self) -> BrokerTap:
        self.thread.start()
        time.sleep(0.2)
        return self

    def __exit__(self, *exc) -> None:
        redis.Redis.from_url(settings.CELERY_BROKER_URL).echo("broker-tap-stop")
        self.thread.join(timeout=5)

    def text(self) -> str:
        return "\n".join(self.lines)


def test_a_link_and_an_alias_each_send_exactly_the_configured_signed_deliveries(
    live_server, worker_factory, allow_loopback, caplog
):
    caplog.set_level(logging.DEBUG)  # everything the web side logs, at every level
    with Receiver() as receiver, BrokerTap() as tap:
        author = make_user('o"brien\\x')
        team, model, webhook, _ = team_with_webhook(
            receiver.url, author=author, payload={"v": "${artifact_version_string}"}
        )
        services.automation_create(
            team=team, user=author, name="on production", event_type="ADD_ARTIFACT_ALIAS", alias_regex="prod.*",
            action_type="WEBHOOK", webhook=webhook.pk, payload=EVERY_VARIABLE,
        )  # fmt: skip
        worker = worker_factory(**DELIVERY_WORKER, extra_env=WORKER_ENV)
        artifact = make_artifact_version(team, metadata={"notes": TRICKY_NOTES, "accuracy": 0.97})
        api = requests.Session()
        token = api.post(
            f"{live_server.url}/api/v1/auth/token/", json={"username": author.username, "password": PASSWORD}
        )
        api.headers["Authorization"] = f"Token {token.json()['token']}"

        linked = api.post(
            f"{live_server.url}/api/v1/teams/{team.name}/registered-models/{model.name}/versions/",
            json={"artifact": artifact.reference, "aliases": ["production", "staging"]},
        )
        assert linked.status_code == 201, linked.text
        wait_until(lambda: len(receiver.requests) >= 2, timeout=30, message="two deliveries")
        time.sleep(1.5)  # anything extra (the non-matching alias "staging") would have arrived by now
        responses = [
            api.get(f"{live_server.url}/api/v1/teams/{team.name}/{path}").text
            for path in ("deliveries/", f"deliveries/{Delivery.objects.first().pk}/", "webhooks/", "automations/",
                         "events/", "secrets/")
        ]  # fmt: skip

    assert len(receiver.requests) == 2
    by_kind = {json.loads(r.body).get("event_type", "LINK"): r for r in receiver.requests}
    link_request, alias_request = by_kind["LINK"], by_kind["ADD_ARTIFACT_ALIAS"]
    assert json.loads(link_request.body) == {"v": f"{team.name}/model-registry/{model.name}:v0"}

    for request in receiver.requests:
        headers = {k.lower(): v for k, v in request.headers.items()}
        assert headers["content-type"] == "application/json"
        assert headers["authorization"] == f"Bearer {TOKEN}"
        assert headers["x-wandb-signature"] == openssl_signature(SIGNING, request.body)
        assert headers["webhook-signature"] == standard_signature(SIGNING, headers, request.body)
        assert abs(int(headers["webhook-timestamp"]) - time.time()) < 60
        assert Delivery.objects.filter(pk=headers["webhook-id"]).exists()
        assert headers["user-agent"].startswith("registry-automations")

    sent = json.loads(alias_request.body)
    assert sent == {
        "event_type": "ADD_ARTIFACT_ALIAS",
        "event_author": 'o"brien\\x',
        "artifact_version": f"registry-artifact://_id/{artifact.public_id}",
        "artifact_version_string": f"{team.name}/model-registry/{model.name}:production",
        "artifact_collection_name": model.name,
        "project_name": "model-registry",
        "entity_name": team.name,
        "alias": "production",
        "notes": TRICKY_NOTES,
        "accuracy": 0.97,
        "summary": 'acc=0.97 by o"brien\\x',
        "api_key": TOKEN,
    }
    assert Delivery.objects.filter(status="succeeded").count() == 2

    # The secret values appear nowhere but on the wire to the endpoint.
    records = json.dumps(
        [list(Delivery.objects.values()), list(DeliveryAttempt.objects.values()), list(Event.objects.values())],
        default=str,
    )
    for value in (SIGNING, TOKEN):
        assert value not in records
        assert value not in worker.log()
        assert value not in caplog.text
        assert value not in tap.text()
        for body in responses:
            assert value not in body
    # The tap did see the Celery messages: a fan-out this small is sent by the dispatch task itself.
    assert "registry.tasks.event_dispatch" in tap.text()


def test_a_500_twice_then_200_is_three_attempts_with_the_same_webhook_id(worker_factory, allow_loopback):
    with Receiver(Reply(500), Reply(502), Reply(200)) as receiver:
        _, model, _, _ = team_with_webhook(receiver.url)
        worker_factory(**DELIVERY_WORKER, extra_env=WORKER_ENV)
        link(model)
        delivery = settled(only_delivery().pk, "succeeded")

    assert delivery.attempts == 3
    assert [a.status_code for a in delivery.attempt_log.all()] == [500, 502, 200]
    ids = {r.headers["webhook-id"] for r in receiver.requests}
    assert ids == {str(delivery.pk)}
    gaps = [b.at - a.at for a, b in zip(receiver.requests, receiver.requests[1:], strict=False)]
    assert all(gap >= 0.85 for gap in gaps), gaps  # the 1 s schedule, less at most 10 % jitter


def test_retry_after_is_honoured(worker_factory, allow_loopback):
    with Receiver(Reply(503, headers={"Retry-After": "3"}), Reply(200)) as receiver:
        _, model, _, _ = team_with_webhook(receiver.url)
        worker_factory(**DELIVERY_WORKER, extra_env=WORKER_ENV)
        link(model)
        settled(only_delivery().pk, "succeeded")

    assert receiver.requests[1].at - receiver.requests[0].at >= 2.9


def test_a_404_fails_at_once(worker_factory, allow_loopback):
    with Receiver(Reply(404)) as receiver:
        _, model, webhook, _ = team_with_webhook(receiver.url)
        worker_factory(**DELIVERY_WORKER, extra_env=WORKER_ENV)
        link(model)
        delivery = settled(only_delivery().pk, "failed")
        time.sleep(1.5)

    assert len(receiver.requests) == 1 and delivery.attempts == 1
    assert delivery.last_status_code == 404
    webhook.refresh_from_db()
    assert webhook.enabled and "404" in webhook.last_error


def test_a_410_fails_and_disables_the_webhook(worker_factory, allow_loopback):
    with Receiver(Reply(410)) as receiver:
        _, model, webhook, _ = team_with_webhook(receiver.url)
        worker_factory(**DELIVERY_WORKER, extra_env=WORKER_ENV)
        link(model)
        settled(only_delivery().pk, "failed")
        webhook.refresh_from_db()
        assert not webhook.enabled and "410" in webhook.disabled_reason

        link(model)  # later events are recorded as failed deliveries, not sent
        wait_until(lambda: Delivery.objects.count() == 2, message="the second delivery")
        second = Delivery.objects.order_by("-created_at").first()
    assert second.status == "failed" and "disabled" in second.last_error
    assert len(receiver.requests) == 1


def test_a_redirect_is_not_followed(worker_factory, allow_loopback):
    with Receiver() as target, Receiver(Reply(302, headers={"Location": "TARGET"})) as receiver:
        receiver.replies = [Reply(302, headers={"Location": target.url})]
        _, model, _, _ = team_with_webhook(receiver.url)
        worker_factory(**DELIVERY_WORKER, extra_env=WORKER_ENV)
        link(model)
        delivery = settled(only_delivery().pk, "failed")

    assert delivery.last_status_code == 302
    assert target.requests == []


def test_a_receiver_that_never_answers_is_cut_off_by_the_timeout(worker_factory, allow_loopback):
    with Receiver(Reply(200, delay=8)) as receiver:
        _, model, _, _ = team_with_webhook(receiver.url)
        worker_factory(**DELIVERY_WORKER, extra_env=WORKER_ENV)
        link(model)
        wait_until(lambda: DeliveryAttempt.objects.exists(), timeout=20, message="the first attempt")
        attempt = DeliveryAttempt.objects.first()

    assert attempt.status_code is None
    assert "timed out" in attempt.error
    assert attempt.duration_ms < 4000
    assert Delivery.objects.get().status in ("retrying", "sending", "failed")


def test_a_waiting_retry_survives_a_worker_restart(worker_factory, allow_loopback):
    env = {**WORKER_ENV, "WEBHOOK_RETRY_SCHEDULE": "4"}
    with Receiver(Reply(500), Reply(200)) as receiver:
        _, model, _, _ = team_with_webhook(receiver.url)
        first = worker_factory(**DELIVERY_WORKER, extra_env=env)
        link(model)
        delivery = settled(only_delivery().pk, "retrying")
        first.stop()  # the worker holding the countdown goes away

        worker_factory(**DELIVERY_WORKER, beat=True, extra_env=env)
        delivery = settled(delivery.pk, "succeeded", timeout=40)

    assert delivery.attempts == 2
    assert len(receiver.requests) == 2


def test_deleting_the_automation_and_webhook_does_not_stop_a_waiting_delivery(worker_factory, allow_loopback):
    env = {**WORKER_ENV, "WEBHOOK_RETRY_SCHEDULE": "3"}
    with Receiver(Reply(500), Reply(200)) as receiver:
        _, model, webhook, automation = team_with_webhook(receiver.url)
        worker_factory(**DELIVERY_WORKER, beat=True, extra_env=env)
        link(model)
        delivery = settled(only_delivery().pk, "retrying")

        services.automation_delete(automation=automation)
        services.webhook_delete(webhook=Webhook.objects.get(pk=webhook.pk))
        delivery = settled(delivery.pk, "succeeded", timeout=40)

    assert not Automation.objects.exists() and not Webhook.objects.exists()
    assert delivery.automation_id is None and delivery.webhook_id is None
    assert len(receiver.requests) == 2
    assert receiver.requests[1].headers["Authorization"] == f"Bearer {TOKEN}"  # secrets still resolved by name


def test_a_url_refused_at_send_time_fails_with_the_reason(worker_factory, allow_loopback):
    with Receiver() as receiver:
        _, model, _, _ = team_with_webhook(receiver.url)
        # The worker's operator allow-list no longer admits loopback.
        worker_factory(**DELIVERY_WORKER, extra_env={**WORKER_ENV, "WEBHOOK_ALLOWED_NETWORKS": ""})
        link(model)
        delivery = settled(only_delivery().pk, "failed")

    assert receiver.requests == []
    assert delivery.last_error.startswith("refused:") and "loopback" in delivery.last_error


def test_redeliver_sends_the_same_delivery_again(live_server, worker_factory, allow_loopback):
    with Receiver(Reply(404), Reply(200)) as receiver:
        admin = make_user()
        team, model, _, _ = team_with_webhook(receiver.url, author=admin)
        worker_factory(**DELIVERY_WORKER, extra_env=WORKER_ENV)
        link(model)
        delivery = settled(only_delivery().pk, "failed")
        _, raw = registry_services.api_token_create(user=admin)

        answer = requests.post(
            f"{live_server.url}/api/v1/teams/{team.name}/deliveries/{delivery.pk}/redeliver/",
            headers={"Authorization": f"Token {raw}"},
            timeout=10,
        )
        assert answer.status_code == 202, answer.text
        delivery = settled(delivery.pk, "succeeded")

    assert delivery.attempts == 2
    assert [r.headers["webhook-id"] for r in receiver.requests] == [str(delivery.pk)] * 2


def test_a_webhook_failing_for_longer_than_the_limit_is_disabled_with_the_reason(worker_factory, allow_loopback):
    env = {**WORKER_ENV, "WEBHOOK_DISABLE_AFTER": "1.5", "WEBHOOK_RETRY_SCHEDULE": "1,1,1,1,1"}
    with Receiver(Reply(500)) as receiver:
        _, model, webhook, _ = team_with_webhook(receiver.url)
        worker_factory(**DELIVERY_WORKER, extra_env=env)
        link(model)

        def disabled():
            webhook.refresh_from_db()
            return not webhook.enabled

        wait_until(disabled, timeout=30, message="the webhook to be disabled")
        delivery = settled(only_delivery().pk, "failed")

    assert "Every delivery failed for more than" in webhook.disabled_reason
    assert "HTTP 500" in webhook.disabled_reason
    assert delivery.last_error.startswith("Webhook disabled") or delivery.attempts >= 2
    assert len(receiver.requests) >= 2


def test_slow_endpoints_do_not_hold_up_fast_ones(worker_factory, allow_loopback):
    """Four deliveries stuck on a 3 s endpoint while another endpoint's delivery goes straight through."""
    env = {**WORKER_ENV, "WEBHOOK_READ_TIMEOUT": "5", "WEBHOOK_DEADLINE": "6"}
    with Receiver(Reply(200, delay=3)) as slow, Receiver() as fast:
        admin = make_user()
        team, model, webhook, _ = team_with_webhook(slow.url, author=admin)
        for n in range(3):
            services.automation_create(
                team=team, user=admin, name=f"slow {n}", event_type="LINK_ARTIFACT", action_type="WEBHOOK",
                webhook=webhook.pk, payload={"n": n},
            )  # fmt: skip
        quick = services.webhook_create(team=team, name="fast", url=fast.url, user=admin)
        services.automation_create(
            team=team, user=admin, name="fast", event_type="LINK_ARTIFACT", action_type="WEBHOOK",
            webhook=quick.pk, payload={"fast": True},
        )  # fmt: skip
        worker_factory(**DELIVERY_WORKER, extra_env=env)
        started = time.monotonic()
        link(model)
        wait_until(lambda: fast.requests, timeout=10, message="the fast endpoint's delivery")
        fast_latency = fast.requests[0].at - started
        wait_until(lambda: Delivery.objects.filter(status="succeeded").count() == 5, timeout=20, message="all five")

    assert len(slow.requests) == 4
    assert fast_latency < 2.5, fast_latency  # well before the first slow reply
