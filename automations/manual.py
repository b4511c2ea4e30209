"""Running an automation by hand, and previewing what it would send.

A run by hand acts on the present: the version that already holds ``production``, say, for a deploy automation made
today. It is recorded as an event of the automation's type for that version, marked manual and dispatched to that
one automation only, through the same path as any event (history, delivery, retries). It is refused for a disabled
automation and is not counted by, nor refused by, its throttle; its filters do not apply, since its version was
chosen. A preview renders the payload (or the job's config) against a past event of the automation's type, with
secrets shown as ``${NAME}``, and sends nothing.
"""

from __future__ import annotations

import uuid
from typing import Any

from django.contrib.auth.base_user import AbstractBaseUser
from django.db import transaction

from core.errors import ApplicationError, Conflict, NotFound
from launch.services import config_merge
from registry import outbox, selectors
from registry.events import Change, event_type_get
from registry.models import ArtifactVersion, Event, ModelVersion
from registry.services import alias_validate, tag_validate

from . import rendering
from .choices import ActionType
from .models import Automation

VERSION_HELP = (
    "For a registered model's events: MODEL:vN or MODEL:ALIAS (vN or ALIAS alone when the automation watches one "
    "model). For artifact events: PROJECT/COLLECTION:vN (COLLECTION:vN or vN alone when it watches one)."
)


def automation_run(
    *, automation: Automation, user: AbstractBaseUser | None, version: str, alias: str = "", tag: str = ""
) -> Event:
    """Record a manual event of the automation's type for ``version``; dispatched after commit, to it alone."""
    if not automation.enabled:
        raise Conflict(f"Automation {automation.name!r} is disabled: enable it to run it.", field="automation")
    event_type = event_type_get(automation.event_type)
    if event_type.scope == "project":
        change = Change(event_type=event_type, artifact=_artifact_in_scope(automation, version), author=user)
    else:
        model_version, named = _model_version_in_scope(automation, version)
        change = Change(
            event_type=event_type,
            artifact=model_version.artifact_version,
            author=user,
            model_version=model_version,
            alias=(alias or named) if event_type.carries("alias") else "",
        )
    if event_type.carries("alias"):
        if not change.alias:
            raise ApplicationError(
                f"{event_type.name} carries an alias: name the version by its alias (MODEL:production) or give one.",
                field="alias",
            )
        alias_validate(change.alias)
    if event_type.carries("tag"):
        if not tag:
            raise ApplicationError(f"{event_type.name} carries a tag: give one.", field="tag")
        change = Change(event_type=event_type, artifact=change.artifact, author=user, tag=tag_validate(tag))
    with transaction.atomic():
        return outbox.event_record_manual(change=change, automation_id=automation.pk)


def _split(version: object) -> tuple[str, str]:
    if not isinstance(version, str) or not version.strip() or "\x00" in version:
        raise ApplicationError(f"Name a version. {VERSION_HELP}", field="version")
    head, _, tail = version.strip().rpartition(":")
    return head, tail


def _model_version_in_scope(automation: Automation, version: str) -> tuple[ModelVersion, str]:
    """The model version ``version`` names, and the alias it was named by (if any)."""
    name, tag = _split(version)
    name = name.removeprefix(f"{automation.team.name}/").removeprefix("model-registry/")
    watched = automation.registered_model
    if not name:
        if watched is None:
            raise ApplicationError(f"Name the registered model too. {VERSION_HELP}", field="version")
        name = watched.name
    if watched is not None and name != watched.name:
        raise ApplicationError(f"Automation {automation.name!r} watches {watched.name}, not {name}.", field="version")
    try:
        found = selectors.model_version_find(team=automation.team, name=name, version=tag)
    except NotFound as exc:
        raise ApplicationError(exc.message, field="version") from exc
    return found, "" if selectors.VERSION_TAG_RE.match(tag) else tag


def _artifact_in_scope(automation: Automation, version: str) -> ArtifactVersion:
    path, tag = _split(version)
    parts = [part for part in path.split("/") if part] if path else []
    if parts and parts[0] == automation.team.name and len(parts) == 3:
        parts = parts[1:]
    project = automation.project.name if automation.project else None
    collection = automation.collection.name if automation.collection else None
    if len(parts) == 2:
        project_named, collection_named = parts
    elif len(parts) == 1 and project:
        project_named, collection_named = project, parts[0]
    elif not parts and project and collection:
        project_named, collection_named = project, collection
    else:
        raise ApplicationError(f"Name the artifact version. {VERSION_HELP}", field="version")
    if (project and project_named != project) or (collection and collection_named != collection):
        watched = f"{project}/{collection}" if collection else project
        raise ApplicationError(
            f"Automation {automation.name!r} watches {watched}, not {project_named}/{collection_named}.",
            field="version",
        )
    try:
        found = selectors.artifact_version_get(
            team=automation.team, project=project_named, collection=collection_named, version=tag
        )
    except NotFound as exc:
        raise ApplicationError(exc.message, field="version") from exc
    if found.state != "committed":
        raise Conflict(f"{found.reference} is not committed yet.", field="version")
    return found


def automation_preview(*, automation: Automation, event_id: object = None) -> dict[str, Any]:
    """What the automation would send for a past event of its type (the latest when none is named): the payload's
    body with secrets as ``${NAME}``, or the queue item's config. Nothing is sent or written."""
    events = Event.objects.filter(team_id=automation.team_id, type=automation.event_type)
    if event_id in (None, ""):
        event = events.order_by("-created_at").first()
        if event is None:
            raise ApplicationError(f"No {automation.event_type} event yet to preview against.", field="event")
    else:
        try:
            event = events.filter(pk=uuid.UUID(str(event_id))).first()
        except ValueError:
            event = None
        if event is None:
            raise ApplicationError(
                f"No {automation.event_type} event {event_id!r} in this team: preview against an event of the "
                "automation's type.",
                field="event",
            )
    try:
        if automation.action_type == ActionType.LAUNCH_JOB:
            overrides = rendering.overrides_render(automation.overrides, context=event.context)
            return {"event": event, "config": config_merge(automation.job_version.default_config, overrides)}
        return {"event": event, "body": rendering.render_preview(automation.payload, context=event.context)}
    except rendering.TemplateError as exc:
        raise ApplicationError(f"It does not render for this event: {exc.message}", field="event") from exc
