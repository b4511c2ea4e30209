"""Sending notices: an e-mail through Django's mail settings, or a signed request to an operational webhook.

Both are retried with the webhook retry policy (``automations.retry``), and claimed like deliveries (a conditional
UPDATE with a lease), so two flushes never send one notice at once and a flush that died is taken over.
"""

from __future__ import annotations

import json
import logging
import smtplib
from datetime import datetime, timedelta

from django.conf import settings
from django.core.mail import EmailMessage
from django.db.models import F, Q
from django.urls import reverse
from django.utils import timezone

from automations import prepare, retry
from automations.choices import DeliveryStatus
from automations.models import Webhook
from automations.safe_http import SendError
from core.redaction import redact

from .choices import AlertKind, Channel, NoticeStatus, kind_rank
from .models import Alert, Notice

logger = logging.getLogger(__name__)

# The verdict's delivery status, as a notice's (a spent retry schedule is already FAILED there).
_NOTICE_STATUS = {
    DeliveryStatus.SUCCEEDED: NoticeStatus.SENT,
    DeliveryStatus.RETRYING: NoticeStatus.RETRYING,
    DeliveryStatus.FAILED: NoticeStatus.FAILED,
}
# Notices one flush sends at most; the next flush goes on.
PER_FLUSH = 100
# A notice claimed this much longer than its send may take is taken over.
CLAIM_MARGIN = 30.0


def notices_send(*, now: datetime) -> int:
    """Send the notices that are due (e-mails first), and take over lapsed claims; returns how many were sent."""
    waiting = Q(status__in=[NoticeStatus.PENDING, NoticeStatus.RETRYING], next_attempt_at__lte=now)
    lapsed = Q(status=NoticeStatus.SENDING, claimed_until__lt=now)
    due = Notice.objects.filter(waiting | lapsed).order_by("channel", "next_attempt_at")
    sent = 0
    for pk in list(due.values_list("pk", flat=True)[:PER_FLUSH]):
        notice = _claim(pk, waiting | lapsed, now=now)
        if notice is not None:
            sent += _send(notice)
    return sent


def _claim(pk, due: Q, *, now: datetime) -> Notice | None:
    lease = max(settings.EMAIL_TIMEOUT, settings.WEBHOOK_DEADLINE) + CLAIM_MARGIN
    claimed = Notice.objects.filter(due, pk=pk).update(
        status=NoticeStatus.SENDING, attempts=F("attempts") + 1, claimed_until=now + timedelta(seconds=lease)
    )
    return Notice.objects.select_related("team").get(pk=pk) if claimed else None


def _send(notice: Notice) -> bool:
    alerts = sorted(notice.alerts.select_related("team"), key=lambda a: (kind_rank(a.kind), a.first_at))
    outcome = _email(notice, alerts) if notice.channel == Channel.EMAIL else _webhook_post(notice, alerts[0])
    now = timezone.now()
    if outcome is None:
        status, wait, error = NoticeStatus.SENT, None, ""
    else:
        decision = retry.decide(outcome, attempts_made=notice.attempts, now=now)
        wait, error = decision.wait, decision.error
        status = _NOTICE_STATUS[decision.status]
    Notice.objects.filter(pk=notice.pk, status=NoticeStatus.SENDING, attempts=notice.attempts).update(
        status=status,
        last_error=error[:2000],
        claimed_until=None,
        next_attempt_at=None if wait is None else now + timedelta(seconds=wait),
        finished_at=None if status is NoticeStatus.RETRYING else now,
    )
    log = logger.info if status is NoticeStatus.SENT else logger.warning
    log(
        "alert notice %s (%s, team %s, %s alert(s)) attempt %s: %s%s",
        notice.pk, notice.webhook_name or notice.channel, notice.team.name, len(alerts), notice.attempts, status,
        f", {error}" if error else "",
    )  # fmt: skip
    return status is NoticeStatus.SENT


# --- E-mail ------------------------------------------------------------------------------------------------------


def _email(notice: Notice, alerts: list[Alert]) -> SendError | None:
    """Send the digest; None once the server took it, or why not (``permanent`` when the server refused it)."""
    subject, body = email_compose(notice.team.name, alerts)
    message = EmailMessage(subject=subject, body=body, to=notice.recipients.split())
    try:
        message.send()
    except (smtplib.SMTPRecipientsRefused, smtplib.SMTPSenderRefused) as exc:
        return SendError(_mail_error(exc), permanent=True)
    except smtplib.SMTPResponseException as exc:
        return SendError(_mail_error(exc), permanent=500 <= exc.smtp_code <= 599)
    except (OSError, smtplib.SMTPException) as exc:
        return SendError(_mail_error(exc), permanent=False)
    return None


def _mail_error(exc: Exception) -> str:
    text = f"E-mail not sent: {type(exc).__name__}: {exc}"
    password = settings.EMAIL_HOST_PASSWORD
    return redact(text, {"EMAIL_HOST_PASSWORD": password}) if password else text


