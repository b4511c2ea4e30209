"""The registry's event handler for automations: a Delivery per matching webhook automation, a queue item per
launch automation.

It runs inside the event's dispatch transaction (a Celery task's), so deliveries exist exactly when the event is
marked dispatched; they are started after commit by the same task (``attempts.deliveries_create``).
"""

from __future__ import annotations

import json

from django.utils import timezone

from launch.services import item_enqueue
from registry.models import Event

from . import rendering, retry
from .attempts import deliveries_create
from .choices import ActionType, DeliveryStatus
from .models import Automation, Delivery
from .safe_http import destination_key
from .selectors import automations_matching


def event_handle(event: Event) -> list[Delivery]:
    now = timezone.now()
    deliveries = []
    for automation in automations_matching(event=event):
        if automation.action_type == ActionType.LAUNCH_JOB:
            _launch(automation, event)
            continue
        webhook = automation.webhook
        delivery = Delivery(
            team=automation.team,
            event=event,
            automation=automation,
            webhook=webhook,
            automation_name=automation.name,
            webhook_name=webhook.name,
            url=webhook.url,
            destination=destination_key(webhook.url),
            payload_template=automation.payload,
            secret_name=webhook.secret.name if webhook.secret else "",
            access_token_name=webhook.access_token.name if webhook.access_token else "",
            next_attempt_at=now,
        )
        if not webhook.enabled:
            # Recorded, not dropped: an admin can redeliver it once the webhook is enabled again.
            delivery.status = DeliveryStatus.FAILED
            delivery.last_error = retry.webhook_disabled(webhook.disabled_reason).message
            delivery.finished_at = now
        deliveries.append(delivery)
    deliveries_create(deliveries)
    return deliveries


def _launch(automation: Automation, event: Event) -> None:
    """Queue the automation's job with its overrides rendered for this event."""
    try:
        overrides = json.loads(rendering.render(automation.overrides, context=event.context, secrets={}))
    except rendering.TemplateError as exc:
        event.dispatch_note = (
            f"{event.dispatch_note}\nAutomation {automation.name!r}: overrides do not render: {exc.message}".strip()
        )
        return
    item_enqueue(
        queue=automation.queue,
        job_version=automation.job_version,
        destination_project=automation.destination_project,
        overrides=overrides,
        event=event,
        automation_id=automation.pk,
        automation_name=automation.name,
    )
