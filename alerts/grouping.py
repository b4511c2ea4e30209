"""Folding occurrences into alerts, and alerts into notices: how a burst of 1,000 failed deliveries becomes one
alert and one message.

A team's occurrences are a burst until none has come for ``ALERT_GROUP_WAIT`` seconds, or until the oldest is
``ALERT_GROUP_MAX_WAIT`` old (a long outage is still told about while it lasts). The burst is then folded into one
alert per kind and subject (a webhook, an agent), and those into one e-mail to the team's admins and one request per
alert to each of the team's operational webhooks.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Count, Max, Min

from automations.models import Webhook
from core.roles import Role
from registry.models import Membership, Team

from .choices import AlertKind, Channel, kind_rank
from .models import Alert, Notice, Occurrence

logger = logging.getLogger(__name__)

# Occurrences kept on an alert as examples (ids of deliveries or items, errors); the count covers the rest.
SAMPLES = 10
# Alerts about a webhook are not sent to that webhook: it is the one failing.
_ABOUT_A_WEBHOOK = (AlertKind.WEBHOOK_DISABLED, AlertKind.DELIVERY_FAILED)


def alerts_group(*, now: datetime) -> list[Notice]:
    """Fold every team's finished burst into alerts and notices; returns the notices written."""
    wait = timedelta(seconds=settings.ALERT_GROUP_WAIT)
    max_wait = timedelta(seconds=settings.ALERT_GROUP_MAX_WAIT)
    bursts = Occurrence.objects.values("team_id").annotate(first=Min("at"), last=Max("at")).order_by()
    notices: list[Notice] = []
    for burst in bursts:
        if _finished(burst["first"], burst["last"], now=now, wait=wait, max_wait=max_wait):
            with transaction.atomic():
                notices += _team_fold(burst["team_id"], now=now, wait=wait, max_wait=max_wait)
    return notices


def _finished(first: datetime, last: datetime, *, now: datetime, wait: timedelta, max_wait: timedelta) -> bool:
    return last <= now - wait or first <= now - max_wait


def _team_fold(team_id: int, *, now: datetime, wait: timedelta, max_wait: timedelta) -> list[Notice]:
    # The team's row lock makes two flushes fold one after the other (FOR NO KEY UPDATE: rows that refer to the team
    # are still written meanwhile); the second finds nothing left.
    team = Team.objects.select_for_update(no_key=True).filter(pk=team_id).first()
    groups = list(
        Occurrence.objects.filter(team_id=team_id)
        .values("kind", "subject_id")
        .annotate(first=Min("at"), last=Max("at"), top=Max("pk"), n=Count("pk"))
        .order_by()
    )
    if team is None or not groups:
        return []
    if not _finished(
        min(g["first"] for g in groups), max(g["last"] for g in groups), now=now, wait=wait, max_wait=max_wait
    ):
        return []
    alerts = []
    for group in sorted(groups, key=lambda g: (kind_rank(g["kind"]), g["first"])):
        # Up to the highest id seen: an occurrence committed since waits for the next burst, counted there.
        rows = Occurrence.objects.filter(team_id=team_id, kind=group["kind"], subject_id=group["subject_id"])
        rows = rows.filter(pk__lte=group["top"])
        samples = list(rows.order_by("pk").values_list("detail", flat=True)[:SAMPLES])
        last_name, last_detail = rows.order_by("-pk").values_list("subject_name", "detail").first()
        count, _ = rows.delete()
        alerts.append(
            Alert(
                team=team, kind=group["kind"], subject_id=group["subject_id"], subject_name=last_name, count=count,
                first_at=group["first"], last_at=group["last"], samples=samples, last=last_detail,
            )
        )  # fmt: skip
    Alert.objects.bulk_create(alerts)
    return _notices_write(team, alerts, now=now)


def _notices_write(team: Team, alerts: list[Alert], *, now: datetime) -> list[Notice]:
    notices: list[tuple[Notice, list[Alert]]] = []
    recipients = admin_emails(team)
    if recipients:
        notices.append((Notice(team=team, channel=Channel.EMAIL, recipients="\n".join(recipients)), alerts))
    else:
        logger.warning("Alerts for team %s are not e-mailed: none of its admins has an e-mail address.", team.name)
    for webhook in Webhook.objects.filter(team=team, alerts=True, enabled=True).only("pk", "name"):
        for alert in alerts:
            if alert.kind in _ABOUT_A_WEBHOOK and alert.subject_id == webhook.pk:
                continue
            notice = Notice(team=team, channel=Channel.WEBHOOK, webhook_id=webhook.pk, webhook_name=webhook.name)
            notices.append((notice, [alert]))
    for notice, _ in notices:
        notice.next_attempt_at = now
    Notice.objects.bulk_create(n for n, _ in notices)
    Notice.alerts.through.objects.bulk_create(
        Notice.alerts.through(notice_id=notice.pk, alert_id=alert.pk) for notice, about in notices for alert in about
    )
    return [n for n, _ in notices]


def admin_emails(team: Team) -> list[str]:
    """The e-mail addresses of the team's active admins, each once."""
    addresses = Membership.objects.filter(team=team, role=Role.ADMIN, user__is_active=True).exclude(user__email="")
    return sorted(set(addresses.values_list("user__email", flat=True)))
