"""Inline dispatch (the committing process dispatches and sends when it has a thread to spare) and batched
deliveries, against PostgreSQL, Redis and real HTTP receivers on loopback."""

from __future__ import annotations

import base64
import json
import threading
from datetime import timedelta

import pytest
import redis
from django.conf import settings
from django.db import connections
from django.utils import timezone

from automations import delivery, dispatch, services
from automations.models import Delivery, DeliveryAttempt, Webhook
from registry import events, inline
from registry.models import Event

from .conftest import wait_until
from .factories import link, make_registered_model, make_team, make_user
from .receivers import Receiver, Reply

pytestmark = pytest.mark.django_db(transaction=True)

PAYLOAD = {"v": "${artifact_version_string}"}


@pytest.fixture
def broker(purge_broker):
    """The test broker, empty; ``queued(name)`` is how many messages wait in a queue."""
    client = redis.Redis.from_url(settings.CELERY_BROKER_URL)

    def queued(name: str) -> list[dict]:
        return [json.loads(raw) for raw in client.lrange(name, 0, -1)]

    return queued


@pytest.fixture
def loopback(settings):
    settings.WEBHOOK_ALLOWED_NETWORKS = ["127.0.0.1/32"]


@pytest.fixture
def inline_on(settings, loopback):
    settings.DISPATCH_INLINE = True
    db = connections.settings["default"]
    previous, db["CONN_MAX_AGE"] = db["CONN_MAX_AGE"], 0  # the inline threads close theirs after each job
    yield settings
    inline.shutdown()
    db["CONN_MAX_AGE"] = previous


def team_with_hooks(*urls: str):
    admin = make_user()
    team = make_team(admin=admin)
    model = make_registered_model(team)
    webhooks = []
    for index, url in enumerate(urls):
        webhook = services.webhook_create(team=team, name=f"hook{index}", url=url, user=admin)
        services.automation_create(
            team=team, user=admin, webhook=webhook.pk, name=f"notify{index}", event_type="LINK_ARTIFACT",
            action_type="WEBHOOK", payload=PAYLOAD,
        )  # fmt: skip
        webhooks.append(webhook)
    return team, model, webhooks


def test_a_link_is_dispatched_and_delivered_by_the_committing_process_without_any_worker(inline_on, broker):
    with Receiver() as receiver:
        team, model, _ = team_with_hooks(receiver.url)
        version = link(model)
        event = Event.objects.get(model_version=version)
        wait_until(lambda: len(receiver.requests) == 1, message="the inline delivery")
        found = wait_until(lambda: Delivery.objects.filter(status="succeeded").first(), message="settled")
    # No worker runs here: had anything gone through the broker, it would still be waiting there.
    assert broker("events") == [] and broker("deliveries") == []
    event.refresh_from_db()
    assert event.dispatched_at is not None
    assert json.loads(receiver.requests[0].body) == {"v": f"{team.name}/model-registry/{model.name}:v0"}
    assert receiver.requests[0].headers["webhook-id"] == str(found.pk)
    assert found.attempts == 1 and found.claimed_until is None
    assert DeliveryAttempt.objects.filter(delivery=found, number=1, status_code=200).count() == 1


def test_a_fan_out_above_the_inline_limit_goes_to_the_workers_a_task_per_webhook(inline_on, broker):
    inline_on.DISPATCH_INLINE_SEND_MAX = 1
    with Receiver() as receiver:
        _, model, _ = team_with_hooks(receiver.url, receiver.url.replace("/hook", "/other"))
        link(model)
        tasks = wait_until(lambda: broker("deliveries") if len(broker("deliveries")) == 2 else None, message="tasks")
        assert receiver.requests == []
    assert Event.objects.get(type="LINK_ARTIFACT").dispatched_at is not None  # dispatched inline all the same
    sent = sorted(pk for t in tasks for pk in json.loads(base64_body(t))[0][0])
    assert sent == sorted(str(pk) for pk in Delivery.objects.values_list("pk", flat=True))
    assert {t["headers"]["task"] for t in tasks} == {"automations.tasks.deliveries_send"}


def base64_body(message: dict) -> str:
    return base64.b64decode(message["body"]).decode()


