"""Writes for webhooks and automations: validated, atomic, keyword-only.

Validation happens here (not in serializers or forms) so the API and the admin refuse exactly the same things.
"""

from __future__ import annotations

import json
from typing import Any

from django.contrib.auth.base_user import AbstractBaseUser
from django.db import transaction

from core.db import conflict_on_duplicate
from core.errors import ApplicationError, Conflict
from core.json_checks import json_problem
from core.validators import label_validate
from launch import selectors as launch_selectors
from launch.models import JobVersion, RunQueue
from registry.choices import REGISTRY_PROJECT
from registry.events import event_type_get, event_types
from registry.models import ArtifactCollection, Project, RegisteredModel, Team
from registry.selectors import registered_model_get
from secrets_vault.models import Secret
from secrets_vault.selectors import secret_names

from . import rendering, safe_http
from .alias_filter import AliasFilterError, alias_filter_validate
from .choices import ActionType
from .filters import FilterError, filter_validate
from .models import Automation, Webhook
from .runs import throttle_validate

MAX_PAYLOAD_BYTES = 64 * 1024
MAX_PAYLOAD_DEPTH = 64  # as the API's JSON parser allows


def url_validate(url: object) -> str:
    """The outbound-safety check at save time (it runs again at every send)."""
    if not isinstance(url, str) or not url:
        raise ApplicationError("A URL is required.", field="url")
    try:
        safe_http.url_check(url)
    except safe_http.UnsafeURL as exc:
        raise ApplicationError(f"URL refused: {exc.reason}", field="url") from exc
    return url


def _secret_get(*, team: Team, name: str | None, field: str) -> Secret | None:
    if name in (None, ""):
        return None
    secret = Secret.objects.filter(team=team, name=name).first()
    if secret is None:
        raise ApplicationError(f"No secret {name!r} in {team.name}; create it first.", field=field)
    return secret


# --- Webhooks -------------------------------------------------------------------------------------------


def webhook_create(
    *,
    team: Team,
    name: str,
    url: str,
    user: AbstractBaseUser | None,
    secret: str | None = None,
    access_token: str | None = None,
    enabled: bool = True,
    alerts: bool = False,
) -> Webhook:
    webhook = Webhook(
        team=team,
        name=label_validate(name, what="webhook"),
        url=url_validate(url),
        secret=_secret_get(team=team, name=secret, field="secret"),
        access_token=_secret_get(team=team, name=access_token, field="access_token"),
        enabled=enabled,
        alerts=alerts,
        created_by=user,
    )
    with conflict_on_duplicate(f"A webhook named {name!r} already exists."):
        webhook.save()
    return webhook


_UNSET: Any = object()


def webhook_update(
    *,
    webhook: Webhook,
    name: str = _UNSET,
    url: str = _UNSET,
    secret: str | None = _UNSET,
    access_token: str | None = _UNSET,
    enabled: bool = _UNSET,
    alerts: bool = _UNSET,
) -> Webhook:
    if name is not _UNSET:
        webhook.name = label_validate(name, what="webhook")
    if url is not _UNSET:
        webhook.url = url_validate(url)
    if secret is not _UNSET:
        webhook.secret = _secret_get(team=webhook.team, name=secret, field="secret")
    if access_token is not _UNSET:
        webhook.access_token = _secret_get(team=webhook.team, name=access_token, field="access_token")
    if enabled is not _UNSET:
        if enabled and not webhook.enabled:
            # Re-enabling is the admin saying the endpoint is fixed: start the failure clock afresh.
            webhook.disabled_reason = ""
            webhook.failing_since = None
        webhook.enabled = enabled
    if alerts is not _UNSET:
        webhook.alerts = alerts
    with conflict_on_duplicate(f"A webhook named {webhook.name!r} already exists."):
        webhook.save()
    return webhook


@transaction.atomic
def webhook_delete(*, webhook: Webhook) -> None:
    """Deliveries keep their snapshot and finish; automations using the webhook must go first."""
    users = list(webhook.automations.values_list("name", flat=True))
    if users:
        raise Conflict(
            f"Webhook {webhook.name!r} is used by automation(s) {', '.join(map(repr, users))}; "
            "delete or change those first.",
            field="webhook",
        )
    webhook.delete()


