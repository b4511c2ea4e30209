"""The one delivery path (dispatch task → first batch sent by it, the rest through the deliveries queue), batches,
and fairness between destinations and teams, against PostgreSQL, Redis and real HTTP receivers on loopback."""

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

from automations import attempts, fairness, schedule, services
from automations.models import Delivery, DeliveryAttempt, Destination, SendSlot, Webhook
from automations.safe_http import destination_key
from harness.receiver import Receiver, Reply
from registry import events, outbox
from registry.models import Event
from tests.factories import link, make_registered_model, make_team, make_user

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


def team_with_hooks(*urls: str, event_type: str = "LINK_ARTIFACT"):
    admin = make_user()
    team = make_team(admin=admin)
    model = make_registered_model(team)
    webhooks = []
    for index, url in enumerate(urls):
        webhook = services.webhook_create(team=team, name=f"hook{index}", url=url, user=admin)
        services.automation_create(
            team=team, user=admin, webhook=webhook.pk, name=f"notify{index}", event_type=event_type,
            action_type="WEBHOOK", payload=PAYLOAD,
        )  # fmt: skip
        webhooks.append(webhook)
    return team, model, webhooks


def base64_body(message: dict) -> list:
    return json.loads(base64.b64decode(message["body"]).decode())


def task_args(message: dict) -> list:
    return base64_body(message)[0]


def dispatch_link(model) -> Event:
    """Link a version and run its dispatch task's work here, as the events worker would."""
    event = Event.objects.get(model_version=link(model))
    assert outbox.event_dispatch(event_id=event.pk)
    return event


# --- One path -------------------------------------------------------------------------------------------


def test_a_web_request_only_records_the_event_and_publishes_its_dispatch(loopback, broker):
    with Receiver() as receiver:
        _, model, _ = team_with_hooks(receiver.url)
        version = link(model)
        assert receiver.requests == []  # nothing is sent by the process that made the change
    event = Event.objects.get(model_version=version)
    assert event.dispatched_at is None and not Delivery.objects.exists()
    tasks = broker("events")
    assert {t["headers"]["task"] for t in tasks} == {"registry.tasks.event_dispatch"}
    assert str(event.pk) in {task_args(t)[0] for t in tasks}


def test_a_removed_inline_dispatch_setting_left_in_the_environment_is_reported(monkeypatch):
    from django.core import checks

    assert "automations.W002" not in {m.id for m in checks.run_checks()}
    monkeypatch.setenv("DISPATCH_INLINE", "true")
    found = [m for m in checks.run_checks() if m.id == "automations.W002"]
    assert len(found) == 1 and found[0].level == checks.WARNING
    assert "DISPATCH_INLINE is set" in found[0].msg and "DISPATCH_SEND_MAX" in found[0].hint


def test_the_dispatch_task_sends_a_small_fan_out_itself_without_a_second_hop(loopback, broker):
    with Receiver() as receiver:
        team, model, _ = team_with_hooks(receiver.url)
        event = dispatch_link(model)
        found = Delivery.objects.get(event=event)
        assert len(receiver.requests) == 1
    assert broker("deliveries") == []
    assert json.loads(receiver.requests[0].body) == {"v": f"{team.name}/model-registry/{model.name}:v0"}
    assert receiver.requests[0].headers["webhook-id"] == str(found.pk)
    assert (found.status, found.attempts, found.claimed_until) == ("succeeded", 1, None)
    assert found.destination == destination_key(receiver.url)
    assert DeliveryAttempt.objects.filter(delivery=found, number=1, status_code=200).count() == 1
    assert not SendSlot.objects.exists()  # the slot went back with the record


def test_other_destinations_of_a_dispatch_go_to_the_queue_at_once(loopback, broker):
    with Receiver() as first, Receiver() as second:
        _, model, _ = team_with_hooks(first.url, second.url)
        event = dispatch_link(model)
        assert len(first.requests) == 1 and second.requests == []
    tasks = broker("deliveries")
    assert [t["headers"]["task"] for t in tasks] == ["automations.tasks.deliveries_send"]
    other = Delivery.objects.get(event=event, destination=destination_key(second.url))
    assert task_args(tasks[0]) == [[str(other.pk)], other.destination, other.team_id]
    assert (other.status, other.attempts) == ("pending", 0)


