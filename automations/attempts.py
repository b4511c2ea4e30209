"""Attempting deliveries: claim, send, record; the one path every delivery takes.

A batch (``schedule.batches``) is attempted holding one send slot (``fairness``) under one claim: a conditional
UPDATE (pending/retrying and due → sending, with a lease), so a task delivered twice never sends twice at once. Its
requests go out one after another on one kept connection, and its attempts are recorded together, with each
delivery's next step (``retry.decide``), its webhook's health and its destination's breaker, in one transaction.

The task dispatching an event claims the first batch of a small fan-out in its own transaction and sends it right
after the commit (``deliveries_create``); every other batch is attempted by a deliveries worker
(``deliveries_attempt``).
"""

from __future__ import annotations

import collections
import contextlib
import logging
import math
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Case, F, Q, Value, When
from django.utils import timezone

from alerts.choices import AlertKind
from alerts.services import Happened, occurrences_record
from core.db import columns, quoted, rows_insert, rows_loaded
from registry.models import Event, Team
from secrets_vault.services import secret_values, secret_values_decrypt

from . import fairness, metrics, retry, safe_http, schedule
from .choices import CLAIMABLE, DeliveryStatus
from .models import Delivery, DeliveryAttempt, Webhook
from .prepare import outcome_scrubbed, request_prepare, request_send, response_summary
from .safe_http import SendError
from .services import webhook_disable

logger = logging.getLogger(__name__)

# Seconds a batch keeps finished attempts unrecorded while it sends the next ones: a batch of fast answers is
# recorded once, and a worker that dies resends at most this much.
RECORD_EVERY = 1.0

_EVENT_FIELD = Delivery._meta.get_field("event")
_TEAM_FIELD = Delivery._meta.get_field("team")
_WEBHOOK_FIELD = Delivery._meta.get_field("webhook")


# --- From the dispatch ------------------------------------------------------------------------------------------

