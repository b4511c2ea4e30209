"""What a team admin wants to see first on the admin index: deliveries, broken webhooks, queues and agents.

Everything is narrowed to the teams the user administers (``teams_for``), never to Django model permissions, so
the overview shows exactly what the user is answerable for. The number of queries is fixed: counts are aggregated
in the database and lists are capped, so the index page costs the same with ten deliveries or ten million.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db.models import Count, Q
from django.db.models.functions import TruncHour
from django.urls import reverse
from django.utils import timezone
from django.utils.http import urlencode
from django.utils.text import Truncator

from core.roles import Role
from core.scoping import teams_for
from launch.choices import ACTIVE_STATES, ItemState
from launch.models import Agent, RunQueue, RunQueueItem

from .choices import DeliveryStatus
from .models import Delivery, Webhook

HOURS = 24
# Bottom to top in the chart, and the legend's order: outcomes first, then what is still under way.
STATUS_ORDER = (
    DeliveryStatus.SUCCEEDED,
    DeliveryStatus.FAILED,
    DeliveryStatus.RETRYING,
    DeliveryStatus.SENDING,
    DeliveryStatus.PENDING,
)
# Lists are capped so a team with many broken webhooks or queues cannot make the index page slow; the rest is a
# link away in the changelists.
LIST_LIMIT = 10
REASON_CHARS = 120


def overview_for(user) -> dict | None:
    """The overview of the teams ``user`` administers, or None when there are none (the plain index is shown)."""
    teams = teams_for(user, Role.ADMIN)
    if not teams.exists():
        return None
    now = timezone.now()
    return {
        "deliveries": _deliveries(teams, now),
        "webhooks": _webhooks(teams),
        "queues": _queues(teams),
        "agents": _agents(teams, now),
    }


def _hour_starts(now: datetime) -> list[datetime]:
    """The starts of the last ``HOURS`` hours in the current time zone, the current (partial) hour last.

    Truncated in local time, like ``TruncHour``, so zones whose offset is not a whole number of hours line up;
    stepped back in absolute time (UTC), so a change to or from summer time does not skip or repeat an hour.
    """
    current = timezone.localtime(now).replace(minute=0, second=0, microsecond=0).astimezone(UTC)
    return [current - timedelta(hours=back) for back in range(HOURS - 1, -1, -1)]


def _deliveries(teams, now: datetime) -> dict:
    """Deliveries created per hour and status: one grouped query, whatever the number of deliveries."""
    starts = _hour_starts(now)
    counts = {start: dict.fromkeys(STATUS_ORDER, 0) for start in starts}
    rows = (
        Delivery.objects.filter(team__in=teams, created_at__gte=starts[0])
        .annotate(hour=TruncHour("created_at"))
        .values("hour", "status")
        .annotate(count=Count("pk"))
        .order_by()
    )
    for row in rows:
        hour = counts.get(row["hour"])  # aware datetimes compare as instants
        if hour is not None and row["status"] in hour:
            hour[row["status"]] += row["count"]
    totals = {status: sum(hour[status] for hour in counts.values()) for status in STATUS_ORDER}
    return {
        "hours": [{"start": start, "counts": counts[start]} for start in starts],
        "totals": totals,
        "total": sum(totals.values()),
        "since": starts[0],
    }


def _webhooks(teams) -> dict:
    """Disabled webhooks first (deliveries to them fail at once), then those whose last delivery failed."""
    broken = Webhook.objects.filter(team__in=teams).filter(
        Q(enabled=False) | ~Q(disabled_reason="") | ~Q(last_error="")
    )
    found = list(broken.select_related("team").order_by("enabled", "team__name", "name")[: LIST_LIMIT + 1])
    rows = []
    for webhook in found[:LIST_LIMIT]:
        disabled = not webhook.enabled or bool(webhook.disabled_reason)
        reason = (webhook.disabled_reason if disabled else "") or webhook.last_error or "Disabled by an admin."
        rows.append(
            {
                "name": str(webhook),
                "url": reverse("admin:automations_webhook_change", args=[webhook.pk]),
                "disabled": disabled,
                "reason": Truncator(reason).chars(REASON_CHARS),
            }
        )
    more = broken.count() - LIST_LIMIT if len(found) > LIST_LIMIT else 0
    return {"rows": rows, "more": more, "list_url": reverse("admin:automations_webhook_changelist")}


def _queues(teams) -> dict:
    """Pending and active items per queue, busiest first.

    Counted from the pending and active items only (grouped by queue), so finished history does not weigh on it.
    """
    depths = {
        row["queue_id"]: row
        for row in RunQueueItem.objects.filter(team__in=teams, state__in=[ItemState.PENDING, *ACTIVE_STATES])
        .values("queue_id")
        .annotate(
            pending=Count("pk", filter=Q(state=ItemState.PENDING)),
            active=Count("pk", filter=Q(state__in=ACTIVE_STATES)),
        )
        .order_by()
    }
    queues = RunQueue.objects.filter(team__in=teams).values_list("pk", "team__name", "name")
    items_url = reverse("admin:launch_runqueueitem_changelist")
    rows = [
        {
            "name": f"{team}/{name}",
            "pending": depths.get(pk, {}).get("pending", 0),
            "active": depths.get(pk, {}).get("active", 0),
            "url": f"{items_url}?{urlencode({'queue__id__exact': pk})}",
        }
        for pk, team, name in queues
    ]
    rows.sort(key=lambda row: (-row["pending"], -row["active"], row["name"]))
    return {
        "rows": rows[:LIST_LIMIT],
        "more": max(len(rows) - LIST_LIMIT, 0),
        "list_url": reverse("admin:launch_runqueue_changelist"),
    }


def _agents(teams, now: datetime) -> dict:
    """Agents seen within two leases: one missed heartbeat is not yet an outage."""
    online = Q(disabled=False, last_seen_at__gte=now - timedelta(seconds=2 * settings.LAUNCH_LEASE_SECONDS))
    agents = Agent.objects.filter(team__in=teams)
    counts = agents.aggregate(total=Count("pk"), online=Count("pk", filter=online))
    names = agents.filter(online).order_by("team__name", "name").values_list("pk", "team__name", "name")
    return {
        "online": [
            {"name": f"{team}/{name}", "url": reverse("admin:launch_agent_change", args=[pk])}
            for pk, team, name in names[:LIST_LIMIT]
        ],
        "online_count": counts["online"],
        "total": counts["total"],
        "more": max(counts["online"] - LIST_LIMIT, 0),
        "list_url": reverse("admin:launch_agent_changelist"),
    }
