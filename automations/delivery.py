"""Sending deliveries: claim, render, sign, send through the safe client, record the attempt, decide what next.

Deliveries travel in batches of one destination and team each: one task, one send slot (``fairness``), one claim,
one transaction recording the attempts, so the per-delivery cost is the request itself. The claim is a conditional
UPDATE (pending/retrying and due → sending, with a lease), so a task delivered twice never sends twice at once; the
batch a dispatching task sends itself is written already claimed, in the dispatch transaction.
Long waits live in ``next_attempt_at``; the beat sweep sends whatever is due, and also takes back deliveries whose
worker died mid-attempt once their lease lapses.
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import TypeVar

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Case, F, Q, Value, When
from django.utils import timezone

from core.errors import Conflict
from core.publish import task_send
from registry.models import Event, Team
from secrets_vault.crypto import DecryptionError
from secrets_vault.services import secret_values, secret_values_decrypt

from . import fairness, rendering, retry, safe_http, signing
from .choices import CLAIMABLE, DeliveryStatus
from .models import Delivery, DeliveryAttempt, Webhook
from .services import webhook_disable

logger = logging.getLogger(__name__)
T = TypeVar("T")

USER_AGENT = "registry-automations-webhooks/0.1"
STORED_BODY_CHARS = 4096


class RequestError(Exception):
    """The request could not be built (a secret is gone, the template no longer renders): a permanent failure."""


@dataclass(frozen=True)
class PreparedRequest:
    body: bytes
    headers: dict[str, str]
    # Name → value of every secret used, so anything recorded can be scrubbed of them.
    secrets: dict[str, str]


def _secret_references(template: dict) -> set[str]:
    return {
        name
        for name in rendering.template_variables(template)
        if name not in rendering.VARIABLES and not name.startswith("artifact_metadata.")
    }


def request_prepare(
    *,
    team: Team,
    template: dict,
    context: dict,
    secret_name: str,
    access_token_name: str,
    msg_id: str,
    secrets_of=secret_values,
) -> PreparedRequest:
    """Render and sign one request. Secrets are decrypted here, at send time, and nowhere else."""
    wanted = _secret_references(template) | {n for n in (secret_name, access_token_name) if n}
    try:
        secrets = secrets_of(team=team, names=wanted)
    except DecryptionError as exc:
        raise RequestError(f"A secret could not be decrypted: {exc}") from exc
    if missing := sorted(wanted - secrets.keys()):
        raise RequestError(f"Secret(s) {', '.join(missing)} no longer exist in {team.name}.")
    try:
        body = rendering.render(template, context=context, secrets=secrets)
    except rendering.TemplateError as exc:
        raise RequestError(f"The payload no longer renders: {exc.message}") from exc
    headers = signing.signature_headers(
        secret=secrets.get(secret_name) if secret_name else None,
        access_token=secrets.get(access_token_name) if access_token_name else None,
        msg_id=msg_id,
        timestamp=int(time.time()),
        body=body,
        user_agent=USER_AGENT,
    )
    return PreparedRequest(body=body, headers=headers, secrets=secrets)


def redact(text: str, secrets: dict[str, str]) -> str:
    """Replace any secret value an endpoint echoed back (or an error quoted) with its ``${NAME}``."""
    for name, value in sorted(secrets.items(), key=lambda item: -len(item[1])):
        if value:
            text = text.replace(value, "${" + name + "}")
    return text


def http_send(url: str, prepared: PreparedRequest, *, reuse: safe_http.Reuse | None = None) -> safe_http.HttpResponse:
    return safe_http.post(
        url,
        body=prepared.body,
        headers=prepared.headers,
        reuse=reuse,
        connect_timeout=settings.WEBHOOK_CONNECT_TIMEOUT,
        read_timeout=settings.WEBHOOK_READ_TIMEOUT,
        deadline=settings.WEBHOOK_DEADLINE,
        max_response_bytes=settings.WEBHOOK_MAX_RESPONSE_BYTES,
    )


def response_summary(response: safe_http.HttpResponse, secrets: dict[str, str]) -> dict:
    """What may be stored or shown of a response: truncated, decoded, with secrets scrubbed."""
    body = response.body[:STORED_BODY_CHARS].decode("utf-8", errors="replace")
    return {
        "status_code": response.status_code,
        "headers": {k: redact(v, secrets) for k, v in response.headers.items()},
        "body": redact(body, secrets),
        "duration_ms": round(response.duration_ms, 1),
        "error": redact(response.error, secrets),
    }


# Headers that carry a secret, or a signature made with one: shown masked, past their scheme ("Bearer ", "v1,").
SECRET_HEADERS = frozenset({"authorization", "x-wandb-signature", "webhook-signature"})
MASK = "••••••••"
_SCHEME = re.compile(r"^(?:[A-Za-z]+ |v\d+,)")


def _masked(value: str) -> str:
    scheme = _SCHEME.match(value)
    return (scheme.group() if scheme else "") + MASK


def request_shown(prepared: PreparedRequest) -> dict:
    """A request as sent, for people to read: secret-bearing headers masked, secrets in the body as ``${NAME}``."""
    headers = {
        name: _masked(value) if name.lower() in SECRET_HEADERS else redact(value, prepared.secrets)
        for name, value in prepared.headers.items()
    }
    return {"headers": headers, "body": redact(prepared.body.decode("utf-8", errors="replace"), prepared.secrets)}


# --- Scheduling -----------------------------------------------------------------------------------------

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


def _row_key(delivery: Delivery) -> BatchKey:
    return delivery.destination, delivery.team_id


def _values_key(row: tuple) -> BatchKey:
    return row[1], row[2]


def deliveries_publish(
    delivery_ids: list[str], *, destination: str, team_id: int, countdown: float | None = None
) -> bool:
    """Hand one batch to the deliveries workers. Never raises (see ``task_send``)."""
    from .tasks import deliveries_send

    return task_send(deliveries_send, list(delivery_ids), destination, team_id, countdown=countdown)


def _publish_rows(group: list[Delivery]) -> None:
    deliveries_publish([str(d.pk) for d in group], destination=group[0].destination, team_id=group[0].team_id)


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
    groups = batches(pending, key_of=_row_key)
    claimed, slot_id, published = _dispatch_claim(groups, fan_out=len(pending))
    free = defaultdict(lambda: settings.DELIVERY_DESTINATION_MAX_SENDS)
    if claimed:
        free[claimed[0].destination] -= 1
    published, held_back = _shared_out(published, free, destination_of=_row_key)
    for destination in held_back:
        fairness.waiting_again(destination)  # each slot that frees there hands one more on
    offer = _offer_end(timezone.now())
    for group in published:
        for delivery in group:
            delivery.claimed_until = offer
    Delivery.objects.bulk_create(deliveries)
    if groups:
        transaction.on_commit(partial(_deliveries_start, published, claimed, slot_id))


def _dispatch_claim(
    groups: list[list[Delivery]], *, fan_out: int
) -> tuple[list[Delivery], int | None, list[list[Delivery]]]:
    """Claim the first batch for the dispatching task, if the fan-out is small, a permit is free and the
    destination grants a slot. Returns (claimed, slot id, batches to publish)."""
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
    return first, grant.slot_id, rest


def _shared_out(
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


def _deliveries_start(published: list[list[Delivery]], claimed: list[Delivery], slot_id: int | None) -> None:
    for group in published:
        _publish_rows(group)
    if not claimed:
        return
    try:
        _send_claimed(claimed, destination=claimed[0].destination, slot_id=slot_id)
    except Exception as exc:
        # The deliveries are written and claimed: whatever this attempt did not record, the sweep takes back once
        # the claim lapses. Only the type: messages may quote data.
        logger.warning("deliveries of a dispatch not sent by it (%s); left to the sweep", type(exc).__name__)
    finally:
        _sender_release()


def deliveries_waiting() -> int | None:
    """How many delivery tasks wait in the broker for a worker, or None when the broker cannot say."""
    from celery import current_app
    from kombu.exceptions import ChannelError

    queue = settings.CELERY_TASK_ROUTES["automations.tasks.deliveries_send"]["queue"]
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
    free = fairness.slots_free({row[1] for row in due}, now=now)
    groups, _ = _shared_out(batches(due, key_of=_values_key), free, destination_of=_values_key, room=room)
    _offer([pk for group in groups for pk, _, _ in group], now=now)
    for group in groups:
        deliveries_publish([str(pk) for pk, _, _ in group], destination=group[0][1], team_id=group[0][2])
    sent = sum(len(group) for group in groups)
    if sent:
        logger.info("deliveries sweep: %d due deliveries sent to the workers in %d tasks", sent, len(groups))
    return sent


def delivery_redeliver(*, delivery: Delivery) -> Delivery:
    """Send a delivery again, with the same id (webhook-id), now. Its attempt history is kept."""
    updated = (
        Delivery.objects.filter(pk=delivery.pk)
        .exclude(status=DeliveryStatus.SENDING)
        .update(status=DeliveryStatus.PENDING, next_attempt_at=timezone.now(), finished_at=None, claimed_until=None)
    )
    if not updated:
        raise Conflict("This delivery is being sent right now; try again when the attempt ends.")
    transaction.on_commit(lambda: _publish_rows([delivery]))
    delivery.refresh_from_db()
    return delivery


# --- Attempts -------------------------------------------------------------------------------------------


@dataclass
class _Outcome:
    delivery: Delivery
    started: datetime
    summary: dict | None
    error: str
    verdict: retry.Verdict
    answer: fairness.Answer | None  # what it says about the destination (None: nothing reached it)


def _claim(delivery_ids: Iterable[object]) -> list[Delivery]:
    """Claim the due, unclaimed ones of these deliveries in one conditional UPDATE (RETURNING says which this call
    got: a delivery claimed elsewhere meanwhile is left alone), then load them, in the order given."""
    pk_field = Delivery._meta.pk
    wanted = [pk_field.to_python(pk) for pk in delivery_ids]
    if not wanted:
        return []
    now = timezone.now()
    ops, quote = connection.ops, connection.ops.quote_name
    c = {name: quote(Delivery._meta.get_field(name).column) for name in
         ("status", "claimed_until", "attempts", "updated_at", "next_attempt_at", "id")}  # fmt: skip
    placeholders = ", ".join(["%s"] * len(wanted))
    # Only quoted identifiers from the model's metadata are formatted in; every value is a parameter.
    sql = (
        f"UPDATE {quote(Delivery._meta.db_table)} SET {c['status']} = %s, {c['claimed_until']} = %s, "  # noqa: S608
        f"{c['attempts']} = {c['attempts']} + 1, {c['updated_at']} = %s "
        f"WHERE {c['id']} IN ({placeholders}) AND {c['status']} IN (%s, %s) "
        f"AND ({c['next_attempt_at']} IS NULL OR {c['next_attempt_at']} <= %s) RETURNING {c['id']}"
    )
    stamp = ops.adapt_datetimefield_value
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
        claimed = {pk_field.to_python(row[0]) for row in cursor.fetchall()}
    if not claimed:
        return []
    # With the webhook's signing-secret and access-token rows: a batch that needs only those reads no secrets.
    rows = Delivery.objects.select_related("team", "webhook__secret", "webhook__access_token").in_bulk(claimed)
    # Deliveries of a batch mostly share one event: its context is read once, not once per delivery.
    events = Event.objects.in_bulk({row.event_id for row in rows.values()})
    for row in rows.values():
        row.event = events[row.event_id]
    return [rows[pk] for pk in wanted if pk in rows]


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
                _park(wanted, until=grant.wait_until)
            elif grant.hand_over:
                transaction.on_commit(
                    partial(deliveries_publish, [str(pk) for pk in wanted], destination=destination, team_id=team_id)
                )
            return {}
        claimed = _claim(wanted[:1] if grant.probe else wanted)
        if not claimed:
            fairness.slot_release(grant.slot_id)
            return {}
    return _send_claimed(claimed, destination=destination, slot_id=grant.slot_id)


def _park(delivery_ids: list[object], *, until: datetime) -> None:
    """Leave deliveries waiting for their destination's breaker: due again when it half-opens."""
    Delivery.objects.filter(pk__in=delivery_ids, status__in=CLAIMABLE, next_attempt_at__lt=until).update(
        next_attempt_at=until
    )


