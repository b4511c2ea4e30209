"""Writes for launch: jobs, queues, agents, and the life of a queue item.

A claim takes the oldest pending item of a queue with ``SELECT ... FOR UPDATE SKIP LOCKED``, so any number of
agents claim concurrently and no item is ever handed out twice. A claimed item carries a lease the agent extends
by heartbeating; the beat sweep returns items whose lease lapsed to ``pending`` (or fails them after
``LAUNCH_MAX_ATTEMPTS``).
"""

from __future__ import annotations

import copy
import functools
import secrets
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, NoReturn

from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser
from django.db import connection, transaction
from django.utils import timezone

from alerts.choices import AlertKind
from alerts.services import Happened, occurrences_record
from core.db import columns, conflict_on_duplicate, fetch_one, instance_from, quoted, rows_loaded
from core.errors import ApplicationError, Conflict, NotFound
from core.json_checks import json_nul_refuse
from core.tokens import token_hash
from core.validators import name_validate
from registry.models import Event, Project, Team

from .choices import ACTIVE_STATES, AGENT_TRANSITIONS, FINAL_STATES, ItemState, ResourceType
from .models import Agent, Job, JobVersion, RunQueue, RunQueueItem

AGENT_TOKEN_PREFIX = "agt_"  # noqa: S105 (a public prefix, not a secret)
LOG_TAIL_CHARS = 16 * 1024
REASON_CHARS = 2000


def _json_object(value: object, field: str) -> dict:
    """A JSON object PostgreSQL can store: no NUL character in any key or string (jsonb refuses it)."""
    if not isinstance(value, dict):
        raise ApplicationError(f"{field} must be a JSON object.", field=field)
    json_nul_refuse(value, field=field, what=field)
    return value


def _save(obj, message: str, field: str = "name"):
    with conflict_on_duplicate(message, field=field):
        obj.save()
    return obj


def log_tail_keep(text: str) -> str:
    """What is kept of an agent's output: its last ``LOG_TAIL_CHARS`` characters, without NUL (text columns
    refuse it)."""
    return text.replace("\x00", "")[-LOG_TAIL_CHARS:]


def config_merge(defaults: dict, overrides: dict) -> dict:
    """Defaults overlaid with overrides, recursively for nested objects."""
    merged = copy.deepcopy(defaults)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = config_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


# --- Jobs and queues ------------------------------------------------------------------------------------


def job_create(*, team: Team, name: str, project: str, description: str = "") -> Job:
    destination = Project.objects.filter(team=team, name=project).first()
    if destination is None:
        raise ApplicationError(f"No project {project!r} in {team.name}.", field="project")
    job = Job(team=team, project=destination, name=name_validate(name, what="job name"), description=description)
    return _save(job, f"A job named {name!r} already exists.")


@transaction.atomic
def job_version_create(
    *,
    job: Job,
    entrypoint: list,
    default_config: dict | None = None,
    source: str = "",
    download_artifact: bool = False,
) -> JobVersion:
    """A new version of the job. ``download_artifact``: its runs get the event's model version in their working
    directory (the agent downloads and checks it before the job starts)."""
    if not isinstance(entrypoint, list) or not entrypoint or not all(isinstance(a, str) and a for a in entrypoint):
        raise ApplicationError("entrypoint must be a non-empty list of non-empty strings.", field="entrypoint")
    if any("\x00" in a for a in entrypoint):
        raise ApplicationError("entrypoint may not contain the NUL character.", field="entrypoint")
    if not isinstance(download_artifact, bool):
        raise ApplicationError("download_artifact must be true or false.", field="download_artifact")
    default_config = _json_object({} if default_config is None else default_config, "default_config")
    job = Job.objects.select_for_update().get(pk=job.pk)
    index = job.next_index
    job.next_index = index + 1
    job.save(update_fields=["next_index"])
    return JobVersion.objects.create(
        job=job,
        index=index,
        entrypoint=entrypoint,
        default_config=default_config,
        source=source,
        download_artifact=download_artifact,
    )