def webhook_disable(*, webhook_id: int, reason: str) -> bool:
    """Disable an enabled webhook; False when it was disabled already (by an admin, or by a concurrent attempt)."""
    return bool(Webhook.objects.filter(pk=webhook_id, enabled=True).update(enabled=False, disabled_reason=reason))


# --- Automations ----------------------------------------------------------------------------------------


def _event_type_validate(event_type: object) -> str:
    names = [t.name for t in event_types()]
    if event_type not in names:
        raise ApplicationError(f"Unknown event type {event_type!r}: use one of {', '.join(names)}.", field="event_type")
    return event_type


def _with_alias() -> list[str]:
    """The event types whose events carry an alias, as the event registry says."""
    return [t.name for t in event_types() if t.carries("alias")]


def _alias_regex_validate(alias_regex: object, *, event_type: str) -> str:
    if alias_regex in (None, ""):
        return ""
    if event_type not in _with_alias():
        raise ApplicationError(
            f"An alias filter only applies to events with an alias: {', '.join(_with_alias())}.", field="alias_regex"
        )
    if not isinstance(alias_regex, str):
        raise ApplicationError("The alias filter must be a regular expression (a string).", field="alias_regex")
    try:
        alias_filter_validate(alias_regex)
    except AliasFilterError as exc:
        raise ApplicationError(str(exc), field="alias_regex") from exc
    return alias_regex


def _filter_validate(expr: object, *, event_type: str) -> dict:
    try:
        return filter_validate(expr, event_type=event_type)
    except FilterError as exc:
        raise ApplicationError(str(exc), field="filter") from exc


def _shape_problem(template: dict) -> str | None:
    """What makes a parsed template unfit to store and render, if anything."""
    problem = json_problem(template, max_depth=MAX_PAYLOAD_DEPTH)
    if problem == "nul":
        # The database cannot store it: refused here rather than failing on insert.
        return "The payload may not contain the NUL character (\\u0000)."
    if problem == "depth":
        # Rendering walks the template recursively at send time; keep it far from the recursion limit.
        return f"The payload is nested deeper than {MAX_PAYLOAD_DEPTH} levels."
    return None


def payload_validate(
    *, team: Team, payload: object, event_type: str | None, field: str = "payload", secrets_allowed: bool = True
) -> dict:
    """Parse and check a payload template of a team, as stored by an automation or sent by a webhook test.

    ``event_type=None`` (testing a webhook) accepts the variables of every event type.
    """
    try:
        template = rendering.template_parse(payload)
        rendering.template_validate(
            template, event_type=event_type, secret_names=secret_names(team=team) if secrets_allowed else ()
        )
    except rendering.TemplateError as exc:
        raise ApplicationError(str(exc.message), field=field) from exc
    except RecursionError:  # a string payload nested deeper than the JSON reader goes
        raise ApplicationError("Invalid JSON: the payload is nested too deeply.", field=field) from None
    except ValueError:  # a string payload holding an integer longer than Python converts
        raise ApplicationError("Invalid JSON: a number has too many digits.", field=field) from None
    if problem := _shape_problem(template):
        raise ApplicationError(problem, field=field)
    try:
        encoded = json.dumps(template, allow_nan=False).encode()
    except ValueError:  # a string payload holding a number such as 1e400
        raise ApplicationError("The payload holds a number that is not finite.", field=field) from None
    if len(encoded) > MAX_PAYLOAD_BYTES:
        raise ApplicationError(f"The payload template is larger than {MAX_PAYLOAD_BYTES} bytes.", field=field)
    return template