# The dispatching task sends from at most this many of its process's threads at once; the others keep
# dispatching, and their batches go to the deliveries queue.
_dispatch_senders = threading.BoundedSemaphore(max(1, settings.EVENTS_CONCURRENCY // 2))
_sender = threading.local()


def _sender_reserve() -> bool:
    """A sending permit for this thread's dispatch. A dispatch whose transaction rolled back neither sent nor gave
    its permit back: the thread still holds it, and its next dispatch uses it."""
    if not getattr(_sender, "held", False):
        _sender.held = _dispatch_senders.acquire(blocking=False)
    return _sender.held


def _sender_release() -> None:
    if getattr(_sender, "held", False):
        _sender.held = False
        _dispatch_senders.release()


def deliveries_create(deliveries: list[Delivery]) -> None:
    """Write a dispatch's deliveries, in its transaction, and start the pending ones once it commits.

    For a small fan-out the dispatching task sends the first batch itself, right after the commit (no second broker
    hop): its send slot is taken and the batch written already claimed in this transaction, so nothing else runs
    between the commit and the first request. Every other batch is published to the deliveries queue first, so that
    no destination waits for another.
    """
    pending = [d for d in deliveries if d.status == DeliveryStatus.PENDING]
    groups = schedule.batches(pending, key_of=schedule.row_key)
    claimed, grant, published = _dispatch_claim(groups, fan_out=len(pending))
    # As many batches as their destination has slots free now (this dispatch's own slot counted): a task refused one
    # costs a slot request for nothing, and the sends under way hand the rest on as they end.
    free = fairness.slots_free({group[0].destination for group in published}, now=timezone.now()) if published else {}
    published, held_back = schedule.shared_out(published, free, destination_of=schedule.row_key)
    for destination in held_back:
        fairness.waiting_again(destination)  # each slot that frees there hands one more on
    offer = schedule.offer_end(timezone.now())
    for group in published:
        for delivery in group:
            delivery.claimed_until = offer
    rows_insert(Delivery, deliveries)
    if groups:
        transaction.on_commit(partial(_deliveries_start, published, claimed, grant))


def _dispatch_claim(
    groups: list[list[Delivery]], *, fan_out: int
) -> tuple[list[Delivery], fairness.Grant | None, list[list[Delivery]]]:
    """Claim the first batch for the dispatching task, if the fan-out is small, a permit is free and the
    destination grants a slot. Returns (claimed, the slot's grant, batches to publish)."""
    if not groups or fan_out > settings.DISPATCH_SEND_MAX or not _sender_reserve():
        return [], None, groups
    first, rest = groups[0], groups[1:]
    now = timezone.now()
    grant = fairness.slot_take(destination=first[0].destination, team_id=first[0].team_id, now=now, from_dispatch=True)
    if grant.slot_id is None:
        _sender_release()
        if grant.hand_over:
            return [], None, groups
        if grant.wait_until is not None:  # the breaker is open: due when it half-opens
            for delivery in first:
                delivery.next_attempt_at = grant.wait_until
        return [], None, rest  # a slot that frees hands the others on
    # Never a probe: a destination whose breaker has opened is handed over to the deliveries workers.
    lease = now + timedelta(seconds=settings.DELIVERY_CLAIM_LEASE)
    for delivery in first:
        delivery.status, delivery.attempts, delivery.claimed_until = DeliveryStatus.SENDING, 1, lease
    return first, grant, rest


def _deliveries_start(published: list[list[Delivery]], claimed: list[Delivery], grant: fairness.Grant | None) -> None:
    for group in published:
        schedule.rows_publish(group)
    if not claimed:
        return
    try:
        _send_claimed(claimed, destination=claimed[0].destination, grant=grant)
    except Exception as exc:
        # The deliveries are written and claimed: whatever this attempt did not record, the sweep takes back once
        # the claim lapses. Only the type: messages may quote data.
        logger.warning("deliveries of a dispatch not sent by it (%s); left to the sweep", type(exc).__name__)
    finally:
        _sender_release()


# --- From the deliveries workers --------------------------------------------------------------------------------


def delivery_attempt(*, delivery_id: object) -> str | None:
    """Make one attempt if the delivery is due and unclaimed (and its destination has a slot). Returns the
    resulting status, or None."""
    row = Delivery.objects.filter(pk=delivery_id).values_list("destination", "team_id").first()
    if row is None:
        return None
    return deliveries_attempt(delivery_ids=[delivery_id], destination=row[0], team_id=row[1]).get(str(delivery_id))


def deliveries_attempt(
    *, delivery_ids: Iterable[object], destination: str, team_id: int, from_dispatch: bool = False
) -> dict[str, str]:
    """One attempt for each of these deliveries (of one destination and team) that is due and unclaimed, one after
    another, holding one send slot; returns the status each ended in, by id.

    Without a slot nothing waits here: deliveries refused because the destination or the team has all its sends
    under way stay due (the send that frees a slot hands them on); those of a destination whose breaker is open
    wait in the database until it half-opens. From dispatch, a destination that answered badly lately is left to
    the deliveries workers rather than hold a thread of the events worker.
    """
    wanted = list(delivery_ids)
    now = timezone.now()
    with transaction.atomic():
        grant = fairness.slot_take(destination=destination, team_id=team_id, now=now, from_dispatch=from_dispatch)
        if grant.slot_id is None:
            if grant.wait_until is not None:
                schedule.park(Q(pk__in=wanted), until=grant.wait_until)
            elif grant.hand_over:
                transaction.on_commit(
                    partial(
                        schedule.deliveries_publish,
                        [str(pk) for pk in wanted],
                        destination=destination,
                        team_id=team_id,
                    )
                )
            else:
                schedule.offer_withdraw(wanted)
            return {}
        claimed = _claim(wanted[:1] if grant.probe else wanted)
        if not claimed:
            fairness.slot_release(grant.slot_id)
            return {}
    return _send_claimed(claimed, destination=destination, grant=grant)


# What sending and recording a claimed batch read, as the claim returns it (the rest, which recording sets, is not
# loaded).
_LOADED = [
    "id", "team", "event", "automation", "webhook", "automation_name", "webhook_name", "url", "destination",
    "payload_template", "secret_name", "access_token_name", "status", "attempts", "next_attempt_at", "claimed_until",
]  # fmt: skip


def _claim(delivery_ids: Iterable[object]) -> list[Delivery]:
    """Claim the due, unclaimed ones of these deliveries in one conditional UPDATE (RETURNING says which this call
    got: a delivery claimed elsewhere meanwhile is left alone), then load them, in the order given."""
    pk_field = Delivery._meta.pk
    wanted = [pk_field.to_python(pk) for pk in delivery_ids]
    if not wanted:
        return []
    now = timezone.now()
    c = {name: quoted(Delivery, name) for name in
         ("status", "claimed_until", "attempts", "updated_at", "next_attempt_at", "id")}  # fmt: skip
    returned = columns(Delivery, None, _LOADED)
    placeholders = ", ".join(["%s"] * len(wanted))
    sql = (
        f"UPDATE {quoted(Delivery)} SET {c['status']} = %s, {c['claimed_until']} = %s, "  # noqa: S608
        f"{c['attempts']} = {c['attempts']} + 1, {c['updated_at']} = %s "
        f"WHERE {c['id']} IN ({placeholders}) AND {c['status']} IN (%s, %s) "
        f"AND ({c['next_attempt_at']} IS NULL OR {c['next_attempt_at']} <= %s) RETURNING {returned}"
    )
    stamp = connection.ops.adapt_datetimefield_value
    params = [
        DeliveryStatus.SENDING.value,
        stamp(now + timedelta(seconds=settings.DELIVERY_CLAIM_LEASE)),
        stamp(now),
        *(pk_field.get_db_prep_value(pk, connection) for pk in wanted),
        *(status.value for status in CLAIMABLE),
        stamp(now),
    ]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = {row.pk: row for row in rows_loaded(Delivery, _LOADED, cursor.fetchall(), using=connection.alias)}
    if not rows:
        return []
    # A batch's deliveries share a team and a few webhooks and events: each is read once, not once per delivery (the
    # webhooks with their signing-secret and access-token rows, so a batch that needs only those reads no secrets).
    events = Event.objects.only("id", "context", "created_at").in_bulk({row.event_id for row in rows.values()})
    webhook_ids = {row.webhook_id for row in rows.values() if row.webhook_id}
    webhooks = Webhook.objects.select_related("secret", "access_token").in_bulk(webhook_ids) if webhook_ids else {}
    teams = Team.objects.only("id", "name").in_bulk({row.team_id for row in rows.values()})
    for row in rows.values():
        _EVENT_FIELD.set_cached_value(row, events[row.event_id])
        _TEAM_FIELD.set_cached_value(row, teams[row.team_id])
        if row.webhook_id is not None:
            _WEBHOOK_FIELD.set_cached_value(row, webhooks.get(row.webhook_id))
    return [rows[pk] for pk in wanted if pk in rows]


# --- Sending -----------------------------------------------------------------------------------------------------


@dataclass
class _Outcome:
    delivery: Delivery
    started: datetime
    summary: dict | None  # what is recorded of the request's outcome (None: nothing was sent)
    error: str  # what went wrong ("" for an answer read to its end), secrets scrubbed
    described: str  # the error, or the answer's status code
    decision: retry.Decision
    answer: fairness.Answer | None  # what it says about the destination (None: nothing reached it)
    webhook_off: bool = False  # not sent: its webhook is disabled (or answered 410 earlier in the batch)


def _send_claimed(claimed: list[Delivery], *, destination: str, grant: fairness.Grant) -> dict[str, str]:
    """Attempt claimed deliveries one after another, holding the send slot; returns the status each one this batch
    attempted ended in, by id.

    Attempts are recorded together once the batch is sent (one transaction instead of one per delivery), or as soon
    as ``RECORD_EVERY`` has passed since the last record, so a slow endpoint's outcomes are not held back (nor resent
    in numbers should the process die); the claims of the rest (and the slot) are then extended. A batch stops
    after ``DESTINATION_OPEN_AFTER`` bad answers in a row: the rest go back, to wait for the breaker.
    """
    secrets_of = _SecretsCache()
    gone: set[int] = set()  # webhooks that answered 410 in this batch: the rest of it is not sent
    outcomes: list[_Outcome] = []
    last_record = time.monotonic()
    bad_in_a_row = 0
    todo = collections.deque(claimed)
    sent: list[Delivery] = []
    try:
        with safe_http.Reuse() as connection_kept:  # one connection for the batch, while the endpoint keeps it open
            while todo:
                delivery = todo.popleft()
                sent.append(delivery)
                outcome = _attempt(delivery, secrets_of=secrets_of, gone=gone, reuse=connection_kept)
                outcomes.append(outcome)
                if outcome.decision.verdict is retry.Verdict.GONE and delivery.webhook_id:
                    gone.add(delivery.webhook_id)
                if outcome.answer is not None:
                    bad_in_a_row = bad_in_a_row + 1 if outcome.answer.bad else 0
                if todo and bad_in_a_row >= settings.DESTINATION_OPEN_AFTER:
                    _record(outcomes, destination=destination, grant=grant, give_back=list(todo))
                    return {str(d.pk): d.status for d in sent}
                if todo and time.monotonic() - last_record >= RECORD_EVERY:
                    shared = _shares(todo, destination=destination)
                    _record(outcomes, destination=destination, grant=grant, extend=list(todo), hand_off=shared)
                    outcomes, last_record = [], time.monotonic()
    except BaseException:
        # Unrecorded attempts are taken back by the sweep once their lease lapses; the slot need not wait for it.
        with contextlib.suppress(Exception):
            fairness.slot_release(grant.slot_id)
        raise
    _record(outcomes, destination=destination, grant=grant, final=True)
    return {str(d.pk): d.status for d in sent}


def _shares(todo: collections.deque[Delivery], *, destination: str) -> list[list[Delivery]]:
    """A batch that is still sending after ``RECORD_EVERY`` (a slow destination) hands what it has not sent to the
    destination's free send slots, in equal shares with itself, and keeps its own share: a long batch must not
    leave the slots that a few shorter ones would use idle. Returns the shares taken off ``todo``."""
    free = fairness.slots_free([destination], now=timezone.now()).get(destination, 0)
    if free < 1 or len(todo) < 2:
        return []
    pieces = min(free + 1, len(todo))
    size = math.ceil(len(todo) / pieces)
    rest = list(todo)
    keep = len(rest) - size * (pieces - 1)
    todo.clear()
    todo.extend(rest[:keep])
    return [rest[i : i + size] for i in range(keep, len(rest), size)]


class _SecretsCache:
    """A batch's secrets, decrypted once per team and set of names (batches are of one webhook). A webhook loaded
    with its signing secret and access token rows (as dispatch loads it) lends their ciphertexts: no query."""

    def __init__(self) -> None:
        self._values: dict[tuple[int, frozenset[str]], dict[str, str]] = {}

    def __call__(self, *, team: Team, names: Iterable[str], webhook: Webhook | None = None) -> dict[str, str]:
        key = (team.pk, frozenset(names))
        if key not in self._values:
            at_hand = _webhook_secrets(webhook)
            if key[1] <= at_hand.keys():
                self._values[key] = secret_values_decrypt({name: at_hand[name] for name in key[1]})
            else:
                self._values[key] = secret_values(team=team, names=key[1])
        return self._values[key]


def _webhook_secrets(webhook: Webhook | None) -> dict[str, bytes | str]:
    found: dict[str, bytes | str] = {}
    for field in ("secret", "access_token"):
        cached = webhook is not None and Webhook._meta.get_field(field).is_cached(webhook)
        if cached and (row := getattr(webhook, field)):
            found[row.name] = row.ciphertext
    return found


def _attempt(delivery: Delivery, *, secrets_of, gone: set[int], reuse: safe_http.Reuse) -> _Outcome:
    started = timezone.now()
    webhook = delivery.webhook
    webhook_off = webhook is not None and (not webhook.enabled or webhook.pk in gone)
    outcome, secrets, sent = _send(delivery, secrets_of=secrets_of, gone=gone, reuse=reuse)
    outcome = outcome_scrubbed(outcome, secrets)
    decision = retry.decide(outcome, attempts_made=delivery.attempts, now=timezone.now())
    described = retry.described(outcome)
    answer = None
    if sent and not (isinstance(outcome, SendError) and outcome.permanent):
        answer = fairness.Answer(
            failed=decision.verdict is retry.Verdict.RETRY, seconds=outcome.duration_ms / 1000, error=described
        )
    return _Outcome(
        delivery,
        started=started,
        summary=response_summary(outcome, secrets) if sent else None,
        error=outcome.message if isinstance(outcome, SendError) else outcome.error,
        described=described,
        decision=decision,
        answer=answer,
        webhook_off=webhook_off,
    )


def _send(
    delivery: Delivery, *, secrets_of, gone: set[int], reuse: safe_http.Reuse
) -> tuple[safe_http.HttpResponse | SendError, dict[str, str], bool]:
    """Build and send one delivery's request. Returns its outcome, the secrets it used, and whether a request was
    sent (or refused by the safe client) at all."""
    webhook = delivery.webhook
    if webhook is not None and (not webhook.enabled or webhook.pk in gone):
        why = "The endpoint answered 410 Gone." if webhook.pk in gone else webhook.disabled_reason
        return retry.webhook_disabled(why), {}, False
    try:
        prepared = request_prepare(
            team=delivery.team,
            template=delivery.payload_template,
            context=delivery.event.context,
            secret_name=delivery.secret_name,
            access_token_name=delivery.access_token_name,
            msg_id=str(delivery.pk),
            secrets_of=partial(secrets_of, webhook=webhook),
        )
    except SendError as exc:
        return exc, {}, False
    except Exception as exc:
        # Not a refusal but a fault of ours: recorded and retried on the schedule instead of leaving the delivery
        # claimed until its lease lapses. Only the type is logged: messages may quote the payload.
        logger.error("delivery %s: %s while preparing the request", delivery.pk, type(exc).__name__)
        return (
            SendError(f"Internal error while preparing the request ({type(exc).__name__}).", permanent=False),
            {},
            False,
        )
    try:
        return request_send(delivery.url, prepared, reuse=reuse), prepared.secrets, True
    except SendError as exc:
        return exc, prepared.secrets, True


# --- Recording ---------------------------------------------------------------------------------------------------


@transaction.atomic
def _record(
    outcomes: list[_Outcome],
    *,
    destination: str,
    grant: fairness.Grant,
    extend: list[Delivery] = (),
    give_back: list[Delivery] = (),
    hand_off: list[list[Delivery]] = (),
    final: bool = False,
) -> None:
    """Record the attempts, settle the deliveries and update the webhooks' health and the destination's breaker
    together: no one sees one without the others. Only the holder of a claim may settle it (a lapsed lease may have
    been taken over). ``extend`` keeps the rest of a batch (and its slot) claimed; ``give_back`` returns it unsent;
    ``hand_off`` returns batches of it unsent and publishes them at once; with ``final`` the slot is released and
    whatever was refused one meanwhile is handed on."""
    now = timezone.now()
    rows_insert(
        DeliveryAttempt,
        (
            DeliveryAttempt(
                delivery=o.delivery,
                number=o.delivery.attempts,
                started_at=o.started,
                duration_ms=o.summary["duration_ms"] if o.summary else 0,
                status_code=o.summary["status_code"] if o.summary else None,
                response_headers=o.summary["headers"] if o.summary else {},
                response_body=o.summary["body"] if o.summary else "",
                error=o.error,
            )
            for o in outcomes
        ),
    )
    transaction.on_commit(partial(metrics.attempts_count, [_counted(o) for o in outcomes]))
    # Successes settle alike but for their status code: one UPDATE per (attempt number, status code).
    succeeded: dict[tuple[int, int | None], tuple[dict, list[Delivery]]] = {}
    failed: list[Happened] = []
    for outcome in outcomes:
        delivery = outcome.delivery
        changes = _settlement(outcome, now=now)
        if outcome.decision.status is DeliveryStatus.SUCCEEDED:
            succeeded.setdefault((delivery.attempts, changes["last_status_code"]), (changes, []))[1].append(delivery)
            continue
        settled = Delivery.objects.filter(pk=delivery.pk, status=DeliveryStatus.SENDING, attempts=delivery.attempts)
        if settled.update(**changes):
            _apply(delivery, changes)
            if delivery.status == DeliveryStatus.FAILED:
                failed.append(_failed_for_good(delivery, now=now))
            wait = outcome.decision.wait
            if wait is not None and wait <= settings.DELIVERY_COUNTDOWN_MAX:  # longer waits are the sweep's
                transaction.on_commit(
                    partial(
                        schedule.deliveries_publish,
                        [str(delivery.pk)],
                        destination=delivery.destination,
                        team_id=delivery.team_id,
                        countdown=wait,
                    )
                )
    for (attempts, _), (changes, group) in succeeded.items():
        Delivery.objects.filter(pk__in=[d.pk for d in group], status=DeliveryStatus.SENDING, attempts=attempts).update(
            **changes
        )
        for delivery in group:
            _apply(delivery, changes)
    if hand_off:
        _give_back([d for share in hand_off for d in share], until=now, offer=schedule.offer_end(now))
        for share in hand_off:
            transaction.on_commit(partial(schedule.rows_publish, share))
    if extend:
        lease = now + timedelta(seconds=settings.DELIVERY_CLAIM_LEASE)
        Delivery.objects.filter(pk__in=[d.pk for d in extend], status=DeliveryStatus.SENDING).update(
            claimed_until=lease
        )
        fairness.slot_extend(grant.slot_id, now=now)
    disabled = _webhooks_health(outcomes, now=now)
    occurrences_record(failed)
    for outcome in outcomes:
        _attempt_log(outcome, disabled=disabled)
    answers = [o.answer for o in outcomes if o.answer is not None]
    open_until = fairness.breaker_record(destination, answers, now=now, clean=grant.breaker_clean)
    if give_back:
        _give_back(give_back, until=open_until or now)
    if open_until is not None:
        schedule.park(Q(destination=destination), until=open_until)
    if (final or give_back) and open_until is not None:
        fairness.slot_release(grant.slot_id)
    elif (final or give_back) and fairness.slot_end(grant.slot_id, destination):
        schedule.hand_on(destination, now=now)


def _failed_for_good(delivery: Delivery, *, now: datetime) -> Happened:
    """The alert occurrence of a delivery that failed for good. Its error is the recorded one, secrets scrubbed."""
    return Happened(
        team_id=delivery.team_id,
        kind=AlertKind.DELIVERY_FAILED,
        subject_id=delivery.webhook_id,
        subject_name=delivery.webhook_name,
        at=now,
        detail={
            "delivery": str(delivery.pk),
            "automation": delivery.automation_name,
            "destination": delivery.destination,
            "attempts": delivery.attempts,
            "error": delivery.last_error[:500],
        },
    )


def _counted(outcome: _Outcome) -> metrics.Counted:
    """The attempt as the metrics count it, from what is in memory (the event is loaded with every claimed batch;
    were it not, its delay is left out rather than read)."""
    delivery = outcome.delivery
    event = delivery.event if _EVENT_FIELD.is_cached(delivery) else None
    return metrics.Counted(
        outcome=outcome.decision.status.value,
        duration=outcome.summary["duration_ms"] / 1000 if outcome.summary else None,
        first_delay=metrics.first_delay(
            attempt_number=delivery.attempts,
            event_created_at=event.created_at if event is not None else None,
            started=outcome.started,
        ),
    )


def _settlement(outcome: _Outcome, *, now: datetime) -> dict:
    """The delivery's fields after this attempt, as ``retry.decide`` decided."""
    decision = outcome.decision
    changes: dict = {
        "claimed_until": None,
        "last_status_code": outcome.summary["status_code"] if outcome.summary else None,
        "updated_at": now,
        "status": decision.status,
        "last_error": decision.error,
        "next_attempt_at": decision.next_attempt_at(now),
    }
    if decision.status is not DeliveryStatus.RETRYING:
        changes["finished_at"] = now
    return changes


def _apply(delivery: Delivery, changes: dict) -> None:
    for field, value in changes.items():
        setattr(delivery, field, value)


def _give_back(deliveries: list[Delivery], *, until: datetime, offer: datetime | None = None) -> None:
    """Return claimed deliveries that were not attempted, as if never claimed, due at ``until``; with ``offer``,
    marked offered until then (they are being published: nothing else hands them on meanwhile)."""
    Delivery.objects.filter(pk__in=[d.pk for d in deliveries], status=DeliveryStatus.SENDING).update(
        status=Case(When(attempts=1, then=Value(DeliveryStatus.PENDING)), default=Value(DeliveryStatus.RETRYING)),
        attempts=F("attempts") - 1,
        claimed_until=offer,
        next_attempt_at=until,
    )
    for delivery in deliveries:
        delivery.attempts -= 1
        delivery.status = DeliveryStatus.PENDING if delivery.attempts == 0 else DeliveryStatus.RETRYING
        delivery.claimed_until, delivery.next_attempt_at = offer, until


def _attempt_log(outcome: _Outcome, *, disabled: set[int]) -> None:
    """One line per attempt, for operators. The destination (scheme, host, port), never the URL, whose path or query
    may hold a token; the error is the recorded one, secrets already scrubbed."""
    delivery, decision = outcome.delivery, outcome.decision
    if decision.verdict is retry.Verdict.SUCCEEDED:
        verdict = "succeeded"
    elif outcome.webhook_off or delivery.webhook_id in disabled:
        verdict = "webhook disabled"
    elif decision.status is DeliveryStatus.RETRYING:
        verdict = (
            f"retrying at {delivery.next_attempt_at:%Y-%m-%dT%H:%M:%SZ}" if delivery.next_attempt_at else "retrying"
        )
    else:
        verdict = "failed"
    status_code = outcome.summary["status_code"] if outcome.summary else None
    duration_ms = round(outcome.summary["duration_ms"]) if outcome.summary else 0
    error = outcome.error[:200]
    logger.info(
        "delivery %s attempt %s (webhook %s, %s): %s in %s ms, %s",
        delivery.pk, delivery.attempts, delivery.webhook_id, delivery.destination,
        status_code if status_code is not None else error or "no answer", duration_ms, verdict,
        extra={"delivery_id": str(delivery.pk), "attempt": delivery.attempts, "webhook_id": delivery.webhook_id,
               "destination": delivery.destination, "status_code": status_code, "error": error,
               "duration_ms": duration_ms, "verdict": verdict},
    )  # fmt: skip


def _webhooks_health(outcomes: list[_Outcome], *, now: datetime) -> set[int]:
    """Apply the attempts to each webhook's health as if one after another: only what follows the last success
    matters, after that success has cleared the webhook. Returns the webhooks these attempts disabled.

    Webhooks are written in id order: batches of one destination hold deliveries of several webhooks, and two
    recording at once would otherwise lock the same rows in opposite orders (a deadlock, seen in an outage)."""
    disabled: set[int] = set()
    by_webhook: dict[int, list[_Outcome]] = {}
    for outcome in outcomes:
        if outcome.delivery.webhook_id:
            by_webhook.setdefault(outcome.delivery.webhook_id, []).append(outcome)
    for webhook_id, seen in sorted(by_webhook.items()):
        verdicts = [o.decision.verdict for o in seen]
        last_success = max((i for i, v in enumerate(verdicts) if v is retry.Verdict.SUCCEEDED), default=None)
        if last_success is not None and not _healthy_when_claimed(seen[last_success].delivery):
            Webhook.objects.filter(pk=webhook_id).exclude(failing_since=None, last_error="").update(
                failing_since=None, last_error=""
            )
        failures = seen[(last_success + 1 if last_success is not None else 0) :]
        if failures and _webhook_failed(webhook_id, failures, now=now):
            disabled.add(webhook_id)
    return disabled


def _healthy_when_claimed(delivery: Delivery) -> bool:
    """Whether the delivery's webhook showed no failure when the batch was claimed: a success then has nothing to
    clear, and no statement is spent on it. A failure recorded since by another batch is cleared by the next
    success."""
    webhook = delivery.webhook if _WEBHOOK_FIELD.is_cached(delivery) else None
    return webhook is not None and webhook.failing_since is None and not webhook.last_error


def _webhook_failed(webhook_id: int, failures: list[_Outcome], *, now: datetime) -> bool:
    """Note a run of failed attempts on their webhook, in three statements however long the run; True when it
    disabled the webhook. The last error is shown; a 410 Gone among them disables it."""
    gone = next((o for o in failures if o.decision.verdict is retry.Verdict.GONE), None)
    deciding = gone or failures[-1]
    verdict, error = deciding.decision.verdict, deciding.described
    webhooks = Webhook.objects.filter(pk=webhook_id)
    webhooks.update(last_error=f"{now:%Y-%m-%d %H:%M:%S} UTC: {failures[-1].described}"[:2000])
    webhooks.filter(failing_since=None).update(failing_since=now)
    failing_since = None if gone else webhooks.values_list("failing_since", flat=True).first()
    reason = retry.webhook_disable_reason(verdict, error=error, failing_since=failing_since, now=now)
    if reason is None:
        return False
    webhook = webhooks.only("team_id", "name", "url").first()
    if webhook_disable(webhook_id=webhook_id, reason=reason) and webhook is not None:
        occurrences_record(
            [
                Happened(
                    team_id=webhook.team_id,
                    kind=AlertKind.WEBHOOK_DISABLED,
                    subject_id=webhook_id,
                    subject_name=webhook.name,
                    at=now,
                    detail={"reason": reason[:500], "destination": safe_http.destination_key(webhook.url)},
                )
            ]
        )
    return True