def run_queue_create(
    *, team: Team, name: str, resource_type: str = ResourceType.LOCAL_PROCESS, resource_config: dict | None = None
) -> RunQueue:
    if resource_type not in ResourceType.values:
        raise ApplicationError(
            f"Unknown resource type {resource_type!r}: use one of {', '.join(ResourceType.values)}.",
            field="resource_type",
        )
    if resource_config is not None:
        _json_object(resource_config, "resource_config")
    queue = RunQueue(
        team=team,
        name=name_validate(name, what="queue name"),
        resource_type=resource_type,
        resource_config=resource_config or {},
    )
    return _save(queue, f"A queue named {name!r} already exists.")


# --- Agents ---------------------------------------------------------------------------------------------


@transaction.atomic
def agent_create(*, team: Team, name: str, queues: list[str]) -> tuple[Agent, str]:
    """Register an agent for some of the team's queues. Returns it with its token, shown this once."""
    if not isinstance(queues, list) or not queues:
        raise ApplicationError("An agent needs at least one queue.", field="queues")
    found = list(RunQueue.objects.filter(team=team, name__in=queues))
    if missing := sorted(set(queues) - {q.name for q in found}):
        raise ApplicationError(f"No queue(s) {', '.join(missing)} in {team.name}.", field="queues")
    raw = AGENT_TOKEN_PREFIX + secrets.token_urlsafe(32)
    agent = Agent(
        team=team, name=name_validate(name, what="agent name"), token_hash=token_hash(raw), token_prefix=raw[:10]
    )
    _save(agent, f"An agent named {name!r} already exists.")
    agent.queues.set(found)
    return agent, raw


def agent_authenticate(*, raw: str) -> Agent | None:
    """The enabled agent whose token this is, with its team; its last contact recorded every few seconds. On every
    request of every agent: one query, written out (compiling the queryset cost more than running it)."""
    row = fetch_one(_agent_by_token_statement(), [token_hash(raw), False])
    if row is None:
        return None
    agent, after = instance_from(Agent, row)
    agent.team, _ = instance_from(Team, row, after)
    now = timezone.now()
    if agent.last_seen_at is None or (now - agent.last_seen_at).total_seconds() > 5:
        Agent.objects.filter(pk=agent.pk).update(last_seen_at=now)
    return agent


@functools.cache
def _agent_by_token_statement() -> str:
    """Parameters: the token's hash, False (the agent is not disabled)."""
    agent, team = quoted(Agent), quoted(Team)
    return (
        f"SELECT {columns(Agent, Agent._meta.db_table)}, {columns(Team, Team._meta.db_table)} "  # noqa: S608
        f"FROM {agent} INNER JOIN {team} ON {team}.{quoted(Team, 'id')} = {agent}.{quoted(Agent, 'team')} "
        f"WHERE {agent}.{quoted(Agent, 'token_hash')} = %s AND {agent}.{quoted(Agent, 'disabled')} = %s"
    )


# --- Queue items ----------------------------------------------------------------------------------------


def item_enqueue(
    *,
    queue: RunQueue,
    job_version: JobVersion,
    destination_project: Project,
    overrides: dict | None = None,
    user: AbstractBaseUser | None = None,
    event: Event | None = None,
    automation_id: int | None = None,
    automation_name: str = "",
) -> RunQueueItem:
    """Queue a run. The merged config and entrypoint are a snapshot: later changes to the job do not touch it."""
    overrides = _json_object({} if overrides is None else overrides, "overrides")
    for obj, field in ((job_version.job, "job"), (destination_project, "destination_project")):
        if obj.team_id != queue.team_id:
            raise ApplicationError(f"The {field.replace('_', ' ')} belongs to another team.", field=field)
    return RunQueueItem.objects.create(
        team_id=queue.team_id,
        queue=queue,
        job_version=job_version,
        entrypoint=job_version.entrypoint,
        config=config_merge(job_version.default_config, overrides),
        destination_project=destination_project,
        created_by=user,
        event=event,
        event_context=event.context if event else {},
        automation_id=automation_id,
        automation_name=automation_name,
    )