def automation_validate(automation: Automation) -> Automation:
    """Check an automation as a whole (after a create or any partial update)."""
    team = automation.team
    label_validate(automation.name, what="automation")
    _event_type_validate(automation.event_type)
    automation.alias_regex = _alias_regex_validate(automation.alias_regex, event_type=automation.event_type)
    automation.filter = _filter_validate(automation.filter, event_type=automation.event_type)
    automation.throttle_runs, automation.throttle_window = throttle_validate(
        automation.throttle_runs, automation.throttle_window
    )
    if automation.registered_model is not None and automation.registered_model.team_id != team.pk:
        raise ApplicationError("The registered model belongs to another team.", field="registered_model")
    _scope_validate(automation)
    if automation.action_type == ActionType.WEBHOOK:
        if automation.webhook is None:
            raise ApplicationError("A webhook action needs a webhook.", field="webhook")
        if automation.webhook.team_id != team.pk:
            raise ApplicationError("No such webhook in this team.", field="webhook")
        automation.payload = payload_validate(team=team, payload=automation.payload, event_type=automation.event_type)
    elif automation.action_type == ActionType.LAUNCH_JOB:
        for value, field in (
            (automation.job_version, "job_version"),
            (automation.destination_project, "destination_project"),
            (automation.queue, "queue"),
        ):
            if value is None:
                raise ApplicationError(f"A launch job action needs a {field.replace('_', ' ')}.", field=field)
        # Queue items store their config, so overrides may not carry secrets (they would be stored in clear).
        automation.overrides = payload_validate(
            team=team, payload=automation.overrides, event_type=automation.event_type, field="overrides",
            secrets_allowed=False,
        )  # fmt: skip
    else:
        raise ApplicationError(
            f"Unknown action type {automation.action_type!r}: use WEBHOOK or LAUNCH_JOB.", field="action_type"
        )
    return automation


def _scope_validate(automation: Automation) -> None:
    """An automation watches what its event type is about: registered models, or projects and collections."""
    event_type = automation.event_type
    if event_type_get(event_type).scope == "project":
        if automation.registered_model is not None:
            raise ApplicationError(
                f"{event_type} automations watch a project or an artifact collection, not a registered model.",
                field="registered_model",
            )
    elif automation.project is not None or automation.collection is not None:
        raise ApplicationError(
            f"{event_type} automations watch a registered model; a project or collection is for "
            f"{', '.join(t.name for t in event_types() if t.scope == 'project')}.",
            field="collection" if automation.project is None else "project",
        )
    if automation.project is not None and automation.project.team_id != automation.team_id:
        raise ApplicationError("The project belongs to another team.", field="project")
    project_id = automation.project.pk if automation.project is not None else None
    if automation.collection is not None and automation.collection.project_id != project_id:
        raise ApplicationError("The collection belongs to another project.", field="collection")


def _scope(team: Team, project: str | None, collection: str | None) -> dict:
    """The project and collection named, of ``team``: a collection is named within its project."""
    if project in (None, ""):
        if collection not in (None, ""):
            raise ApplicationError("Name the project the collection is in.", field="project")
        return {"project": None, "collection": None}
    found = Project.objects.filter(team=team, name=project).first()
    if found is None:
        raise ApplicationError(f"No project {project!r} in {team.name}.", field="project")
    if found.name == REGISTRY_PROJECT:
        raise ApplicationError(
            f"{REGISTRY_PROJECT} holds registered models: watch them with a registered model scope.", field="project"
        )
    if collection in (None, ""):
        return {"project": found, "collection": None}
    found_collection = ArtifactCollection.objects.filter(project=found, name=collection).first()
    if found_collection is None:
        raise ApplicationError(f"No artifact collection {collection!r} in {team.name}/{project}.", field="collection")
    return {"project": found, "collection": found_collection}


def _registered_model(team: Team, name: str | None) -> RegisteredModel | None:
    if name in (None, ""):
        return None
    try:
        return registered_model_get(team=team, name=name)
    except ApplicationError as exc:
        raise ApplicationError(f"No registered model {name!r} in {team.name}.", field="registered_model") from exc


def _webhook(team: Team, webhook_id: object) -> Webhook | None:
    if webhook_id in (None, ""):
        return None
    try:
        return Webhook.objects.get(team=team, pk=int(webhook_id))
    except (Webhook.DoesNotExist, ValueError, TypeError) as exc:
        raise ApplicationError(f"No webhook {webhook_id!r} in {team.name}.", field="webhook") from exc


