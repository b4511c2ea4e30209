"""What the benchmarks do inside Django rather than over the API: the superuser with its API token, and bulk
enqueueing of launch items (setup, not measured). Run with the stack's environment:

    python -m bench.djhelper admin                      -> {"token": "rk_..."}
    python -m bench.djhelper enqueue TEAM QUEUE JOB COUNT  -> {"enqueued": COUNT}
    python -m bench.djhelper stages < delivery-ids.json   -> {delivery id: {stage: unix time, ...}}
"""

from __future__ import annotations

import json
import sys


def admin() -> dict:
    from django.contrib.auth import get_user_model

    from registry import services

    user_model = get_user_model()
    user = user_model.objects.filter(username="bench").first()
    if user is None:
        user = user_model.objects.create_superuser("bench", "bench@example.invalid", None)
    _, raw = services.api_token_create(user=user, name="bench")
    return {"token": raw}


def enqueue(team: str, queue: str, job: str, count: str) -> dict:
    from django.db import transaction

    from launch import services
    from launch.models import Job, RunQueue

    job_obj = Job.objects.select_related("project").get(team__name=team, name=job)
    queue_obj = RunQueue.objects.get(team__name=team, name=queue)
    version = job_obj.versions.order_by("-index").first()
    with transaction.atomic():
        for _ in range(int(count)):
            services.item_enqueue(queue=queue_obj, job_version=version, destination_project=job_obj.project)
    return {"enqueued": int(count)}


def stages() -> dict:
    """When each recorded step of a delivery happened (unix seconds), for the latency breakdown."""
    from automations.models import Delivery

    ids = json.load(sys.stdin)
    found = {}
    deliveries = Delivery.objects.filter(pk__in=ids).select_related("event").prefetch_related("attempt_log")
    for delivery in deliveries:
        attempt = min(delivery.attempt_log.all(), key=lambda a: a.number, default=None)
        found[str(delivery.pk)] = {
            "event_recorded": delivery.event.created_at.timestamp(),
            "deliveries_written": delivery.created_at.timestamp(),
            "event_dispatched": delivery.event.dispatched_at.timestamp() if delivery.event.dispatched_at else None,
            "attempt_started": attempt.started_at.timestamp() if attempt else None,
        }
    return found


def main(argv: list[str]) -> None:
    import django

    django.setup()
    command, *args = argv
    result = {"admin": admin, "enqueue": enqueue, "stages": stages}[command](*args)
    print(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1:])