def test_a_fan_out_above_the_dispatch_limit_goes_to_the_workers_a_task_per_destination(settings, loopback, broker):
    settings.DISPATCH_SEND_MAX = 1
    with Receiver() as receiver:
        _, model, _ = team_with_hooks(receiver.url, receiver.url.replace("/hook", "/other"))
        event = dispatch_link(model)
        assert receiver.requests == []
    tasks = broker("deliveries")
    assert len(tasks) == 1  # two webhooks, one destination: one batch
    assert sorted(task_args(tasks[0])[0]) == sorted(
        str(pk) for pk in Delivery.objects.filter(event=event).values_list("pk", flat=True)
    )


def test_a_dispatch_that_fails_changes_nothing_and_is_retried(loopback, broker):
    def broken(event) -> None:
        Delivery.objects.filter(pk=event.pk).update(last_error="written, then rolled back")
        raise RuntimeError("boom")

    events.event_handler_register(broken)
    try:
        _, model, _ = team_with_hooks("http://127.0.0.1:9/hook")
        version = link(model)
        event = Event.objects.get(model_version=version)
        with pytest.raises(RuntimeError):
            outbox.event_dispatch(event_id=event.pk)
    finally:
        events._HANDLERS.remove(broken)
    event.refresh_from_db()
    assert event.dispatched_at is None and "will be retried" in event.dispatch_note
    assert not Delivery.objects.exists()
    assert outbox.event_dispatch(event_id=event.pk)  # the retry dispatches it
    assert Delivery.objects.filter(event=event).count() == 1


def test_a_dispatch_rolled_back_after_claiming_its_first_batch_leaves_no_slot_and_no_permit_behind(loopback, broker):
    def broken(event) -> None:
        raise RuntimeError("boom")  # after the automations' handler claimed the first batch

    rounds = settings.EVENTS_CONCURRENCY + 1  # more rollbacks than the dispatch task has sending permits
    with Receiver() as receiver:
        _, model, _ = team_with_hooks(receiver.url)
        made = [Event.objects.get(model_version=link(model)) for _ in range(rounds)]
        events.event_handler_register(broken)
        try:
            for event in made:
                with pytest.raises(RuntimeError):
                    outbox.event_dispatch(event_id=event.pk)
        finally:
            events._HANDLERS.remove(broken)
        assert not SendSlot.objects.exists() and not Delivery.objects.exists()
        for event in made:
            assert outbox.event_dispatch(event_id=event.pk)
        assert len(receiver.requests) == rounds  # each sent by its own dispatch: no permit was lost
    assert broker("deliveries") == []
    assert set(Delivery.objects.values_list("status", "attempts")) == {("succeeded", 1)}
    assert not SendSlot.objects.exists()


def test_a_destination_that_answered_badly_is_left_to_the_deliveries_workers(loopback, broker):
    with Receiver(Reply(503)) as receiver:
        _, model, _ = team_with_hooks(receiver.url)
        dispatch_link(model)
        assert len(receiver.requests) == 1
        second = dispatch_link(model)
        assert len(receiver.requests) == 1  # no thread of the events worker waits on it again
    left = Delivery.objects.get(event=second)
    assert (left.status, left.attempts) == ("pending", 0)
    assert [str(left.pk)] in [task_args(t)[0] for t in broker("deliveries")]


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
            destination=destination_key(webhook.url),
            payload_template=PAYLOAD,
            next_attempt_at=now,
        )
        for _ in range(count)
    )


def attempt(webhook: Webhook, ids: list[str]) -> dict[str, str]:
    return attempts.deliveries_attempt(
        delivery_ids=ids, destination=destination_key(webhook.url), team_id=webhook.team_id
    )


def test_a_batch_is_claimed_once_sent_in_order_and_recorded(loopback, broker):
    with Receiver(Reply(200), Reply(204), Reply(503)) as receiver:
        _, _, (webhook,) = team_with_hooks(receiver.url)
        batch = pending_deliveries(webhook, 3)
        ids = [str(d.pk) for d in batch]
        statuses = attempt(webhook, ids)
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
    assert attempt(webhook, ids) == {}
    assert DeliveryAttempt.objects.filter(delivery_id__in=ids).count() == 3


def test_a_410_in_a_batch_disables_the_webhook_and_the_rest_is_not_sent(loopback, broker):
    with Receiver(Reply(410)) as receiver:
        _, _, (webhook,) = team_with_hooks(receiver.url)
        ids = [str(d.pk) for d in pending_deliveries(webhook, 3)]
        statuses = attempt(webhook, ids)
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
                results.append(attempt(webhook, ids))
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