def _send_claimed(claimed: list[Delivery], *, destination: str, slot_id: int) -> dict[str, str]:
    """Attempt claimed deliveries one after another, holding the send slot.

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
    try:
        with safe_http.Reuse() as connection_kept:  # one connection for the batch, while the endpoint keeps it open
            for index, delivery in enumerate(claimed):
                outcome = _attempt(delivery, secrets_of=secrets_of, gone=gone, reuse=connection_kept)
                outcomes.append(outcome)
                if outcome.verdict is retry.Verdict.GONE and delivery.webhook_id:
                    gone.add(delivery.webhook_id)
                if outcome.answer is not None:
                    bad_in_a_row = bad_in_a_row + 1 if outcome.answer.bad else 0
                rest = claimed[index + 1 :]
                if rest and bad_in_a_row >= settings.DESTINATION_OPEN_AFTER:
                    _record(outcomes, destination=destination, slot_id=slot_id, give_back=rest)
                    return {str(d.pk): d.status for d in claimed[: index + 1]}
                if rest and time.monotonic() - last_record >= RECORD_EVERY:
                    _record(outcomes, destination=destination, slot_id=slot_id, extend=rest)
                    outcomes, last_record = [], time.monotonic()
    except BaseException:
        # Unrecorded attempts are taken back by the sweep once their lease lapses; the slot need not wait for it.
        with contextlib.suppress(Exception):
            fairness.slot_release(slot_id)
        raise
    _record(outcomes, destination=destination, slot_id=slot_id, final=True)
    return {str(d.pk): d.status for d in claimed}


# Seconds a batch keeps finished attempts unrecorded while it sends the next ones.
RECORD_EVERY = 0.25


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
    secrets: dict[str, str] = {}
    response = None
    if webhook is not None and (not webhook.enabled or webhook.pk in gone):
        why = "The endpoint answered 410 Gone." if webhook.pk in gone else webhook.disabled_reason or "by an admin"
        error = f"Webhook disabled: {why}"
        verdict = retry.Verdict.FAILED
    else:
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
        except RequestError as exc:
            error, verdict = str(exc), retry.Verdict.FAILED
        except Exception as exc:
            # Not a refusal but a fault of ours: recorded and retried on the schedule instead of leaving the
            # delivery claimed until its lease lapses. Only the type is logged: messages may quote the payload.
            logger.error("delivery %s: %s while preparing the request", delivery.pk, type(exc).__name__)
            error = f"Internal error while preparing the request ({type(exc).__name__})."
            verdict = retry.Verdict.RETRY
        else:
            secrets = prepared.secrets
            response = http_send(delivery.url, prepared, reuse=reuse)
            error = response.error
            verdict = (
                retry.Verdict.FAILED
                if response.refused
                else retry.classify(response.status_code, network_error=response.status_code is None)
            )
    summary = response_summary(response, secrets) if response else None
    error = redact(error, secrets)
    answer = None
    if response is not None and not response.refused:
        answer = fairness.Answer(
            failed=verdict is retry.Verdict.RETRY,
            seconds=response.duration_ms / 1000,
            error=error or f"HTTP {response.status_code}",
        )
    return _Outcome(delivery, started=started, summary=summary, error=error, verdict=verdict, answer=answer)


@transaction.atomic
def _record(
    outcomes: list[_Outcome],
    *,
    destination: str,
    slot_id: int,
    extend: list[Delivery] = (),
    give_back: list[Delivery] = (),
    final: bool = False,
) -> None:
    """Record the attempts, settle the deliveries and update the webhooks' health and the destination's breaker
    together: no one sees one without the others. Only the holder of a claim may settle it (a lapsed lease may have
    been taken over). ``extend`` keeps the rest of a batch (and its slot) claimed; ``give_back`` returns it unsent,
    and with ``final`` the slot is released and whatever was refused one meanwhile is handed on."""
    now = timezone.now()
    DeliveryAttempt.objects.bulk_create(
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
    )
    # Successes settle alike but for their status code: one UPDATE per (attempt number, status code).
    succeeded: dict[tuple[int, int | None], tuple[dict, list[Delivery]]] = {}
    for outcome in outcomes:
        delivery = outcome.delivery
        changes, countdown = _settlement(outcome, now=now)
        if outcome.verdict is retry.Verdict.SUCCEEDED:
            succeeded.setdefault((delivery.attempts, changes["last_status_code"]), (changes, []))[1].append(delivery)
            continue
        settled = Delivery.objects.filter(pk=delivery.pk, status=DeliveryStatus.SENDING, attempts=delivery.attempts)
        if settled.update(**changes):
            _apply(delivery, changes)
            if countdown is not None:
                transaction.on_commit(
                    partial(
                        deliveries_publish,
                        [str(delivery.pk)],
                        destination=delivery.destination,
                        team_id=delivery.team_id,
                        countdown=countdown,
                    )
                )
    for (attempts, _), (changes, group) in succeeded.items():
        Delivery.objects.filter(pk__in=[d.pk for d in group], status=DeliveryStatus.SENDING, attempts=attempts).update(
            **changes
        )
        for delivery in group:
            _apply(delivery, changes)
    if extend:
        lease = now + timedelta(seconds=settings.DELIVERY_CLAIM_LEASE)
        Delivery.objects.filter(pk__in=[d.pk for d in extend], status=DeliveryStatus.SENDING).update(
            claimed_until=lease
        )
        fairness.slot_extend(slot_id, now=now)
    _webhooks_health(outcomes, now=now)
    open_until = fairness.breaker_record(destination, [o.answer for o in outcomes if o.answer is not None], now=now)
    if give_back:
        _give_back(give_back, until=open_until or now)
    if open_until is not None:
        _park_destination(destination, until=open_until)
    if final or give_back:
        fairness.slot_release(slot_id)
        if open_until is None and fairness.handoff_wanted(destination):
            _hand_on(destination, now=now)


def _give_back(deliveries: list[Delivery], *, until: datetime) -> None:
    """Return claimed deliveries that were not attempted, as if never claimed, due at ``until``."""
    Delivery.objects.filter(pk__in=[d.pk for d in deliveries], status=DeliveryStatus.SENDING).update(
        status=Case(When(attempts=1, then=Value(DeliveryStatus.PENDING)), default=Value(DeliveryStatus.RETRYING)),
        attempts=F("attempts") - 1,
        claimed_until=None,
        next_attempt_at=until,
    )
    for delivery in deliveries:
        delivery.refresh_from_db(fields=["status", "attempts", "next_attempt_at", "claimed_until"])


def _park_destination(destination: str, *, until: datetime) -> None:
    """The breaker just opened: everything due at the destination waits for it to half-open."""
    Delivery.objects.filter(destination=destination, status__in=CLAIMABLE, next_attempt_at__lt=until).update(
        next_attempt_at=until
    )


def _hand_on(destination: str, *, now: datetime) -> None:
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
        partial(deliveries_publish, [str(pk) for pk in ids], destination=destination, team_id=group[0][2])
    )


# Seconds a published batch is not handed on again: the task it went to claims it in far less, unless it was lost
# or refused, and then a send ending at its destination offers it again.
OFFER_SECONDS = 5.0


def _offer_end(now: datetime) -> datetime:
    """On a due (pending or retrying) delivery, ``claimed_until`` is the end of its offer: until then it has been
    published to a task that should claim it, and ``_hand_on`` leaves it alone."""
    return now + timedelta(seconds=OFFER_SECONDS)


def _offer(delivery_ids: list[object], *, now: datetime) -> None:
    Delivery.objects.filter(pk__in=delivery_ids, status__in=CLAIMABLE).update(claimed_until=_offer_end(now))


def _apply(delivery: Delivery, changes: dict) -> None:
    for field, value in changes.items():
        setattr(delivery, field, value)


def _settlement(outcome: _Outcome, *, now: datetime) -> tuple[dict, float | None]:
    """The delivery's new state after this attempt, and the countdown of a short retry sent with its task."""
    delivery, summary, verdict = outcome.delivery, outcome.summary, outcome.verdict
    status_code = summary["status_code"] if summary else None
    changes: dict = {"claimed_until": None, "last_status_code": status_code, "updated_at": now}
    described = _described(outcome)
    if verdict is retry.Verdict.SUCCEEDED:
        changes.update(status=DeliveryStatus.SUCCEEDED, finished_at=now, last_error="", next_attempt_at=None)
        return changes, None
    if verdict is retry.Verdict.RETRY:
        retry_after = retry.parse_retry_after(_header(summary, "retry-after"), now=now)
        delay = retry.next_attempt_delay(attempts_made=delivery.attempts, retry_after=retry_after)
        if delay is not None:
            changes.update(
                status=DeliveryStatus.RETRYING, next_attempt_at=now + timedelta(seconds=delay), last_error=described
            )
            return changes, delay if delay <= settings.DELIVERY_COUNTDOWN_MAX else None
        described = f"{described}; gave up after {delivery.attempts} attempts."
    changes.update(status=DeliveryStatus.FAILED, finished_at=now, next_attempt_at=None, last_error=described)
    return changes, None