def _job_version(team: Team, job: str | None, version: str | None) -> JobVersion | None:
    if job in (None, "") and version in (None, ""):
        return None
    try:
        found = launch_selectors.job_get(team=team, name=str(job), field="job")
    except ApplicationError as exc:
        raise ApplicationError(f"No job {job!r} in {team.name}.", field="job") from exc
    try:
        return launch_selectors.job_version_get(job=found, version=version, field="job_version")
    except ApplicationError as exc:
        raise ApplicationError(f"Job {job!r} has no version {version!r}.", field="job_version") from exc


def _project(team: Team, name: str | None) -> Project | None:
    if name in (None, ""):
        return None
    found = Project.objects.filter(team=team, name=name).first()
    if found is None:
        raise ApplicationError(f"No project {name!r} in {team.name}.", field="destination_project")
    return found


def _queue(team: Team, name: str | None) -> RunQueue | None:
    if name in (None, ""):
        return None
    found = RunQueue.objects.filter(team=team, name=name).first()
    if found is None:
        raise ApplicationError(f"No queue {name!r} in {team.name}.", field="queue")
    return found


def _save(automation: Automation) -> Automation:
    with conflict_on_duplicate(f"An automation named {automation.name!r} already exists."):
        automation.save()
    return automation


def automation_create(
    *,
    team: Team,
    user: AbstractBaseUser | None,
    name: str,
    event_type: str,
    action_type: str,
    description: str = "",
    enabled: bool = True,
    registered_model: str | None = None,
    project: str | None = None,
    collection: str | None = None,
    alias_regex: str | None = None,
    filter: dict | str | None = None,
    webhook: int | None = None,
    payload: dict | str | None = None,
    job: str | None = None,
    job_version: str | None = None,
    overrides: dict | str | None = None,
    destination_project: str | None = None,
    queue: str | None = None,
    throttle_runs: int | None = None,
    throttle_window: int | None = None,
) -> Automation:
    automation = Automation(
        team=team,
        name=name,
        description=description,
        enabled=enabled,
        event_type=event_type,
        registered_model=_registered_model(team, registered_model),
        **_scope(team, project, collection),
        alias_regex=alias_regex or "",
        filter=filter if filter is not None else {},
        action_type=action_type,
        webhook=_webhook(team, webhook),
        payload=payload if payload is not None else {},
        job_version=_job_version(team, job, job_version),
        overrides=overrides if overrides is not None else {},
        destination_project=_project(team, destination_project),
        queue=_queue(team, queue),
        throttle_runs=throttle_runs,
        throttle_window=throttle_window,
        created_by=user,
    )
    return _save(automation_validate(automation))


def automation_update(*, automation: Automation, **changes: Any) -> Automation:
    """Apply a partial update, then validate the automation as a whole."""
    team = automation.team
    for field, value in changes.items():
        if field == "registered_model":
            automation.registered_model = _registered_model(team, value)
        elif field in {"project", "collection"}:
            project = changes.get("project", automation.project.name if automation.project else None)
            collection = changes.get("collection", automation.collection.name if automation.collection else None)
            for name, found in _scope(team, project, collection).items():
                setattr(automation, name, found)
        elif field == "webhook":
            automation.webhook = _webhook(team, value)
        elif field in {"job", "job_version"}:
            current = automation.job_version
            job = changes.get("job", current.job.name if current else None)
            version = changes.get("job_version", current.version if current else None)
            automation.job_version = _job_version(team, job, version)
        elif field == "destination_project":
            automation.destination_project = _project(team, value)
        elif field == "queue":
            automation.queue = _queue(team, value)
        elif field == "alias_regex":
            automation.alias_regex = value or ""
        elif field == "filter":
            automation.filter = value if value is not None else {}
        elif field in {
            "name", "description", "enabled", "event_type", "action_type", "payload", "overrides", "throttle_runs",
            "throttle_window",
        }:  # fmt: skip
            setattr(automation, field, value)
        else:
            raise ApplicationError(f"Unknown field {field!r}.", field=field)
    return _save(automation_validate(automation))


def automation_delete(*, automation: Automation) -> None:
    """Deliveries already created keep their snapshot and go on."""
    automation.delete()