def _lease() -> timedelta:
    return timedelta(seconds=settings.LAUNCH_LEASE_SECONDS)


def item_claim(*, agent: Agent, queue_name: str) -> RunQueueItem | None:
    """Give the agent the oldest pending item of its queue named ``queue_name``, or None. Never the same item to two
    agents.

    Every agent polls this, so a claim is one statement (``_claim_statement``) and no transaction: the queue is
    looked up among the agent's own, the oldest pending item taken (row-locked and skipped by concurrent claims on
    PostgreSQL; SQLite runs one writer at a time), and what the answer shows returned with it. Only when nothing
    was claimed does a second query tell "nothing pending" from a queue the agent does not serve."""
    now = timezone.now()
    ops = connection.ops
    params = [
        ItemState.CLAIMED.value,
        agent.pk,
        ops.adapt_datetimefield_value(now + _lease()),
        agent.pk,
        queue_name,
        ItemState.PENDING.value,
        ItemState.PENDING.value,
    ]
    row = fetch_one(_claim_statement(), params)
    if row is None:
        if not agent.queues.filter(name=queue_name).exists():
            _queue_refuse(agent, queue_name)
        return None
    return _claimed_item(row, agent=agent, queue_name=queue_name)


def _queue_refuse(agent: Agent, queue_name: str) -> NoReturn:
    """404 for a queue the team does not have, 403 for one of its queues the agent does not serve."""
    if not RunQueue.objects.filter(team_id=agent.team_id, name=queue_name).exists():
        raise NotFound(f"No queue {queue_name!r} in {agent.team.name}.")
    raise ApplicationError(f"Agent {agent.name} does not serve queue {queue_name}.", field="queue", code="forbidden")


# A claim returns the item's columns, then what its answer shows of the job version, job and project.
# FOR UPDATE SKIP LOCKED (where the database has it): concurrent claims each take another row instead of waiting on
# the same one. The outer state test repeats the inner one for a row that changed meanwhile. Parameters: the claimed
# state, the agent, the lease's end, the agent, the queue's name, the pending state twice.
_CLAIM_SQL = """
UPDATE {item} SET {state} = %s, {agent} = %s, {lease} = %s, {attempts} = {item}.{attempts} + 1, {reason} = ''
WHERE {item}.{id} = (
    SELECT pending.{id} FROM {item} pending
    WHERE pending.{queue} = (
        SELECT {queues}.{id} FROM {queues} INNER JOIN {served} ON {served}.{served_queue} = {queues}.{id}
        WHERE {served}.{served_agent} = %s AND {queues}.{name} = %s
    ) AND pending.{state} = %s
    ORDER BY pending.{created_at} LIMIT 1{lock}
) AND {item}.{state} = %s
RETURNING {returned},
    (SELECT {versions}.{job} FROM {versions} WHERE {versions}.{id} = {item}.{job_version}),
    (SELECT {versions}.{index} FROM {versions} WHERE {versions}.{id} = {item}.{job_version}),
    (SELECT {versions}.{download_artifact} FROM {versions} WHERE {versions}.{id} = {item}.{job_version}),
    (SELECT {jobs}.{name} FROM {jobs} INNER JOIN {versions} ON {jobs}.{id} = {versions}.{job}
     WHERE {versions}.{id} = {item}.{job_version}),
    (SELECT {projects}.{name} FROM {projects} WHERE {projects}.{id} = {item}.{destination_project})
"""


