"""Small factories: each builds one thing through the services, so test data obeys the same rules as real data."""

from __future__ import annotations

import itertools

from django.contrib.auth import get_user_model
from rest_framework.test import APIClient

from core.roles import Role
from registry import services
from registry.models import ArtifactVersion, ModelVersion, Project, RegisteredModel, Team

PASSWORD = "correct-horse-battery-9"
# Admitted by the loopback allow-list (WEBHOOK_ALLOWED_NETWORKS = 127.0.0.1/32); nothing listens there, and tests
# that use it send nothing.
PARKED_URL = "http://127.0.0.1:9/hook"
_seq = itertools.count(1)


def make_user(username: str | None = None, *, superuser: bool = False, staff: bool = False):
    username = username or f"user{next(_seq)}"
    User = get_user_model()
    if superuser:
        return User.objects.create_superuser(username, f"{username}@example.com", PASSWORD)
    return User.objects.create_user(username, f"{username}@example.com", PASSWORD, is_staff=staff)


def make_team(name: str | None = None, *, admin=None) -> Team:
    return services.team_create(name=name or f"team{next(_seq)}", creator=admin or make_user())


def add_member(team: Team, user=None, role: str = Role.MEMBER):
    user = user or make_user()
    services.membership_set(team=team, username=user.username, role=role)
    return user


def make_project(team: Team, name: str = "training") -> Project:
    return Project.objects.filter(team=team, name=name).first() or services.project_create(team=team, name=name)


def make_artifact_version(
    team: Team, *, project: str = "training", collection: str = "classifier", metadata: dict | None = None, user=None
) -> ArtifactVersion:
    return services.artifact_version_create(
        project=make_project(team, project),
        collection_name=collection,
        type="model",
        metadata=metadata or {},
        user=user,
    )


def make_registered_model(team: Team, name: str = "classifier") -> RegisteredModel:
    return RegisteredModel.objects.filter(team=team, name=name).first() or services.registered_model_create(
        team=team, name=name
    )


def link(registered_model: RegisteredModel, *, user=None, aliases=(), metadata: dict | None = None) -> ModelVersion:
    artifact = make_artifact_version(registered_model.team, metadata=metadata, user=user)
    return services.model_version_link(
        registered_model=registered_model, artifact_version=artifact, user=user, aliases=list(aliases)
    )


def api_client(user=None) -> APIClient:
    """A client authenticated the way engineers are: with an API token in the Authorization header."""
    client = APIClient()
    if user is not None:
        _, raw = services.api_token_create(user=user)
        client.credentials(HTTP_AUTHORIZATION=f"Token {raw}")
    return client


def registry_snapshot() -> dict:
    """Everything a registry API write can change, so a test can prove a refused request wrote nothing."""
    from registry.models import (
        Alias,
        ArtifactCollection,
        ArtifactTag,
        Blob,
        Event,
        ManifestEntry,
        Membership,
        ProtectedAlias,
    )

    def rows(queryset, *fields):
        return sorted(queryset.values_list(*fields))

    return {
        "users": rows(get_user_model().objects, "username", "email", "is_active"),
        "teams": rows(Team.objects, "name"),
        "memberships": rows(Membership.objects, "team__name", "user__username", "role"),
        "projects": rows(Project.objects, "team__name", "name", "description"),
        "collections": rows(ArtifactCollection.objects, "project__team__name", "project__name", "name", "type"),
        "artifact_versions": rows(ArtifactVersion.objects, "collection_id", "index", "digest", "description"),
        "registered_models": rows(RegisteredModel.objects, "team__name", "name", "description"),
        "model_versions": rows(ModelVersion.objects, "registered_model_id", "index", "artifact_version_id"),
        "aliases": rows(Alias.objects, "registered_model_id", "name", "model_version_id"),
        "protected_aliases": rows(ProtectedAlias.objects, "team_id", "name"),
        "tags": rows(ArtifactTag.objects, "artifact_version_id", "name"),
        "events": rows(Event.objects, "id"),
        "versions_state": rows(ArtifactVersion.objects, "pk", "state"),
        "manifest_entries": rows(ManifestEntry.objects, "artifact_version_id", "path", "sha256", "blob_id"),
        "blobs": rows(Blob.objects, "team_id", "sha256", "size"),
    }


def link_delivered(team: Team, *, user, url: str, payload: dict, secret: str = "", access_token: str = ""):
    """A webhook to ``url`` (with the named secrets) and an automation on links, then a link whose dispatch runs
    here as the events worker would run it: its delivery is sent and recorded before this returns. The event."""
    from automations import services as automations
    from registry import outbox
    from registry.models import Event

    webhook = automations.webhook_create(
        team=team, name="hook", url=url, secret=secret or None, access_token=access_token or None, user=user
    )
    automations.automation_create(
        team=team,
        user=user,
        webhook=webhook.pk,
        name="notify",
        event_type="LINK_ARTIFACT",
        action_type="WEBHOOK",
        payload=payload,
    )
    event = Event.objects.get(model_version=link(make_registered_model(team), user=user))
    assert outbox.event_dispatch(event_id=event.pk)
    return event


def dispatch_all() -> None:
    """Dispatch every undispatched event, oldest first, as the events worker would."""
    from registry import outbox
    from registry.models import Event

    for event in Event.objects.filter(dispatched_at__isnull=True).order_by("created_at"):
        outbox.event_dispatch(event_id=event.pk)
