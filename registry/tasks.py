"""Celery interface of the registry: take an id, call a service, own the retry policy."""

from celery import shared_task

from . import blobs, outbox


@shared_task(
    name="registry.tasks.event_dispatch",
    autoretry_for=(Exception,),
    retry_backoff=2,
    retry_backoff_max=60,
    max_retries=5,
)
def event_dispatch_task(event_id: str) -> bool:
    # After max_retries the event stays undispatched and the sweeper tries again later: nothing is dropped.
    return outbox.event_dispatch(event_id=event_id)


@shared_task(name="registry.tasks.events_sweep")
def events_sweep() -> int:
    return outbox.events_sweep()


@shared_task(name="registry.tasks.artifacts_clean")
def artifacts_clean() -> dict[str, int]:
    return blobs.artifacts_clean()