@functools.cache
def _claim_statement() -> str:
    """``_CLAIM_SQL`` with the tables' and columns' quoted names; every value stays a parameter."""
    through, served = Agent.queues.field, Agent.queues.through
    tables = {"item": RunQueueItem, "queues": RunQueue, "served": served, "versions": JobVersion, "jobs": Job,
              "projects": Project}  # fmt: skip
    # Columns by field name; {id} and {name} serve every table (each has an "id" key, and "name" where used).
    owners = {"id": RunQueueItem, "state": RunQueueItem, "agent": RunQueueItem, "attempts": RunQueueItem,
               "reason": RunQueueItem, "queue": RunQueueItem, "created_at": RunQueueItem, "job_version": RunQueueItem,
               "destination_project": RunQueueItem, "name": RunQueue, "job": JobVersion, "index": JobVersion,
               "download_artifact": JobVersion}  # fmt: skip
    names = {key: quoted(model, key) for key, model in owners.items()}
    names |= {key: quoted(model) for key, model in tables.items()}
    names |= {
        "lease": quoted(RunQueueItem, "lease_expires_at"),
        "served_queue": quoted(served, through.m2m_reverse_field_name()),
        "served_agent": quoted(served, through.m2m_field_name()),
        "lock": " FOR UPDATE SKIP LOCKED" if connection.features.has_select_for_update_skip_locked else "",
        "returned": columns(RunQueueItem, RunQueueItem._meta.db_table),
    }
    return _CLAIM_SQL.format_map(names)


def _claimed_item(row: Sequence[Any], *, agent: Agent, queue_name: str) -> RunQueueItem:
    """The claimed item from its returned row, with the job version, job, project, queue and agent its answer
    shows (of those, only what the answer reads is loaded)."""
    using = connection.alias
    item, own = instance_from(RunQueueItem, row)
    job_id, index, download_artifact, job_name, project_name = row[own:]
    (item.job_version,) = rows_loaded(
        JobVersion, ["id", "job", "index", "download_artifact"],
        [(item.job_version_id, job_id, index, download_artifact)], using=using,
    )  # fmt: skip
    (item.job_version.job,) = rows_loaded(Job, ["id", "name"], [(job_id, job_name)], using=using)
    (item.destination_project,) = rows_loaded(
        Project, ["id", "name"], [(item.destination_project_id, project_name)], using=using
    )
    (item.queue,) = rows_loaded(
        RunQueue, ["id", "team", "name"], [(item.queue_id, agent.team_id, queue_name)], using=using
    )
    item.agent = agent
    return item


def _held(item: RunQueueItem, agent: Agent) -> RunQueueItem:
    """The item, locked, if this agent holds it; otherwise a conflict (its lease lapsed and it moved on)."""
    locked = RunQueueItem.objects.select_for_update().get(pk=item.pk)
    if locked.agent_id != agent.pk or locked.state not in ACTIVE_STATES:
        raise Conflict(f"This agent no longer holds item {item.pk} (it is {locked.state}).", field="state")
    return locked


@transaction.atomic
def item_heartbeat(*, agent: Agent, item: RunQueueItem, log_tail: str | None = None) -> RunQueueItem:
    """Extend the lease (and keep the latest output). The answer tells the agent whether the item was cancelled."""
    locked = _held(item, agent)
    locked.lease_expires_at = timezone.now() + _lease()
    fields = ["lease_expires_at"]
    if log_tail is not None:
        locked.log_tail = log_tail_keep(log_tail)
        fields.append("log_tail")
    locked.save(update_fields=fields)
    return locked


