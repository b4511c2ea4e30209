"""Celery interface of alerts: the beat's flush."""

from celery import shared_task
from django.utils import timezone

from . import grouping, notify


@shared_task(name="alerts.tasks.alerts_flush")
def alerts_flush() -> int:
    """Fold finished bursts into alerts and notices, then send what is due; returns the notices sent."""
    grouping.alerts_group(now=timezone.now())
    return notify.notices_send(now=timezone.now())
