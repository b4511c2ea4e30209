"""The registry's event handler for automations: a Delivery per matching webhook automation, a queue item per
launch automation, and for each a run in the automation's history (or a skipped one, with the reason).

It runs inside the event's dispatch transaction (a Celery task's), so deliveries exist exactly when the event is
marked dispatched; they are started after commit by the same task (``attempts.deliveries_create``).
"""

from __future__ import annotations

from django.utils import timezone

from core.db import rows_insert
from launch.models import RunQueueItem
from launch.services import item_enqueue
from registry.models import Event

from . import rendering, retry
from .attempts import deliveries_create
from .choices import ActionType, DeliveryStatus, RunOutcome
from .models import Automation, AutomationRun, Delivery
from .runs import throttle_refusal
from .safe_http import destination_key
from .selectors import automations_matching


def event_handle(event: Event) -> list[Delivery]:
    now = timezone.now()
    manual = event.manual_for is not None
    deliveries: list[Delivery] = []
    runs: list[AutomationRun] = []
    matched = automations_matching(event=event)
    for automation in matched:
        run = AutomationRun(
            team_id=automation.team_id, automation=automation, automation_name=automation.name, event=event,
            manual=manual, created_at=now,
        )  # fmt: skip
        runs.append(run)
        if not manual and (refusal := throttle_refusal(automation, now=now)):
            run.outcome, run.reason = RunOutcome.SKIPPED, refusal
        elif automation.action_type == ActionType.LAUNCH_JOB:
            run.item, run.reason = _launch(automation, event)
            run.outcome = RunOutcome.QUEUED if run.item else RunOutcome.SKIPPED
        else:
            run.delivery, run.outcome = _delivery(automation, event, now=now), RunOutcome.DELIVERY
            deliveries.append(run.delivery)
    if manual and not matched:
        event.dispatch_note = "Run by hand for an automation that is now disabled or deleted: nothing was done."
    deliveries_create(deliveries)
    rows_insert(AutomationRun, runs)
    return deliveries


def _delivery(automation: Automation, event: Event, *, now) -> Delivery:
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
    return delivery


def _launch(automation: Automation, event: Event) -> tuple[RunQueueItem | None, str]:
    """Queue the automation's job with its overrides rendered for this event; the item, or None and why not."""
    try:
        overrides = rendering.overrides_render(automation.overrides, context=event.context)
    except rendering.TemplateError as exc:
        reason = f"The overrides do not render: {exc.message}"
        event.dispatch_note = f"{event.dispatch_note}\nAutomation {automation.name!r}: {reason}".strip()
        return None, reason
    item = item_enqueue(
        queue=automation.queue,
        job_version=automation.job_version,
        destination_project=automation.destination_project,
        overrides=overrides,
        event=event,
        automation_id=automation.pk,
        automation_name=automation.name,
    )
    return item, ""