@transaction.atomic
def item_report(
    *,
    agent: Agent,
    item: RunQueueItem,
    state: str,
    exit_code: int | None = None,
    log_tail: str | None = None,
    reason: str | None = None,
) -> RunQueueItem:
    """The agent's report on the item it holds. ``reason`` says why the agent itself failed it (e.g. the event's
    model version could not be downloaded), shown with the item like the reasons the server gives."""
    if state not in AGENT_TRANSITIONS:
        raise ApplicationError(
            f"An agent reports running, finished, failed or cancelled, not {state!r}.", field="state"
        )
    locked = _held(item, agent)
    now = timezone.now()
    fields = ["state", "lease_expires_at"]
    locked.state = state
    locked.lease_expires_at = now + _lease() if state == ItemState.RUNNING else None
    if state == ItemState.RUNNING and locked.started_at is None:
        locked.started_at = now
        fields.append("started_at")
    if state in FINAL_STATES:
        locked.finished_at = now
        fields.append("finished_at")
    if exit_code is not None:
        locked.exit_code = exit_code
        fields.append("exit_code")
    if log_tail is not None:
        locked.log_tail = log_tail_keep(log_tail)
        fields.append("log_tail")
    if reason is not None:
        locked.reason = reason.replace("\x00", "")[:REASON_CHARS]
        fields.append("reason")
    locked.save(update_fields=fields)
    return locked


@transaction.atomic
def item_cancel(*, item: RunQueueItem) -> RunQueueItem:
    """Cancel at once if nobody runs it yet; otherwise ask its agent, which kills the process and reports."""
    locked = RunQueueItem.objects.select_for_update().get(pk=item.pk)
    if locked.state in FINAL_STATES:
        raise Conflict(f"Item {item.pk} is already {locked.state}.", field="state")
    if locked.state == ItemState.PENDING:
        locked.state = ItemState.CANCELLED
        locked.finished_at = timezone.now()
        locked.reason = "Cancelled before an agent claimed it."
    locked.cancel_requested = True
    locked.save(update_fields=["state", "finished_at", "reason", "cancel_requested"])
    return locked


def items_expire_leases(*, limit: int = 500) -> int:
    """Return items whose agent stopped heartbeating to pending, or fail them after too many attempts."""
    now = timezone.now()
    expired = 0
    ids = list(
        RunQueueItem.objects.filter(state__in=ACTIVE_STATES, lease_expires_at__lt=now).values_list("pk", flat=True)[
            :limit
        ]
    )
    for pk in ids:
        with transaction.atomic():
            item = (
                RunQueueItem.objects.select_for_update(skip_locked=True, of=("self",))
                .select_related("agent", "queue")
                .filter(pk=pk, state__in=ACTIVE_STATES, lease_expires_at__lt=now)
                .first()
            )
            if item is None:
                continue
            holder = item.agent.name if item.agent else "its agent"
            held_in = item.state
            if item.cancel_requested:
                item.state, item.finished_at = ItemState.CANCELLED, now
                item.reason = f"Cancelled; {holder} stopped heartbeating before confirming."
            elif item.attempts >= settings.LAUNCH_MAX_ATTEMPTS:
                item.state, item.finished_at = ItemState.FAILED, now
                item.reason = f"Lease expired {item.attempts} times (last held by {holder}); gave up."
            else:
                item.state = ItemState.PENDING
                item.reason = f"Lease expired: {holder} stopped heartbeating; queued again."
            if item.agent is not None:
                occurrences_record([_agent_lost(item, held_in=held_in, now=now)])
            item.agent = None
            item.lease_expires_at = None
            item.save(update_fields=["state", "finished_at", "reason", "agent", "lease_expires_at"])
            expired += 1
    return expired


def _agent_lost(item: RunQueueItem, *, held_in: str, now: datetime) -> Happened:
    """The alert occurrence of an item whose agent went silent while holding it."""
    return Happened(
        team_id=item.team_id,
        kind=AlertKind.AGENT_LOST,
        subject_id=item.agent_id,
        subject_name=item.agent.name,
        at=now,
        detail={
            "item": str(item.pk),
            "queue": item.queue.name,
            "held": held_in,
            "last_seen_at": item.agent.last_seen_at.isoformat() if item.agent.last_seen_at else None,
            "outcome": item.reason,
        },
    )
