from __future__ import annotations

import uuid

from django.db.models import Count, Q, QuerySet

from core.db import filter_given
from core.errors import NotFound
from registry.models import Team

from .choices import ACTIVE_STATES, ItemState
from .models import Agent, Job, JobVersion, RunQueue, RunQueueItem


def jobs_for_team(*, team: Team) -> QuerySet[Job]:
    return Job.objects.filter(team=team).select_related("project")


def job_get(*, team: Team, name: str, field: str | None = None) -> Job:
    job = jobs_for_team(team=team).filter(name=name).first()
    if job is None:
        raise NotFound(f"No job {name!r} in {team.name}.", field=field)
    return job


def job_version_get(*, job: Job, version: object, field: str | None = None) -> JobVersion:
    text = str(version)
    found = job.versions.filter(index=int(text[1:])).first() if text[:1] == "v" and text[1:].isdigit() else None
    if found is None:
        raise NotFound(f"Job {job.name} has no version {version!r}.", field=field)
    return found


def queues_for_team(*, team: Team) -> QuerySet[RunQueue]:
    return RunQueue.objects.filter(team=team).annotate(
        pending=Count("items", filter=Q(items__state=ItemState.PENDING)),
        active=Count("items", filter=Q(items__state__in=ACTIVE_STATES)),
    )


def queue_get(*, team: Team, name: str, field: str | None = None) -> RunQueue:
    queue = RunQueue.objects.filter(team=team, name=name).first()
    if queue is None:
        raise NotFound(f"No queue {name!r} in {team.name}.", field=field)
    return queue


def items_for(
    *,
    team: Team,
    queue: RunQueue | None = None,
    state: str | None = None,
    event: object = None,
    automation: int | None = None,
) -> QuerySet[RunQueueItem]:
    items = RunQueueItem.objects.filter(team=team).select_related(
        "queue", "job_version__job", "destination_project", "agent"
    )
    return filter_given(items, queue=queue, state=state, event_id=event, automation_id=automation)


def item_get(*, team: Team, item_id: object, holder: Agent | None = None) -> RunQueueItem:
    """An item of the team; with ``holder``, only if that agent holds it (claimed it last): an agent must not read
    the entrypoint and config of items of queues it does not serve, nor of items another agent runs."""
    try:
        pk = uuid.UUID(str(item_id))
    except ValueError as exc:
        raise NotFound(f"No item {item_id!r}.") from exc
    items = RunQueueItem.objects.filter(team=team, pk=pk)
    if holder is not None:
        items = items.filter(agent=holder)
    item = items.select_related("queue", "job_version__job", "destination_project", "agent").first()
    if item is None:
        raise NotFound(f"No item {item_id!r} in {team.name}.")
    return item


def agents_for_team(*, team: Team) -> QuerySet[Agent]:
    return Agent.objects.filter(team=team).prefetch_related("queues")
