"""Reads for webhooks, automations and deliveries, always within one team."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db.models import Q, QuerySet, prefetch_related_objects

from core.db import filter_given
from core.errors import NotFound
from registry.events import event_type_get, event_types
from registry.models import Event, Team

from . import rendering
from .alias_filter import alias_filter_matches
from .choices import ActionType
from .filters import filter_matches
from .models import Automation, Delivery, Webhook


def webhooks_for_team(*, team: Team) -> QuerySet[Webhook]:
    return Webhook.objects.filter(team=team).select_related("secret", "access_token")


def webhook_get(*, team: Team, webhook_id: object) -> Webhook:
    try:
        return webhooks_for_team(team=team).get(pk=int(webhook_id))
    except (Webhook.DoesNotExist, ValueError, TypeError) as exc:
        raise NotFound(f"No webhook {webhook_id!r} in {team.name}.") from exc


def automations_for_team(*, team: Team, registered_model: str | None = None) -> QuerySet[Automation]:
    automations = Automation.objects.filter(team=team).select_related(
        "registered_model", "project", "collection", "webhook", "job_version__job", "queue", "destination_project"
    )
    if registered_model:
        # The per-model listing: automations on this model and those on every model of the team.
        automations = automations.filter(
            Q(registered_model__name=registered_model) | Q(registered_model__isnull=True),
            event_type__in=[t.name for t in event_types() if t.scope == "registered_model"],
        )
    return automations


def automation_get(*, team: Team, automation_id: object) -> Automation:
    try:
        return automations_for_team(team=team).get(pk=int(automation_id))
    except (Automation.DoesNotExist, ValueError, TypeError) as exc:
        raise NotFound(f"No automation {automation_id!r} in {team.name}.") from exc


def _in_scope(event: Event) -> Q:
    """Automations whose scope covers the event: its registered model, or its project or artifact collection, or
    (nothing named) every one of the team's."""
    if event_type_get(event.type).scope == "project":
        artifact = event.artifact_version
        if artifact is None:  # deleted since: the collection it was in is not known any more
            return Q(project__isnull=True, collection__isnull=True)
        collection = artifact.collection
        return (
            Q(collection_id=collection.pk)
            | Q(collection__isnull=True, project_id=collection.project_id)
            | Q(collection__isnull=True, project__isnull=True)
        )
    return Q(registered_model_id=event.registered_model_id) | Q(registered_model__isnull=True)


# What dispatch reads of a matching automation; its webhook (with the secrets' rows) is loaded once per webhook.
_DISPATCHED = (
    "id", "team_id", "name", "enabled", "event_type", "action_type", "alias_regex", "filter", "throttle_runs",
    "throttle_window", "webhook_id", "payload", "job_version_id", "overrides", "destination_project_id", "queue_id",
)  # fmt: skip


def automations_matching(*, event: Event) -> list[Automation]:
    """Enabled automations of the event's team, type and scope whose alias filter (if any) matches somewhere in the
    alias and whose filter expression (if any) holds for the event's context. A run by hand is for its one
    automation, whatever its filters say: its version was chosen."""
    candidates = Automation.objects.filter(team_id=event.team_id, enabled=True, event_type=event.type).only(
        *_DISPATCHED
    )
    if event.manual_for is not None:
        matched = list(candidates.filter(pk=event.manual_for))
    else:
        matched = [
            a
            for a in candidates.filter(_in_scope(event)).order_by("pk")
            if (not a.alias_regex or alias_filter_matches(a.alias_regex, event.alias))
            and filter_matches(a.filter, event.context, event_type=event.type)
        ]
    # Launch automations are the rarer kind: their rows come in queries of their own, only when there are any.
    if launches := [a for a in matched if a.action_type == ActionType.LAUNCH_JOB]:
        prefetch_related_objects(launches, "job_version__job", "queue", "destination_project")
    _webhooks_attach(matched)
    return matched


def _webhooks_attach(automations: list[Automation]) -> None:
    """Give each automation its webhook, with the signing-secret and access-token rows (which the first attempt
    decrypts), reading each webhook once however many automations share it, and its team once."""
    ids = {a.webhook_id for a in automations if a.webhook_id}
    webhooks = Webhook.objects.select_related("team", "secret", "access_token").in_bulk(ids) if ids else {}
    teams = {w.team_id: w.team for w in webhooks.values()}
    missing = {a.team_id for a in automations} - teams.keys()
    teams.update(Team.objects.in_bulk(missing) if missing else {})
    for automation in automations:
        Automation.team.field.set_cached_value(automation, teams[automation.team_id])
        if automation.webhook_id:
            Automation.webhook.field.set_cached_value(automation, webhooks[automation.webhook_id])


def deliveries_for_team(
    *, team: Team, status: str | None = None, automation: object = None, webhook: object = None, event: object = None
) -> QuerySet[Delivery]:
    deliveries = Delivery.objects.filter(team=team).select_related("event")
    return filter_given(deliveries, status=status, automation_id=automation, webhook_id=webhook, event_id=event)


def delivery_get(*, team: Team, delivery_id: object) -> Delivery:
    try:
        pk = uuid.UUID(str(delivery_id))
        return Delivery.objects.filter(team=team).select_related("event").prefetch_related("attempt_log").get(pk=pk)
    except (Delivery.DoesNotExist, ValueError) as exc:
        raise NotFound(f"No delivery {delivery_id!r} in {team.name}.") from exc


def secret_users(team: Team, name: str) -> list[str]:
    """What refers to a secret, so the vault can refuse to delete one in use and name the users."""
    users = [
        f"webhook {webhook_name!r}"
        for webhook_name in Webhook.objects.filter(team=team)
        .filter(Q(secret__name=name) | Q(access_token__name=name))
        .values_list("name", flat=True)
    ]
    payloads = Automation.objects.filter(team=team, action_type=ActionType.WEBHOOK).values_list("name", "payload")
    users += [f"automation {n!r}" for n, payload in payloads if name in rendering.template_variables(payload)]
    return users


def sample_context(*, team: Team, user) -> dict:
    """Variables for testing a webhook: the team's latest event if it has one, else a made-up link."""
    latest = Event.objects.filter(team=team).order_by("-created_at").values_list("context", flat=True).first()
    if latest:
        return {"alias": "production", "tag": "candidate", **latest}
    return {
        "event_id": "00000000-0000-0000-0000-000000000000",
        "event_type": "LINK_ARTIFACT",
        "event_author": user.get_username(),
        "artifact_version": "registry-artifact://_id/00000000-0000-0000-0000-000000000000",
        "artifact_version_string": f"{team.name}/model-registry/example-model:v0",
        "artifact_collection_name": "example-model",
        "project_name": "model-registry",
        "entity_name": team.name,
        "artifact_digest": "0" * 64,
        "artifact_files_url": (
            f"{settings.PUBLIC_BASE_URL}/api/v1/teams/{team.name}/projects/example/artifacts/example-model/versions/v0/"
        ),
        "alias": "production",
        "tag": "candidate",
        "version": "v0",
        "artifact_metadata": {},
    }