def email_compose(team: str, alerts: list[Alert]) -> tuple[str, str]:
    """The digest's subject and plain-text body: every alert's headline, then its details and where to act."""
    headlines = [a.headline for a in alerts]
    subject = f"{settings.EMAIL_SUBJECT_PREFIX}{team}: {headlines[0]}"
    if len(alerts) > 1:
        subject += f" (and {len(alerts) - 1} more)"
    parts = [f"What needs attention in team {team}:\n"]
    for alert, headline in zip(alerts, headlines, strict=True):
        parts.append(f"* {headline}")
        parts += [f"  {line}" for line in _alert_lines(alert)]
        parts.append("")
    parts.append(f"Alerts are grouped: a burst of them is one message. {settings.PUBLIC_BASE_URL}/admin/")
    return subject[:200], "\n".join(parts)


def _alert_lines(alert: Alert) -> list[str]:
    span = f"{alert.first_at:%Y-%m-%d %H:%M:%S} to {alert.last_at:%H:%M:%S} UTC"
    if alert.kind == AlertKind.WEBHOOK_DISABLED:
        return [
            f"At {alert.last_at:%Y-%m-%d %H:%M:%S} UTC ({alert.last.get('destination', '')}): "
            f"{alert.last.get('reason', '')}",
            f"Enable it again once the endpoint is fixed: {_admin_url('automations_webhook_change', alert.subject_id)}",
        ]
    if alert.kind == AlertKind.DELIVERY_FAILED:
        shown = ", ".join(s["delivery"] for s in alert.samples[:3])
        more = f" and {alert.count - 3:,} more" if alert.count > 3 else ""
        return [
            f"From {span}; last error: {alert.last.get('error', '')}",
            f"Deliveries: {shown}{more}.",
            f"Send them again: {_admin_url('automations_webhook_recover', alert.subject_id)}",
        ]
    items = ", ".join(f"{s['item']} ({s['queue']}, {s['held']})" for s in alert.samples[:3])
    more = f" and {alert.count - 3:,} more" if alert.count > 3 else ""
    return [
        f"Its leases lapsed from {span}; last seen {alert.last.get('last_seen_at') or 'never'}.",
        f"Items: {items}{more}. {alert.last.get('outcome', '')}",
        f"The agent: {_admin_url('launch_agent_change', alert.subject_id)}",
    ]


def _admin_url(name: str, pk: int) -> str:
    return (
        settings.PUBLIC_BASE_URL + reverse(f"admin:{name}", args=[pk]) if pk else f"{settings.PUBLIC_BASE_URL}/admin/"
    )


# --- Operational webhook -----------------------------------------------------------------------------------------


def alert_payload(alert: Alert) -> dict:
    """The operational webhook's body for one alert, in the Standard Webhooks shape (type, timestamp, data)."""
    subject = {"id": alert.subject_id or None, "name": alert.subject_name}
    data: dict = {
        "alert_id": str(alert.pk),
        "team": alert.team.name,
        "summary": alert.headline,
        "count": alert.count,
        "first_at": alert.first_at.isoformat(),
        "last_at": alert.last_at.isoformat(),
    }
    if alert.kind == AlertKind.WEBHOOK_DISABLED:
        data["webhook"] = {**subject, "destination": alert.last.get("destination", "")}
        data["reason"] = alert.last.get("reason", "")
        data["admin_url"] = _admin_url("automations_webhook_change", alert.subject_id)
    elif alert.kind == AlertKind.DELIVERY_FAILED:
        data["webhook"] = {**subject, "destination": alert.last.get("destination", "")}
        data["last_error"] = alert.last.get("error", "")
        data["deliveries"] = [s["delivery"] for s in alert.samples]  # the first few; count says how many in all
        data["recover_url"] = _admin_url("automations_webhook_recover", alert.subject_id)
    else:
        data["agent"] = {**subject, "last_seen_at": alert.last.get("last_seen_at")}
        data["items"] = [{k: s.get(k) for k in ("item", "queue", "held", "outcome")} for s in alert.samples]
        data["admin_url"] = _admin_url("launch_agent_change", alert.subject_id)
    return {"type": alert.kind, "timestamp": alert.created_at.isoformat(), "data": data}


def _webhook_post(notice: Notice, alert: Alert) -> retry.Outcome:
    webhook = (
        Webhook.objects.select_related("secret", "access_token").filter(pk=notice.webhook_id, team=notice.team).first()
    )
    if webhook is None or not webhook.enabled or not webhook.alerts:
        gone = "was deleted" if webhook is None else "is disabled" if not webhook.enabled else "no longer takes alerts"
        return SendError(f"Not sent: the webhook {gone}.", permanent=True)
    body = json.dumps(alert_payload(alert), separators=(",", ":")).encode()
    try:
        prepared = prepare.request_sign(
            team=notice.team, body=body, msg_id=str(notice.pk),
            secret_name=webhook.secret.name if webhook.secret else "",
            access_token_name=webhook.access_token.name if webhook.access_token else "",
        )  # fmt: skip
    except SendError as exc:
        return exc
    try:
        outcome: retry.Outcome = prepare.request_send(webhook.url, prepared)
    except SendError as exc:
        outcome = exc
    return prepare.outcome_scrubbed(outcome, prepared.secrets)