def test_a_slow_batch_records_as_it_goes_and_keeps_its_claims(settings, loopback, broker, monkeypatch):
    settings.DELIVERY_DESTINATION_MAX_SENDS = 1  # no other slot to hand its rest to
    monkeypatch.setattr(attempts, "RECORD_EVERY", 0.0)
    with Receiver(Reply(200, delay=0.2)) as receiver:
        _, _, (webhook,) = team_with_hooks(receiver.url)
        ids = [str(d.pk) for d in pending_deliveries(webhook, 3)]
        leases = []
        original = attempts._record

        def spy(outcomes, **kwargs):
            original(outcomes, **kwargs)
            leases.append(list(Delivery.objects.filter(pk__in=ids, status="sending").values_list("claimed_until")))

        monkeypatch.setattr(attempts, "_record", spy)
        attempt(webhook, ids)
    assert [len(x) for x in leases] == [2, 1, 0]  # one record per attempt, the rest still claimed
    assert all(lease > timezone.now() + timedelta(seconds=60) for (lease,) in leases[0])


def test_the_sweep_sends_due_deliveries_in_batches_and_only_fills_the_queue_up_to_its_limit(settings, loopback, broker):
    settings.DELIVERY_BATCH = 2
    _, _, (webhook,) = team_with_hooks("http://127.0.0.1:9/hook")
    batch = pending_deliveries(webhook, 5)
    Delivery.objects.filter(pk__in=[d.pk for d in batch]).update(next_attempt_at=timezone.now() - timedelta(hours=1))
    assert schedule.deliveries_sweep(limit=2) == 4  # two tasks of two
    tasks = broker("deliveries")
    assert [len(task_args(t)[0]) for t in tasks] == [2, 2]
    assert schedule.deliveries_sweep(limit=2) == 0  # the queue is full: nothing added
    assert schedule.deliveries_sweep(limit=4) == 4  # room for two more tasks: sent again (claims make it safe)
    assert len(broker("deliveries")) == 4


# --- Fairness -------------------------------------------------------------------------------------------


def hold_slot(*, destination: str, team_id: int) -> int:
    """A send under way elsewhere (another worker's batch)."""
    from django.db import transaction

    with transaction.atomic():
        grant = fairness.slot_take(destination=destination, team_id=team_id)
    assert grant.slot_id is not None
    return grant.slot_id


def test_webhooks_to_one_destination_share_its_slots_and_a_freed_slot_hands_the_waiting_on(settings, loopback, broker):
    settings.DELIVERY_DESTINATION_MAX_SENDS = 1
    with Receiver() as receiver:
        team, _, (first, second) = team_with_hooks(receiver.url, receiver.url.replace("/hook", "/other"))
        destination = destination_key(first.url)
        held = hold_slot(destination=destination, team_id=team.pk)
        waiting = [str(d.pk) for d in pending_deliveries(second, 2)]
        assert attempt(second, waiting) == {}  # refused at once: the thread is not kept waiting
        assert receiver.requests == []
        assert Delivery.objects.filter(pk__in=waiting, status="pending", attempts=0).count() == 2
        assert Destination.objects.get(key=destination).waiting
        fairness.slot_release(held)
        # The next send to end there hands the waiting deliveries on to the workers.
        assert set(attempt(first, [str(d.pk) for d in pending_deliveries(first, 1)]).values()) == {"succeeded"}
    tasks = broker("deliveries")
    assert [sorted(task_args(t)[0]) for t in tasks] == [sorted(waiting)]
    assert not Destination.objects.get(key=destination).waiting


def test_sends_ending_together_hand_on_different_batches(settings, loopback, broker):
    settings.DELIVERY_BATCH = 2
    with Receiver() as receiver:
        _, _, (webhook,) = team_with_hooks(receiver.url)
        destination = destination_key(webhook.url)
        waiting = [str(d.pk) for d in pending_deliveries(webhook, 5)]
        for _ in range(4):  # four slots ending one after another, each finding deliveries waiting
            fairness.waiting_again(destination)
            schedule.hand_on(destination, now=timezone.now())
    handed = [task_args(t)[0] for t in broker("deliveries")]
    assert len(handed) == 3  # 2 + 2 + 1: no batch offered twice, and the fourth found nothing left to offer
    assert sorted(pk for batch in handed for pk in batch) == sorted(waiting)


def test_a_dispatch_publishes_no_more_batches_of_a_destination_than_its_share(settings, loopback, broker):
    settings.DELIVERY_BATCH, settings.DELIVERY_DESTINATION_MAX_SENDS, settings.DISPATCH_SEND_MAX = 1, 2, 0
    with Receiver() as receiver:
        _, model, (webhook, *_) = team_with_hooks(*[receiver.url.replace("/hook", f"/h{n}") for n in range(5)])
        event = dispatch_link(model)
    assert len(broker("deliveries")) == 2  # the rest wait in the database for a slot to free
    assert Delivery.objects.filter(event=event, status="pending").count() == 5
    assert Destination.objects.get(key=destination_key(webhook.url)).waiting