def _described(outcome: _Outcome) -> str:
    return outcome.error or f"HTTP {outcome.summary['status_code'] if outcome.summary else None}"


def _header(summary: dict | None, name: str) -> str | None:
    if not summary:
        return None
    return next((v for k, v in summary["headers"].items() if k.lower() == name), None)


def _webhooks_health(outcomes: list[_Outcome], *, now: datetime) -> None:
    """Apply the attempts to each webhook's health as if one after another: only what follows the last success
    matters, after that success has cleared the webhook."""
    by_webhook: dict[int, list[_Outcome]] = {}
    for outcome in outcomes:
        if outcome.delivery.webhook_id:
            by_webhook.setdefault(outcome.delivery.webhook_id, []).append(outcome)
    for webhook_id, seen in by_webhook.items():
        last_success = max((i for i, o in enumerate(seen) if o.verdict is retry.Verdict.SUCCEEDED), default=None)
        if last_success is not None:
            _webhook_health(webhook_id, verdict=retry.Verdict.SUCCEEDED, error="", now=now)
        for outcome in seen[(last_success + 1 if last_success is not None else 0) :]:
            _webhook_health(webhook_id, verdict=outcome.verdict, error=_described(outcome), now=now)


def _webhook_health(webhook_id: int, *, verdict: retry.Verdict, error: str, now) -> None:
    webhooks = Webhook.objects.filter(pk=webhook_id)
    if verdict is retry.Verdict.SUCCEEDED:
        webhooks.exclude(failing_since=None, last_error="").update(failing_since=None, last_error="")
        return
    webhooks.update(last_error=f"{now:%Y-%m-%d %H:%M:%S} UTC: {error}"[:2000])
    webhooks.filter(failing_since=None).update(failing_since=now)
    if verdict is retry.Verdict.GONE:
        webhook_disable(webhook_id=webhook_id, reason=f"The endpoint answered 410 Gone on {now:%Y-%m-%d %H:%M} UTC.")
        return
    limit = timedelta(seconds=settings.WEBHOOK_DISABLE_AFTER)
    if webhooks.filter(failing_since__lt=now - limit).exists():
        webhook_disable(
            webhook_id=webhook_id,
            reason=f"Every delivery failed for more than {limit}; last error: {error}"[:2000],
        )
