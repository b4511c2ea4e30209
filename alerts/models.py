"""Alerts: what went wrong (``Occurrence``), grouped (``Alert``), and the messages that tell people (``Notice``).

An occurrence is written in the transaction that made it happen (a delivery settled, a webhook disabled, a lease
expired), so none is lost; the flush (``alerts.grouping``) folds a burst of them into one alert per team, kind and
subject, and one e-mail per team.
"""

import uuid

from django.db import models

from registry.models import Team

from .choices import AlertKind, Channel, NoticeStatus


class Occurrence(models.Model):
    """One thing gone wrong, not yet grouped into an alert."""

    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="+")
    kind = models.CharField(max_length=32, choices=AlertKind.choices)
    # The webhook or the agent it is about (0 when that row is gone), and its name as it was.
    subject_id = models.BigIntegerField()
    subject_name = models.CharField(max_length=128)
    at = models.DateTimeField()
    detail = models.JSONField(default=dict)

    class Meta:
        indexes = [models.Index(fields=["team", "kind", "subject_id"], name="occurrence_group_idx")]

    def __str__(self) -> str:
        return f"{self.kind} {self.subject_name} at {self.at:%Y-%m-%d %H:%M:%S}"


class Alert(models.Model):
    """Every occurrence of one kind for one subject within a burst: sent as one message per channel."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="alerts")
    kind = models.CharField(max_length=32, choices=AlertKind.choices)
    subject_id = models.BigIntegerField()
    subject_name = models.CharField(max_length=128)
    count = models.PositiveIntegerField()
    first_at = models.DateTimeField()
    last_at = models.DateTimeField()
    # The first few occurrences' details, and the last one's (its error is the freshest).
    samples = models.JSONField(default=list)
    last = models.JSONField(default=dict)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.headline

    @property
    def headline(self) -> str:
        """What happened, in a line: the e-mail's subject, the admin's title."""
        name = self.subject_name
        if self.kind == AlertKind.WEBHOOK_DISABLED:
            return f"webhook {name} was disabled"
        if self.kind == AlertKind.DELIVERY_FAILED:
            return f"{_count(self.count, 'delivery', 'deliveries')} of webhook {name} failed for good"
        return f"agent {name} went silent holding {_count(self.count, 'item', 'items')}"


def _count(n: int, one: str, many: str) -> str:
    return f"{n:,} {one if n == 1 else many}"


class Notice(models.Model):
    """One message about one or more alerts: an e-mail to the team's admins, or an operational webhook request.
    Sent with the webhook retry policy; its id is the request's ``webhook-id``."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="+")
    channel = models.CharField(max_length=16, choices=Channel.choices)
    alerts = models.ManyToManyField(Alert, related_name="notices")
    # Plain values, not a foreign key: launch records alerts, and must not depend on automations through them.
    webhook_id = models.BigIntegerField(null=True, blank=True)
    webhook_name = models.CharField(max_length=128, blank=True)
    recipients = models.TextField(blank=True)  # e-mail addresses, one per line, as they were when it was written
    status = models.CharField(max_length=16, choices=NoticeStatus.choices, default=NoticeStatus.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    claimed_until = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(
                fields=["next_attempt_at"],
                condition=models.Q(status__in=["pending", "retrying"]),
                name="notice_due_idx",
            )
        ]

    def __str__(self) -> str:
        return f"{self.webhook_name or self.get_channel_display()} ({self.status})"
