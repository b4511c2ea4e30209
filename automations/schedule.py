"""Scheduling deliveries: which batches go to the deliveries workers, and when.

Deliveries travel in batches of one destination and team each (``batches``): one task, one send slot
(``fairness``), one claim and one record for the lot. A batch is published to the ``deliveries`` queue
(``deliveries_publish``) when it is written, when a send slot at its destination comes free (``hand_on``), when a
short retry is due, or by the beat sweep, which sends whatever is due and takes back deliveries whose worker died
mid-attempt. Long waits live in ``next_attempt_at``, never in the broker. A published batch is marked offered for a
few seconds (``claimed_until`` on a due delivery), so that no other path publishes it again meanwhile.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import TypeVar

from celery import current_app, signature
from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from kombu.exceptions import ChannelError

from core.errors import ApplicationError, Conflict
from core.publish import task_send

from . import fairness
from .choices import CLAIMABLE, DeliveryStatus
from .models import Delivery, Webhook

logger = logging.getLogger(__name__)
T = TypeVar("T")

# The Celery task that attempts a batch (``tasks.deliveries_send``), published by name: the tasks module is the
# interface that calls this one.
SEND_TASK = "automations.tasks.deliveries_send"

BatchKey = tuple[str, int]  # (destination, team id): what a batch's deliveries have in common


def batches(items: Iterable[T], key_of: Callable[[T], BatchKey]) -> list[list[T]]:
    """Group deliveries (rows, or value tuples) into batches of one destination and team each, at most
    ``DELIVERY_BATCH`` long, in order. A batch holds one send slot and is sent one request after another."""
    open_batches: dict[BatchKey, list[T]] = {}
    result: list[list[T]] = []
    for item in items:
        key = key_of(item)
        batch = open_batches.get(key)
        if batch is None or len(batch) >= settings.DELIVERY_BATCH:
            batch = open_batches[key] = []
            result.append(batch)
        batch.append(item)
    return result


def row_key(delivery: Delivery) -> BatchKey:
    return delivery.destination, delivery.team_id


def _values_key(row: tuple) -> BatchKey:
    return row[1], row[2]


def deliveries_publish(
    delivery_ids: list[str], *, destination: str, team_id: int, countdown: float | None = None
) -> bool:
    """Hand one batch to the deliveries workers. Never raises (see ``task_send``)."""
    return task_send(signature(SEND_TASK), list(delivery_ids), destination, team_id, countdown=countdown)


def rows_publish(group: list[Delivery]) -> None:
    deliveries_publish([str(d.pk) for d in group], destination=group[0].destination, team_id=group[0].team_id)


def shared_out(
    groups: list[list[T]], free: dict[str, int], *, destination_of: Callable[[T], BatchKey], room: int | None = None
) -> tuple[list[list[T]], set[str]]:
    """The batches to publish: at most ``free[destination]`` per destination (a task refused a slot costs a slot
    query for nothing) and ``room`` in all. Returns them and the destinations some batches were held back from."""
    kept: list[list[T]] = []
    held_back: set[str] = set()
    for group in groups:
        destination = destination_of(group[0])[0]
        if free[destination] > 0 and (room is None or len(kept) < room):
            free[destination] -= 1
            kept.append(group)
        else:
            held_back.add(destination)
    return kept, held_back


# Seconds a published batch is not handed on again: the task it went to claims it in far less, unless it was lost
# or refused, and then a send ending at its destination offers it again.
OFFER_SECONDS = 5.0


def offer_end(now: datetime) -> datetime:
    """On a due (pending or retrying) delivery, ``claimed_until`` is the end of its offer: until then it has been
    published to a task that should claim it, and ``hand_on`` leaves it alone."""
    return now + timedelta(seconds=OFFER_SECONDS)


def _offer(delivery_ids: list[object], *, now: datetime) -> None:
    Delivery.objects.filter(pk__in=delivery_ids, status__in=CLAIMABLE).update(claimed_until=offer_end(now))


def offer_withdraw(delivery_ids: list[object]) -> None:
    """A task refused a send slot gives its batch's offer up: the send that frees a slot hands these deliveries on at
    once, instead of passing over them until the offer lapses (with nothing left to hand on, that would end the
    chain of hand-ons and leave the destination to the sweep)."""
    Delivery.objects.filter(pk__in=delivery_ids, status__in=CLAIMABLE).update(claimed_until=None)


def hand_on(destination: str, *, now: datetime) -> None:
    """A slot at ``destination`` came free while deliveries waited for one: publish the oldest due batch not
    published lately (by a dispatch, the sweep or another ending send: sends ending together take turns on the
    destination's row, so each offers a batch of its own)."""
    not_offered = Q(claimed_until__isnull=True) | Q(claimed_until__lte=now)
    due = list(
        Delivery.objects.filter(not_offered, destination=destination, status__in=CLAIMABLE, next_attempt_at__lte=now)
        .order_by("next_attempt_at")
        .values_list("pk", "destination", "team_id")[: settings.DELIVERY_BATCH]
    )
    if not due:
        return
    group = batches(due, key_of=_values_key)[0]
    if len(group) < len(due) or len(due) == settings.DELIVERY_BATCH:
        fairness.waiting_again(destination)  # more wait than this batch: the next slot to free hands them on
    ids = [pk for pk, _, _ in group]
    _offer(ids, now=now)
    transaction.on_commit(
        lambda: deliveries_publish([str(pk) for pk in ids], destination=destination, team_id=group[0][2])
    )


def park(deliveries: Q, *, until: datetime) -> None:
    """Leave due deliveries waiting for their destination's breaker: due again when it half-opens."""
    Delivery.objects.filter(deliveries, status__in=CLAIMABLE, next_attempt_at__lt=until).update(next_attempt_at=until)


def deliveries_waiting() -> int | None:
    """How many delivery tasks wait in the broker for a worker, or None when the broker cannot say."""
    queue = settings.CELERY_TASK_ROUTES[SEND_TASK]["queue"]
    try:
        with current_app.connection_for_read() as connection:
            return connection.default_channel.queue_declare(queue=queue, passive=True).message_count
    except ChannelError:
        return 0  # never declared: no worker ever listened and nothing was sent, so nothing waits
    except Exception as exc:
        logger.warning("deliveries sweep: the broker's queue length is unknown (%r)", exc)
        return None


def deliveries_sweep(*, limit: int = 1000) -> int:
    """Send what is due, and take back deliveries (and send slots) whose worker died mid-attempt. Returns how many
    deliveries were sent to the workers.

    The sweep never fills the deliveries queue beyond ``limit`` waiting tasks, and gives each destination no more
    batches than it has free send slots: a queued task refused a slot would only come back on the next sweep.
    """
    now = timezone.now()
    Delivery.objects.filter(status=DeliveryStatus.SENDING, claimed_until__lt=now).update(
        status=DeliveryStatus.RETRYING,
        next_attempt_at=now,
        claimed_until=None,
        last_error="The worker stopped during an attempt; it is sent again.",
    )
    fairness.slots_expired_delete(now=now)
    waiting = deliveries_waiting()
    room = limit if waiting is None else max(0, limit - waiting)
    if not room:
        logger.info("deliveries sweep: %d tasks already wait for the workers; none added", waiting)
        return 0
    # Fresh deliveries and short retries were sent with their task; the grace keeps the sweep from doubling them.
    grace = now - timedelta(seconds=settings.DELIVERY_SWEEP_GRACE)
    due = list(
        Delivery.objects.filter(status__in=CLAIMABLE, next_attempt_at__lte=grace)
        .order_by("next_attempt_at")
        .values_list("pk", "destination", "team_id")[: room * settings.DELIVERY_BATCH]
    )
    sent, tasks = _due_publish(due, now=now, room=room)
    if sent:
        logger.info("deliveries sweep: %d due deliveries sent to the workers in %d tasks", sent, tasks)
    return sent


def _due_publish(due: list[tuple], *, now: datetime, room: int | None) -> tuple[int, int]:
    """Publish due deliveries (``(pk, destination, team_id)`` rows) in batches, no more per destination than its
    free send slots; the rest wait for a hand-on or the next sweep. Returns (deliveries, tasks) published."""
    free = fairness.slots_free({row[1] for row in due}, now=now)
    groups, _ = shared_out(batches(due, key_of=_values_key), free, destination_of=_values_key, room=room)
    _offer([pk for group in groups for pk, _, _ in group], now=now)
    for group in groups:
        deliveries_publish([str(pk) for pk, _, _ in group], destination=group[0][1], team_id=group[0][2])
    return sum(len(group) for group in groups), len(groups)


def _send_again(deliveries, *, now: datetime | None = None) -> int:
    """Make these deliveries due again now, as if new (their ids and attempt history stay); returns how many."""
    return deliveries.update(
        status=DeliveryStatus.PENDING, next_attempt_at=now or timezone.now(), finished_at=None, claimed_until=None
    )


def delivery_redeliver(*, delivery: Delivery) -> Delivery:
    """Send a delivery again, with the same id (webhook-id), now. Its attempt history is kept."""
    updated = _send_again(Delivery.objects.filter(pk=delivery.pk).exclude(status=DeliveryStatus.SENDING))
    if not updated:
        raise Conflict("This delivery is being sent right now; try again when the attempt ends.")
    transaction.on_commit(lambda: rows_publish([delivery]))
    delivery.refresh_from_db()
    return delivery


def webhook_recover(*, webhook: Webhook, since: datetime) -> int:
    """Send again every delivery to ``webhook`` created since ``since`` that failed for good, with the same ids
    (``webhook-id``), through the sweep's fair scheduling: the destination's share of batches at once, the rest as
    its send slots free. Returns how many were taken up. Runs in the caller's transaction; publishing follows its
    commit."""
    now = timezone.now()
    if since > now:
        raise ApplicationError("The time to recover from is in the future.", field="since")
    if not webhook.enabled:
        raise Conflict(
            f"Webhook {webhook.name!r} is disabled; enable it before sending its failed deliveries again.",
            field="webhook",
        )
    failed = Delivery.objects.select_for_update().filter(
        webhook=webhook, status=DeliveryStatus.FAILED, created_at__gte=since
    )
    rows = list(failed.values_list("pk", "destination", "team_id"))
    _send_again(Delivery.objects.filter(pk__in=[pk for pk, _, _ in rows]), now=now)
    if rows:
        transaction.on_commit(lambda: _due_publish(rows, now=timezone.now(), room=None))
        logger.info("webhook %s: %d failed deliveries since %s are sent again", webhook.pk, len(rows), since)
    return len(rows)
