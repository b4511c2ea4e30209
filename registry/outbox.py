"""Events as a transactional outbox: record in the change's transaction, dispatch after commit, sweep.

Recording happens in the same transaction as the change, so an event exists exactly when its change does.
Dispatch is a Celery task sent with ``transaction.on_commit``: web processes write rows and publish, and never send
anything themselves. If the broker is unreachable then, the event simply stays undispatched and ``events_sweep``
(run by beat) schedules it again.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import logging
import uuid
from collections.abc import Iterator
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from core.db import unique_or_none
from core.publish import task_send

from .choices import LATEST_ALIAS
from .events import (
    ADD_ARTIFACT_ALIAS,
    CREATE_ARTIFACT,
    LINK_ARTIFACT,
    REMOVE_ARTIFACT_ALIAS,
    UNLINK_ARTIFACT,
    Change,
    EventType,
    event_handlers,
)
from .models import Alias, ArtifactTag, ArtifactVersion, Event, ModelVersion

logger = logging.getLogger(__name__)

# The event that caused the change being made now (an automation's own job linking or aliasing again).
_cause: contextvars.ContextVar[Event | None] = contextvars.ContextVar("registry_event_cause", default=None)


@contextlib.contextmanager
def event_cause(event: Event | None) -> Iterator[None]:
    token = _cause.set(event)
    try:
        yield
    finally:
        _cause.reset(token)


# The list of the innermost ``events_recorded()`` block running in this thread or task.
_recorded: contextvars.ContextVar[list[Event] | None] = contextvars.ContextVar("registry_events_recorded", default=None)


@contextlib.contextmanager
def events_recorded() -> Iterator[list[Event]]:
    """Collect, in order, the events recorded by the code run inside the block: how the caller of a service learns
    what its change fired. A block that raises passes nothing on to an enclosing block."""
    outer = _recorded.get()
    events: list[Event] = []
    token = _recorded.set(events)
    try:
        yield events
    finally:
        _recorded.reset(token)
    if outer is not None:
        outer.extend(events)


def _context(change: Change) -> dict:
    """The event type's variables (``registry.events``), and two fields the admin and the API show with the event."""
    context = change.event_type.context(change)
    context["version"] = change.model_version.version if change.model_version else change.artifact.version
    context["source_artifact"] = change.artifact.reference
    return context


def _event_build(*, change: Change, team_id: int, manual_for: int | None = None) -> Event:
    """The event of ``change``, not yet saved: its id, cause, chain depth and context are all set."""
    cause = _cause.get()
    model_version = change.model_version
    event_id = uuid.uuid4()  # chosen here: ${event_id} is in the context written with the row
    change = dataclasses.replace(change, event_id=str(event_id))
    return Event(
        id=event_id,
        team_id=team_id,
        type=change.event_type.name,
        registered_model=model_version.registered_model if model_version else None,
        model_version=model_version,
        artifact_version=change.artifact,
        alias=change.alias,
        author=change.author,
        caused_by=cause,
        depth=cause.depth + 1 if cause else 0,
        context=_context(change),
        manual_for=manual_for,
    )


def event_inserted(event: Event) -> Event:
    """What follows an event's row being written: the caller's ``events_recorded`` block learns of it, and its
    dispatch is scheduled for after the commit."""
    if (recorded := _recorded.get()) is not None:
        recorded.append(event)
    transaction.on_commit(lambda: event_dispatch_schedule(event.pk))
    return event


def _event_create(*, change: Change, team_id: int, manual_for: int | None = None) -> Event:
    event = _event_build(change=change, team_id=team_id, manual_for=manual_for)
    event.save(force_insert=True)
    return event_inserted(event)


def _model_event_build(*, event_type: EventType, model_version: ModelVersion, author, alias: str = "") -> Event:
    change = Change(
        event_type=event_type,
        artifact=model_version.artifact_version,
        author=author,
        model_version=model_version,
        alias=alias,
    )
    return _event_build(change=change, team_id=model_version.registered_model.team_id)


def _model_event_create(*, event_type: EventType, model_version: ModelVersion, author, alias: str = "") -> Event:
    event = _model_event_build(event_type=event_type, model_version=model_version, author=author, alias=alias)
    event.save(force_insert=True)
    return event_inserted(event)


def event_record_link(*, model_version: ModelVersion) -> Event:
    return _model_event_create(event_type=LINK_ARTIFACT, model_version=model_version, author=model_version.linked_by)


