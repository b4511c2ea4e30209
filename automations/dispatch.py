"""The registry's event handler for automations: one Delivery per matching webhook automation.

It runs inside the event's dispatch transaction, so deliveries exist exactly when the event is marked dispatched;
their tasks are sent after commit.
"""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from registry.models import Event

from .choices import ActionType, DeliveryStatus
from .delivery import delivery_schedule
from .models import Delivery
from .selectors import automations_matching


def event_handle(event: Event) -> list[Delivery]:
    now = timezone.now()
    deliveries = []
    for automation in automations_matching(event=event):
        if automation.action_type != ActionType.WEBHOOK:
            continue
        webhook = automation.webhook
        delivery = Delivery(
            team_id=event.team_id,
            event=event,
            automation=automation,
            webhook=webhook,
            automation_name=automation.name,
            webhook_name=webhook.name,
            url=webhook.url,
            payload_template=automation.payload,
            secret_name=webhook.secret.name if webhook.secret else "",
            access_token_name=webhook.access_token.name if webhook.access_token else "",
            next_attempt_at=now,
        )
        if not webhook.enabled:
            # Recorded, not dropped: an admin can redeliver it once the webhook is enabled again.
            delivery.status = DeliveryStatus.FAILED
            delivery.last_error = f"Webhook disabled: {webhook.disabled_reason or 'by an admin'}"
            delivery.finished_at = now
        deliveries.append(delivery)
    Delivery.objects.bulk_create(deliveries)
    pending = [d.pk for d in deliveries if d.status == DeliveryStatus.PENDING]
    if pending:
        transaction.on_commit(lambda: [delivery_schedule(pk) for pk in pending])
    return deliveries
