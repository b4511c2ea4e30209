"""Celery interface of automations: take ids, call a service. The retry policy lives in the database."""

from celery import shared_task

from . import attempts, schedule


@shared_task(name=schedule.SEND_TASK)
def deliveries_send(delivery_ids: list[str], destination: str, team_id: int) -> dict[str, str]:
    # No Celery retries: a failed attempt is recorded and rescheduled by the attempt itself.
    return attempts.deliveries_attempt(delivery_ids=delivery_ids, destination=destination, team_id=team_id)


@shared_task(name="automations.tasks.deliveries_sweep")
def deliveries_sweep() -> int:
    return schedule.deliveries_sweep()