def test_with_no_idle_inline_thread_the_deliveries_go_to_the_workers(inline_on, broker):
    inline_on.DISPATCH_INLINE_THREADS = 1
    release = threading.Event()
    assert inline.run_soon(lambda: release.wait(10), fallback=lambda: pytest.fail("the only thread was idle"))
    try:
        _, model, _ = team_with_hooks("http://127.0.0.1:9/hook")
        version = link(model)
        tasks = broker("deliveries")
        assert [t["headers"]["task"] for t in tasks] == ["automations.tasks.deliveries_send"]
        handed_back = Delivery.objects.get()
        assert json.loads(base64_body(tasks[0]))[0] == [[str(handed_back.pk)]]
        # Written claimed for this process to send, then handed back unclaimed for a worker to claim.
        assert (handed_back.status, handed_back.attempts, handed_back.claimed_until) == ("pending", 0, None)
        assert Event.objects.get(model_version=version).dispatched_at is not None
        assert broker("events") == []
    finally:
        release.set()


def test_a_dispatch_that_fails_with_the_change_leaves_the_change_and_goes_to_the_workers(inline_on, broker):
    def broken(event) -> None:
        Delivery.objects.filter(pk=event.pk).update(last_error="written, then rolled back")
        raise RuntimeError("boom")

    events.event_handler_register(broken)
    try:
        _, model, _ = team_with_hooks("http://127.0.0.1:9/hook")
        version = link(model)
    finally:
        events._HANDLERS.remove(broken)
    event = Event.objects.get(model_version=version)
    assert event.dispatched_at is None and event.dispatch_attempts == 0
    assert not Delivery.objects.exists()  # the savepoint took the handlers' writes back, not the change
    # The artifact's CREATE_ARTIFACT, logged by link() first, failed in the same handler.
    tasks = broker("events")
    assert [t["headers"]["task"] for t in tasks] == ["registry.tasks.event_dispatch"] * 2
    dispatched = {json.loads(base64_body(t))[0][0] for t in tasks}
    assert str(event.pk) in dispatched and dispatched == {str(pk) for pk in Event.objects.values_list("pk", flat=True)}


def test_an_endpoint_seen_answering_slowly_is_left_to_the_workers(inline_on, broker, monkeypatch):
    monkeypatch.setattr(delivery.SlowEndpoints, "SLOW_AFTER", 0.1)
    monkeypatch.setattr(delivery, "slow_endpoints", delivery.SlowEndpoints())
    monkeypatch.setattr(dispatch, "slow_endpoints", delivery.slow_endpoints)
    with Receiver(Reply(200, delay=0.3)) as receiver:
        _, model, (webhook,) = team_with_hooks(receiver.url)
        link(model)
        wait_until(lambda: Delivery.objects.filter(status="succeeded").exists(), message="the first, inline")
        assert webhook.pk in delivery.slow_endpoints
        second = link(model)
        tasks = broker("deliveries")  # the second goes to the workers: no web thread waits on this endpoint
        assert [t["headers"]["task"] for t in tasks] == ["automations.tasks.deliveries_send"]
        left = Delivery.objects.get(event__model_version=second)
        assert (left.status, left.attempts) == ("pending", 0)
        assert len(receiver.requests) == 1


def test_inline_work_that_fails_falls_back_in_its_thread(inline_on):
    fell_back = threading.Event()

    def broken() -> None:
        raise RuntimeError("boom")

    assert inline.run_soon(broken, fallback=fell_back.set)
    assert fell_back.wait(5)


def test_inline_off_calls_the_fallback_at_once(settings):
    settings.DISPATCH_INLINE = False
    calls = []
    assert inline.run_soon(lambda: calls.append("work"), fallback=lambda: calls.append("fallback")) is False
    assert calls == ["fallback"]


# --- Batches --------------------------------------------------------------------------------------------


def pending_deliveries(webhook: Webhook, count: int) -> list[Delivery]:
    """Deliveries written as dispatch writes them, with their event, left for the test to send."""
    model = make_registered_model(webhook.team, name=f"m{Delivery.objects.count()}")
    event = Event.objects.get(model_version=link(model))
    automation = webhook.automations.first()
    now = timezone.now()
    return Delivery.objects.bulk_create(
        Delivery(
            team=webhook.team,
            event=event,
            automation=automation,
            webhook=webhook,
            automation_name="a",
            webhook_name=webhook.name,
            url=webhook.url,
            payload_template=PAYLOAD,
            next_attempt_at=now,
        )
        for _ in range(count)
    )