def test_the_batch_a_dispatch_sends_itself_counts_against_its_destinations_share(settings, loopback, broker):
    settings.DELIVERY_BATCH, settings.DELIVERY_DESTINATION_MAX_SENDS = 1, 2
    with Receiver() as receiver:
        _, model, _ = team_with_hooks(*[receiver.url.replace("/hook", f"/h{n}") for n in range(5)])
        event = dispatch_link(model)
        assert len(receiver.requests) == 1  # the first batch, sent by the dispatch
    # One batch published with the dispatch (the share is two), one handed on once the dispatch's own send ended.
    handed = [task_args(t)[0] for t in broker("deliveries")]
    assert len(handed) == 2 and handed[0] != handed[1]
    assert Delivery.objects.filter(event=event, status="pending").count() == 4


def test_a_slow_batch_hands_what_it_has_not_sent_to_the_destinations_free_slots(
    settings, loopback, broker, monkeypatch
):
    settings.DELIVERY_DESTINATION_MAX_SENDS = 3
    monkeypatch.setattr(attempts, "RECORD_EVERY", 0.0)
    with Receiver(Reply(200, delay=0.05)) as receiver:
        _, _, (webhook,) = team_with_hooks(receiver.url)
        ids = [str(d.pk) for d in pending_deliveries(webhook, 7)]
        statuses = attempt(webhook, ids)
    # After its first answer the batch kept a third of the six left and published two shares of two, one for each
    # free slot; with one left after its second answer there was nothing more to share.
    assert ids[0] in statuses and statuses[ids[0]] == "succeeded"
    handed = [task_args(t)[0] for t in broker("deliveries")]
    assert len(handed) == 2 and all(len(share) == 2 for share in handed)
    assert not set(statuses) & {pk for share in handed for pk in share}
    offered = Delivery.objects.filter(pk__in=[pk for share in handed for pk in share])
    assert all(d.status == "pending" and d.attempts == 0 and d.claimed_until > timezone.now() for d in offered)
    assert [r.headers["webhook-id"] for r in receiver.requests] == list(statuses)


def test_a_task_refused_a_slot_withdraws_its_offer_so_the_next_send_to_end_hands_it_on(settings, loopback, broker):
    settings.DELIVERY_DESTINATION_MAX_SENDS = 1
    with Receiver() as receiver:
        _, _, (webhook,) = team_with_hooks(receiver.url)
        destination = destination_key(webhook.url)
        ids = [str(d.pk) for d in pending_deliveries(webhook, 2)]
        Delivery.objects.filter(pk__in=ids).update(claimed_until=schedule.offer_end(timezone.now()))  # published
        slot = hold_slot(destination=destination, team_id=webhook.team_id)
        assert attempt(webhook, ids) == {}  # refused: the destination's one slot is taken
        assert not Delivery.objects.filter(pk__in=ids, claimed_until__isnull=False).exists()
        assert Destination.objects.get(key=destination).waiting
        # The send holding the slot ends: it hands the two on, offered to the task it publishes.
        assert fairness.slot_end(slot, destination)
        schedule.hand_on(destination, now=timezone.now())
    handed = [task_args(t)[0] for t in broker("deliveries")]
    assert [sorted(share) for share in handed] == [sorted(ids)]


def test_a_team_at_its_share_waits_while_another_team_sends_to_the_same_destination(settings, loopback, broker):
    settings.DELIVERY_TEAM_MAX_SENDS = 1
    with Receiver() as receiver:
        busy, _, (busy_hook,) = team_with_hooks(receiver.url)
        _, _, (other_hook,) = team_with_hooks(receiver.url)
        hold_slot(destination="https://elsewhere.example:443", team_id=busy.pk)
        refused = [str(d.pk) for d in pending_deliveries(busy_hook, 1)]
        assert attempt(busy_hook, refused) == {}
        sent = [str(d.pk) for d in pending_deliveries(other_hook, 1)]
        assert attempt(other_hook, sent) == {sent[0]: "succeeded"}
        assert [r.headers["webhook-id"] for r in receiver.requests] == sent


