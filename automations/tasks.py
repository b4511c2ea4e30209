"""Celery interface of automations: take ids, call a service. The retry policy lives in the database."""

from celery import shared_task

from . import delivery


@shared_task(name="automations.tasks.deliveries_send")
def deliveries_send(delivery_ids: list[str]) -> dict[str, str]:
    # No Celery retries: a failed attempt is recorded and rescheduled by the attempt itself.
    return delivery.deliveries_attempt(delivery_ids=delivery_ids)


@shared_task(name="automations.tasks.delivery_send")
def delivery_send(delivery_id: str) -> str | None:
    # One delivery per task, as sent before deliveries travelled in batches: queued messages still run.
    return delivery.delivery_attempt(delivery_id=delivery_id)


@shared_task(name="automations.tasks.deliveries_sweep")
def deliveries_sweep() -> int:
    return delivery.deliveries_sweep()