def test_a_batch_is_claimed_once_sent_in_order_and_recorded(loopback, broker):
    with Receiver(Reply(200), Reply(204), Reply(503)) as receiver:
        _, _, (webhook,) = team_with_hooks(receiver.url)
        batch = pending_deliveries(webhook, 3)
        ids = [str(d.pk) for d in batch]
        statuses = delivery.deliveries_attempt(delivery_ids=ids)
        assert [r.headers["webhook-id"] for r in receiver.requests] == ids
    assert statuses == {ids[0]: "succeeded", ids[1]: "succeeded", ids[2]: "retrying"}
    rows = {str(d.pk): d for d in Delivery.objects.filter(pk__in=ids)}
    assert [rows[i].last_status_code for i in ids] == [200, 204, 503]
    assert all(rows[i].attempts == 1 and rows[i].claimed_until is None for i in ids)
    assert rows[ids[2]].next_attempt_at > timezone.now()
    assert DeliveryAttempt.objects.filter(delivery_id__in=ids, number=1).count() == 3
    webhook.refresh_from_db()
    assert webhook.failing_since is not None and "HTTP 503" in webhook.last_error  # the last outcome counts
    # Sent again at once, nothing is due: no claim, no request, no attempt.
    assert delivery.deliveries_attempt(delivery_ids=ids) == {}
    assert DeliveryAttempt.objects.filter(delivery_id__in=ids).count() == 3


def test_a_410_in_a_batch_disables_the_webhook_and_the_rest_is_not_sent(loopback, broker):
    with Receiver(Reply(410)) as receiver:
        _, _, (webhook,) = team_with_hooks(receiver.url)
        ids = [str(d.pk) for d in pending_deliveries(webhook, 3)]
        statuses = delivery.deliveries_attempt(delivery_ids=ids)
        assert len(receiver.requests) == 1
    assert set(statuses.values()) == {"failed"}
    webhook.refresh_from_db()
    assert not webhook.enabled and "410" in webhook.disabled_reason
    later = Delivery.objects.filter(pk__in=ids[1:])
    assert all(d.last_error.startswith("Webhook disabled") for d in later)


def test_two_workers_on_the_same_batch_send_each_delivery_once(loopback, broker):
    with Receiver(Reply(200, delay=0.05)) as receiver:
        _, _, (webhook,) = team_with_hooks(receiver.url)
        ids = [str(d.pk) for d in pending_deliveries(webhook, 12)]
        results: list[dict] = []

        def work() -> None:
            try:
                results.append(delivery.deliveries_attempt(delivery_ids=ids))
            finally:
                connections.close_all()

        threads = [threading.Thread(target=work) for _ in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        sent = [r.headers["webhook-id"] for r in receiver.requests]
    assert sorted(sent) == sorted(ids)  # each once
    assert sum(len(r) for r in results) == 12
    assert Delivery.objects.filter(pk__in=ids, status="succeeded").count() == 12


def test_a_slow_batch_records_as_it_goes_and_keeps_its_claims(loopback, broker, monkeypatch):
    monkeypatch.setattr(delivery, "RECORD_EVERY", 0.0)
    with Receiver(Reply(200, delay=0.2)) as receiver:
        _, _, (webhook,) = team_with_hooks(receiver.url)
        ids = [str(d.pk) for d in pending_deliveries(webhook, 3)]
        leases = []
        original = delivery._record

        def spy(outcomes, *, extend=()):
            original(outcomes, extend=extend)
            leases.append(list(Delivery.objects.filter(pk__in=ids, status="sending").values_list("claimed_until")))

        monkeypatch.setattr(delivery, "_record", spy)
        delivery.deliveries_attempt(delivery_ids=ids)
    assert [len(x) for x in leases] == [2, 1, 0]  # one record per attempt, the rest still claimed
    assert all(lease > timezone.now() + timedelta(seconds=60) for (lease,) in leases[0])


def test_the_sweep_sends_due_deliveries_in_batches_and_only_fills_the_queue_up_to_its_limit(settings, loopback, broker):
    settings.DELIVERY_BATCH = 2
    _, _, (webhook,) = team_with_hooks("http://127.0.0.1:9/hook")
    batch = pending_deliveries(webhook, 5)
    Delivery.objects.filter(pk__in=[d.pk for d in batch]).update(next_attempt_at=timezone.now() - timedelta(hours=1))
    assert delivery.deliveries_sweep(limit=2) == 4  # two tasks of two
    tasks = broker("deliveries")
    assert [len(json.loads(base64_body(t))[0][0]) for t in tasks] == [2, 2]
    assert delivery.deliveries_sweep(limit=2) == 0  # the queue is full: nothing added
    assert delivery.deliveries_sweep(limit=4) == 4  # room for two more tasks: sent again (claims make it safe)
    assert len(broker("deliveries")) == 4