def test_a_failing_destination_opens_its_breaker_and_is_probed_one_delivery_at_a_time(settings, loopback, broker):
    settings.DESTINATION_OPEN_AFTER = 3
    settings.DESTINATION_BACKOFF_MIN = 5.0
    with Receiver(Reply(503)) as receiver:
        _, _, (webhook,) = team_with_hooks(receiver.url)
        destination = destination_key(webhook.url)
        ids = [str(d.pk) for d in pending_deliveries(webhook, 6)]
        statuses = attempt(webhook, ids)
        assert len(receiver.requests) == 3  # the batch stopped at the third failure in a row
        breaker = Destination.objects.get(key=destination)
        assert breaker.failures == 3 and breaker.open_until > timezone.now() and breaker.backoff == 5.0
        assert "HTTP 503" in breaker.last_error
        assert list(statuses.values()) == ["retrying"] * 3
        given_back = Delivery.objects.filter(pk__in=ids[3:])
        assert all((d.status, d.attempts, d.next_attempt_at) == ("pending", 0, breaker.open_until) for d in given_back)
        # While open, nothing is sent and nothing waits in a thread: the deliveries wait in the database.
        assert attempt(webhook, ids[3:]) == {}
        assert len(receiver.requests) == 3
        # Half-open: one probe, which fails, and the breaker stays open twice as long.
        Destination.objects.filter(pk=breaker.pk).update(open_until=timezone.now() - timedelta(seconds=1))
        Delivery.objects.filter(pk__in=ids[3:]).update(next_attempt_at=timezone.now())
        assert len(attempt(webhook, ids[3:])) == 1
        assert len(receiver.requests) == 4
        breaker.refresh_from_db()
        assert breaker.backoff == 10.0 and breaker.open_until > timezone.now()
        receiver.replies = [Reply(200)]
        Destination.objects.filter(pk=breaker.pk).update(open_until=timezone.now() - timedelta(seconds=1), waiting=True)
        Delivery.objects.filter(pk__in=ids[4:]).update(next_attempt_at=timezone.now())
        assert attempt(webhook, ids[4:]) == {ids[4]: "succeeded"}  # the probe that closes it
    breaker.refresh_from_db()
    assert (breaker.failures, breaker.open_until, breaker.backoff) == (0, None, 0.0)
    handed_on = [task_args(t)[0] for t in broker("deliveries") if task_args(t)[0] == [ids[5]]]
    assert handed_on == [[ids[5]]]  # closed again: what waited goes to the workers


def test_slow_answers_count_against_the_destination_though_the_delivery_succeeds(settings, loopback, broker):
    settings.DESTINATION_SLOW_AFTER = 0.1
    with Receiver(Reply(200, delay=0.2)) as receiver:
        _, _, (webhook,) = team_with_hooks(receiver.url)
        ids = [str(d.pk) for d in pending_deliveries(webhook, 1)]
        assert attempt(webhook, ids) == {ids[0]: "succeeded"}
    breaker = Destination.objects.get(key=destination_key(webhook.url))
    assert breaker.failures == 1 and breaker.open_until is None and "after 0." in breaker.last_error


def test_a_slot_whose_holder_died_lapses_and_the_sweep_removes_it(settings, loopback, broker):
    settings.DELIVERY_DESTINATION_MAX_SENDS = 1
    with Receiver() as receiver:
        team, _, (webhook,) = team_with_hooks(receiver.url)
        held = hold_slot(destination=destination_key(webhook.url), team_id=team.pk)
        SendSlot.objects.filter(pk=held).update(expires_at=timezone.now() - timedelta(seconds=1))
        ids = [str(d.pk) for d in pending_deliveries(webhook, 1)]
        assert attempt(webhook, ids) == {ids[0]: "succeeded"}
    assert SendSlot.objects.filter(pk=held).exists()
    schedule.deliveries_sweep()
    assert not SendSlot.objects.exists()


def test_the_sweep_gives_a_destination_no_more_batches_than_it_has_free_slots(settings, loopback, broker):
    settings.DELIVERY_BATCH = 1
    settings.DELIVERY_DESTINATION_MAX_SENDS = 2
    team, _, (webhook,) = team_with_hooks("http://127.0.0.1:9/hook")
    rows = pending_deliveries(webhook, 4)
    Delivery.objects.filter(pk__in=[d.pk for d in rows]).update(next_attempt_at=timezone.now() - timedelta(hours=1))
    hold_slot(destination=destination_key(webhook.url), team_id=team.pk)
    assert schedule.deliveries_sweep() == 1  # two slots, one held
    Destination.objects.filter(key=destination_key(webhook.url)).update(
        open_until=timezone.now() + timedelta(minutes=1)
    )
    assert schedule.deliveries_sweep() == 0  # open: none until it half-opens