def alias_added_event(*, model_version: ModelVersion, name: str, author) -> Event | None:
    """The ADD_ARTIFACT_ALIAS event of putting ``name`` on ``model_version``, not yet saved: the alias writes insert
    it themselves (then ``event_inserted``). None for ``latest``, which fires nothing."""
    if name == LATEST_ALIAS:
        return None  # maintained by the system on every link; the link event already says it
    return _model_event_build(event_type=ADD_ARTIFACT_ALIAS, model_version=model_version, author=author, alias=name)


def event_record_unlink(*, model_version: ModelVersion, author) -> Event:
    """UNLINK_ARTIFACT, recorded before the version is deleted (the event keeps its registered model)."""
    return _model_event_create(event_type=UNLINK_ARTIFACT, model_version=model_version, author=author)


def event_record_alias_removed(*, alias: Alias, author) -> Event:
    return _model_event_create(
        event_type=REMOVE_ARTIFACT_ALIAS, model_version=alias.model_version, author=author, alias=alias.name
    )


def event_record_tag(*, event_type: EventType, tag: ArtifactTag, author) -> Event:
    """ADD_ARTIFACT_TAG or REMOVE_ARTIFACT_TAG: an artifact event, like CREATE_ARTIFACT."""
    artifact_version = tag.artifact_version
    change = Change(event_type=event_type, artifact=artifact_version, author=author, tag=tag.name)
    return _event_create(change=change, team_id=artifact_version.collection.project.team_id)


def event_record_artifact_created(*, artifact_version: ArtifactVersion) -> Event:
    """CREATE_ARTIFACT, recorded in the transaction that commits the version (with all its files)."""
    change = Change(event_type=CREATE_ARTIFACT, artifact=artifact_version, author=artifact_version.created_by)
    return _event_create(change=change, team_id=artifact_version.collection.project.team_id)


def event_record_manual(*, change: Change, automation_id: int) -> Event:
    """An event of ``change``'s type for an existing version, recorded to run one automation by hand: it is
    dispatched to that automation only, and shown as manual in the feed."""
    return _event_create(change=change, team_id=change.artifact.collection.project.team_id, manual_for=automation_id)


def event_dispatch_schedule(event_id: object) -> bool:
    from .tasks import event_dispatch_task

    return task_send(event_dispatch_task, str(event_id))


def event_dispatch(*, event_id: object) -> bool:
    """Hand one event to every registered handler, once. Returns False if it was already dispatched.

    The row lock (skip_locked) and the ``dispatched_at IS NULL`` filter make a redelivered or duplicated task a
    no-op; handlers write inside this transaction, so their work commits exactly with the dispatched mark.
    """
    try:
        with transaction.atomic():
            event = unique_or_none(
                Event.objects.select_for_update(skip_locked=True).filter(pk=event_id, dispatched_at__isnull=True)
            )
            if event is None:
                return False
            _dispatch(event)
            event.save(update_fields=["dispatch_attempts", "dispatch_note", "dispatched_at"])
            return True
    except Exception as exc:
        Event.objects.filter(pk=event_id, dispatched_at__isnull=True).update(
            dispatch_note=f"Dispatch failed ({type(exc).__name__}); it will be retried."
        )
        raise


def _dispatch(event: Event) -> None:
    event.dispatch_attempts += 1
    if event.depth > settings.EVENT_CHAIN_LIMIT:
        event.dispatch_note = (
            f"Not dispatched: automation chain depth {event.depth} exceeds the limit of "
            f"{settings.EVENT_CHAIN_LIMIT} (EVENT_CHAIN_LIMIT)."
        )
    else:
        for handler in event_handlers():
            handler(event)
    event.dispatched_at = timezone.now()


def events_sweep(*, limit: int = 500) -> int:
    """Resend events that should have been dispatched by now. Returns how many were resent."""
    cutoff = timezone.now() - timedelta(seconds=settings.EVENT_REDISPATCH_AFTER)
    stale = Event.objects.filter(dispatched_at__isnull=True, created_at__lt=cutoff).filter(
        Q(dispatch_scheduled_at__isnull=True) | Q(dispatch_scheduled_at__lt=cutoff)
    )
    ids = list(stale.order_by("created_at").values_list("pk", flat=True)[:limit])
    if not ids:
        return 0
    Event.objects.filter(pk__in=ids).update(dispatch_scheduled_at=timezone.now())
    sent = sum(event_dispatch_schedule(pk) for pk in ids)
    logger.info("events sweep: %d undispatched events resent (%d reached the broker)", len(ids), sent)
    return len(ids)
