"""Celery interface of automations: take an id, call a service. The retry policy lives in the database."""

from celery import shared_task

from . import delivery


@shared_task(name="automations.tasks.delivery_send")
def delivery_send(delivery_id: str) -> str | None:
    # No Celery retries: a failed attempt is recorded and rescheduled by delivery_attempt itself.
    return delivery.delivery_attempt(delivery_id=delivery_id)


@shared_task(name="automations.tasks.deliveries_sweep")
def deliveries_sweep() -> int:
    return delivery.deliveries_sweep()
