"""Sending deliveries: claim, render, sign, send through the safe client, record the attempt, decide what next.

The claim is a conditional UPDATE (pending/retrying and due → sending, with a lease), so a task delivered twice
never sends twice at once. Long waits live in ``next_attempt_at``; the beat sweep sends whatever is due, and also
takes back deliveries whose worker died mid-attempt once their lease lapses.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from registry.errors import ApplicationError, Conflict
from registry.models import Team
from registry.outbox import task_send
from secrets_vault.crypto import DecryptionError
from secrets_vault.services import secret_values

from . import rendering, retry, safe_http, signing
from .choices import CLAIMABLE, DeliveryStatus
from .models import Delivery, DeliveryAttempt, Webhook
from .selectors import sample_context
from .services import payload_validate, webhook_disable

logger = logging.getLogger(__name__)

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
    *, team: Team, template: dict, context: dict, secret_name: str, access_token_name: str, msg_id: str
) -> PreparedRequest:
    """Render and sign one request. Secrets are decrypted here, at send time, and nowhere else."""
    wanted = _secret_references(template) | {n for n in (secret_name, access_token_name) if n}
    try:
        secrets = secret_values(team=team, names=wanted)
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


def http_send(url: str, prepared: PreparedRequest) -> safe_http.HttpResponse:
    return safe_http.post(
        url,
        body=prepared.body,
        headers=prepared.headers,
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


# --- Scheduling -----------------------------------------------------------------------------------------


def delivery_schedule(delivery_id: object, *, countdown: float | None = None) -> bool:
    from .tasks import delivery_send

    return task_send(delivery_send, str(delivery_id), countdown=countdown)


def deliveries_waiting() -> int | None:
    """How many delivery tasks wait in the broker for a worker, or None when the broker cannot say."""
    from celery import current_app
    from kombu.exceptions import ChannelError

    queue = settings.CELERY_TASK_ROUTES["automations.tasks.delivery_send"]["queue"]
    try:
        with current_app.connection_for_read() as connection:
            return connection.default_channel.queue_declare(queue=queue, passive=True).message_count
    except ChannelError:
        return 0  # never declared: no worker ever listened and nothing was sent, so nothing waits
    except Exception as exc:
        logger.warning("deliveries sweep: the broker's queue length is unknown (%r)", exc)
        return None


def deliveries_sweep(*, limit: int = 1000) -> int:
    """Send what is due, and take back deliveries whose worker died mid-attempt. Returns how many were sent.

    The sweep never fills the deliveries queue beyond ``limit`` waiting tasks. When the workers are behind, a
    delivery still waiting in the queue is late without being lost, and a task sent again would only queue up behind
    it as a duplicate: resent every sweep, those duplicates grew faster than the workers could drop them.
    """
    now = timezone.now()
    Delivery.objects.filter(status=DeliveryStatus.SENDING, claimed_until__lt=now).update(
        status=DeliveryStatus.RETRYING,
        next_attempt_at=now,
        claimed_until=None,
        last_error="The worker stopped during an attempt; it is sent again.",
    )
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
        .values_list("pk", flat=True)[:room]
    )
    for pk in due:
        delivery_schedule(pk)
    if due:
        logger.info("deliveries sweep: %d due deliveries sent to the workers", len(due))
    return len(due)


def delivery_redeliver(*, delivery: Delivery) -> Delivery:
    """Send a delivery again, with the same id (webhook-id), now. Its attempt history is kept."""
    updated = (
        Delivery.objects.filter(pk=delivery.pk)
        .exclude(status=DeliveryStatus.SENDING)
        .update(status=DeliveryStatus.PENDING, next_attempt_at=timezone.now(), finished_at=None, claimed_until=None)
    )
    if not updated:
        raise Conflict("This delivery is being sent right now; try again when the attempt ends.")
    transaction.on_commit(lambda: delivery_schedule(delivery.pk))
    delivery.refresh_from_db()
    return delivery


# --- One attempt ----------------------------------------------------------------------------------------


def _claim(delivery_id: object) -> Delivery | None:
    now = timezone.now()
    claimed = (
        Delivery.objects.filter(pk=delivery_id, status__in=CLAIMABLE)
        .filter(Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now))
        .update(
            status=DeliveryStatus.SENDING,
            claimed_until=now + timedelta(seconds=settings.DELIVERY_CLAIM_LEASE),
            attempts=F("attempts") + 1,
            updated_at=now,
        )
    )
    if not claimed:
        return None
    return Delivery.objects.select_related("event", "team", "webhook").get(pk=delivery_id)


def delivery_attempt(*, delivery_id: object) -> str | None:
    """Make one attempt if the delivery is due and unclaimed. Returns the resulting status, or None."""
    delivery = _claim(delivery_id)
    if delivery is None:
        return None
    started = timezone.now()
    webhook = delivery.webhook
    secrets: dict[str, str] = {}
    if webhook is not None and not webhook.enabled:
        response = None
        error = f"Webhook disabled: {webhook.disabled_reason or 'by an admin'}"
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
            )
        except RequestError as exc:
            response, error, verdict = None, str(exc), retry.Verdict.FAILED
        except Exception as exc:
            # Not a refusal but a fault of ours: recorded and retried on the schedule instead of leaving the
            # delivery claimed until its lease lapses. Only the type is logged: messages may quote the payload.
            logger.error("delivery %s: %s while preparing the request", delivery.pk, type(exc).__name__)
            response, error, verdict = (
                None,
                f"Internal error while preparing the request ({type(exc).__name__}).",
                retry.Verdict.RETRY,
            )
        else:
            secrets = prepared.secrets
            response = http_send(delivery.url, prepared)
            error = response.error
            verdict = (
                retry.Verdict.FAILED
                if response.refused
                else retry.classify(response.status_code, network_error=response.status_code is None)
            )
    summary = response_summary(response, secrets) if response else None
    _record(delivery, started=started, summary=summary, error=redact(error, secrets), verdict=verdict)
    return delivery.status


@transaction.atomic
def _record(delivery: Delivery, *, started, summary: dict | None, error: str, verdict: retry.Verdict) -> None:
    """Record the attempt, settle the delivery and update the webhook's health together: no one sees one without
    the others."""
    now = timezone.now()
    status_code = summary["status_code"] if summary else None
    DeliveryAttempt.objects.create(
        delivery=delivery,
        number=delivery.attempts,
        started_at=started,
        duration_ms=summary["duration_ms"] if summary else 0,
        status_code=status_code,
        response_headers=summary["headers"] if summary else {},
        response_body=summary["body"] if summary else "",
        error=error,
    )
    changes: dict = {"claimed_until": None, "last_status_code": status_code, "updated_at": now}
    described = error or f"HTTP {status_code}"
    countdown = None
    if verdict is retry.Verdict.SUCCEEDED:
        changes.update(status=DeliveryStatus.SUCCEEDED, finished_at=now, last_error="", next_attempt_at=None)
    elif verdict is retry.Verdict.RETRY:
        retry_after = retry.parse_retry_after(_header(summary, "retry-after"), now=now)
        delay = retry.next_attempt_delay(attempts_made=delivery.attempts, retry_after=retry_after)
        if delay is None:
            changes.update(
                status=DeliveryStatus.FAILED, finished_at=now, next_attempt_at=None,
                last_error=f"{described}; gave up after {delivery.attempts} attempts.",
            )  # fmt: skip
        else:
            changes.update(
                status=DeliveryStatus.RETRYING, next_attempt_at=now + timedelta(seconds=delay), last_error=described
            )
            if delay <= settings.DELIVERY_COUNTDOWN_MAX:
                countdown = delay
    else:
        changes.update(status=DeliveryStatus.FAILED, finished_at=now, next_attempt_at=None, last_error=described)

    # Only the holder of this claim may settle it (a lapsed lease may have been taken over).
    settled = Delivery.objects.filter(pk=delivery.pk, status=DeliveryStatus.SENDING, attempts=delivery.attempts)
    if settled.update(**changes):
        for field, value in changes.items():
            setattr(delivery, field, value)
        if countdown is not None:
            transaction.on_commit(lambda: delivery_schedule(delivery.pk, countdown=countdown))
    if delivery.webhook_id:
        _webhook_health(delivery.webhook_id, verdict=verdict, error=described, now=now)


def _header(summary: dict | None, name: str) -> str | None:
    if not summary:
        return None
    return next((v for k, v in summary["headers"].items() if k.lower() == name), None)


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


# --- Test a webhook -------------------------------------------------------------------------------------


def webhook_test(*, webhook: Webhook, payload: dict | str, context: dict) -> dict:
    """Send a payload once through the production path (render, sign, safety checks); record nothing."""
    template = rendering.template_parse(payload)
    prepared = request_prepare(
        team=webhook.team,
        template=template,
        context=context,
        secret_name=webhook.secret.name if webhook.secret else "",
        access_token_name=webhook.access_token.name if webhook.access_token else "",
        msg_id=str(uuid.uuid4()),
    )
    return response_summary(http_send(webhook.url, prepared), prepared.secrets)


def webhook_test_send(*, webhook: Webhook, payload: object, user) -> dict:
    """Test a webhook, for the API and the admin alike: check ``payload`` as a template of the webhook's team (the
    variables of every event type), render it for a sample event (``selectors.sample_context``) and send it once
    through the production path. Nothing is recorded.

    A payload that cannot be sent is refused with ``ApplicationError(field="payload")`` naming the cause (the
    offending variable, a secret that is gone) and nothing is sent. Otherwise the endpoint's answer, or why none came
    (a timeout, a refused address), is returned as ``response_summary`` gives it, with echoed secrets as ``${NAME}``.
    """
    template = payload_validate(team=webhook.team, payload=payload, event_type=None)
    try:
        return webhook_test(webhook=webhook, payload=template, context=sample_context(team=webhook.team, user=user))
    except rendering.TemplateError as exc:
        raise ApplicationError(exc.message, field="payload") from exc
    except RequestError as exc:
        raise ApplicationError(str(exc), field="payload") from exc
