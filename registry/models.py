import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q

from core.roles import Role
from core.validators import name_validator, slug_validator

from .choices import VersionState
from .events import event_type_choices


class Team(models.Model):
    name = models.CharField(max_length=64, unique=True, validators=[slug_validator])
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Membership(models.Model):
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.MEMBER)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["team__name", "user__username"]
        constraints = [models.UniqueConstraint(fields=["team", "user"], name="membership_unique_user_per_team")]

    def __str__(self) -> str:
        return f"{self.user} in {self.team} ({self.role})"


class Project(models.Model):
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="projects")
    name = models.CharField(max_length=128, validators=[name_validator])
    description = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["team__name", "name"]
        constraints = [models.UniqueConstraint(fields=["team", "name"], name="project_unique_name_per_team")]

    def __str__(self) -> str:
        return f"{self.team.name}/{self.name}"


class ArtifactCollection(models.Model):
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="collections")
    name = models.CharField(max_length=128, validators=[name_validator])
    type = models.CharField(max_length=64, validators=[name_validator])
    # The next version's index, advanced under the row lock; indices are never reused.
    next_index = models.PositiveIntegerField(default=0, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["project__name", "name"]
        constraints = [models.UniqueConstraint(fields=["project", "name"], name="collection_unique_name_per_project")]

    def __str__(self) -> str:
        return f"{self.project}/{self.name}"


class ArtifactVersion(models.Model):
    # The opaque id behind ${artifact_version}: stable, and reveals nothing about other rows.
    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    collection = models.ForeignKey(ArtifactCollection, on_delete=models.CASCADE, related_name="versions")
    index = models.PositiveIntegerField()
    # The SHA-256 of the canonical manifest, set when the version is committed.
    digest = models.CharField(max_length=128, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    description = models.TextField(blank=True)
    state = models.CharField(max_length=16, choices=VersionState.choices, default=VersionState.COMMITTED)
    committed_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["collection_id", "index"]
        constraints = [models.UniqueConstraint(fields=["collection", "index"], name="artifact_version_unique_index")]
        indexes = [
            models.Index(fields=["created_at"], condition=Q(state="pending"), name="artifact_version_pending_idx")
        ]

    def __str__(self) -> str:
        return self.reference

    @property
    def version(self) -> str:
        return f"v{self.index}"

    @property
    def reference(self) -> str:
        return f"{self.collection}:{self.version}"


class Blob(models.Model):
    """A file's bytes, stored once per team by SHA-256 through Django's storage API (``registry.blobs``)."""

    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="blobs")
    sha256 = models.CharField(max_length=64)
    size = models.BigIntegerField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["team_id", "sha256"]
        constraints = [models.UniqueConstraint(fields=["team", "sha256"], name="blob_unique_digest_per_team")]

    def __str__(self) -> str:
        return f"{self.sha256[:12]}… ({self.size} bytes)"


class ManifestEntry(models.Model):
    """One entry of an artifact version's manifest: a file the registry stores (``blob`` set once committed), or a
    reference to bytes kept elsewhere (``reference`` is their URI; the registry never fetches it)."""

    artifact_version = models.ForeignKey(ArtifactVersion, on_delete=models.CASCADE, related_name="entries")
    path = models.CharField(max_length=1024)
    size = models.BigIntegerField()
    sha256 = models.CharField(max_length=64)
    blob = models.ForeignKey(Blob, null=True, blank=True, on_delete=models.PROTECT, related_name="entries")
    reference = models.CharField(max_length=2048, blank=True)

    class Meta:
        ordering = ["artifact_version_id", "path"]
        verbose_name_plural = "manifest entries"
        constraints = [
            models.UniqueConstraint(fields=["artifact_version", "path"], name="manifest_entry_unique_path"),
        ]
        indexes = [models.Index(fields=["sha256"], name="manifest_entry_sha256_idx")]

    def __str__(self) -> str:
        return self.path


class RegisteredModel(models.Model):
    """A collection in the team's model-registry project."""

    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="registered_models")
    name = models.CharField(max_length=128, validators=[name_validator])
    description = models.TextField(blank=True)
    # The next model version's index, advanced under the row lock: an unlinked vN is never reused, so a
    # reference such as name:v3 never comes to mean another artifact.
    next_index = models.PositiveIntegerField(default=0, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["team__name", "name"]
        constraints = [models.UniqueConstraint(fields=["team", "name"], name="registered_model_unique_name_per_team")]

    def __str__(self) -> str:
        return f"{self.team.name}/model-registry/{self.name}"


class ModelVersion(models.Model):
    registered_model = models.ForeignKey(RegisteredModel, on_delete=models.CASCADE, related_name="versions")
    artifact_version = models.ForeignKey(ArtifactVersion, on_delete=models.PROTECT, related_name="links")
    index = models.PositiveIntegerField()
    linked_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    linked_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["registered_model_id", "index"]
        constraints = [
            models.UniqueConstraint(fields=["registered_model", "index"], name="model_version_unique_index"),
            models.UniqueConstraint(
                fields=["registered_model", "artifact_version"], name="model_version_artifact_linked_once"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.registered_model}:{self.version}"

    @property
    def version(self) -> str:
        return f"v{self.index}"


class Alias(models.Model):
    # registered_model is stored (not only reached through model_version) so the database can keep an alias
    # unique within its registered model.
    registered_model = models.ForeignKey(RegisteredModel, on_delete=models.CASCADE, related_name="aliases")
    model_version = models.ForeignKey(ModelVersion, on_delete=models.CASCADE, related_name="aliases")
    name = models.CharField(max_length=64)
    added_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    added_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["registered_model_id", "name"]
        verbose_name_plural = "aliases"
        constraints = [
            models.UniqueConstraint(fields=["registered_model", "name"], name="alias_unique_per_registered_model")
        ]

    def __str__(self) -> str:
        return f"{self.registered_model}:{self.name}"


class ProtectedAlias(models.Model):
    """An alias name that only the team's admins may put on, move or remove, in every registered model of the team."""

    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="protected_aliases")
    name = models.CharField(max_length=64)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["team__name", "name"]
        verbose_name_plural = "protected aliases"
        constraints = [models.UniqueConstraint(fields=["team", "name"], name="protected_alias_unique_per_team")]

    def __str__(self) -> str:
        return f"{self.team.name}:{self.name}"


class ArtifactTag(models.Model):
    """A tag on an artifact version; the model versions linking it show it too."""

    artifact_version = models.ForeignKey(ArtifactVersion, on_delete=models.CASCADE, related_name="tags")
    name = models.CharField(max_length=64)
    added_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    added_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["artifact_version_id", "name"]
        constraints = [
            models.UniqueConstraint(fields=["artifact_version", "name"], name="artifact_tag_unique_per_version")
        ]

    def __str__(self) -> str:
        return f"{self.artifact_version}#{self.name}"


class Event(models.Model):
    """A registry change, written in the transaction that made it (transactional outbox).

    ``context`` snapshots every payload variable at the time of the change, so what automations send does not
    depend on later renames or deletions.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="events")
    type = models.CharField(max_length=64, choices=event_type_choices)
    registered_model = models.ForeignKey(
        RegisteredModel, null=True, blank=True, on_delete=models.SET_NULL, related_name="events"
    )
    model_version = models.ForeignKey(
        ModelVersion, null=True, blank=True, on_delete=models.SET_NULL, related_name="events"
    )
    # The artifact version the event is about (for links and aliases, the one behind the model version).
    artifact_version = models.ForeignKey(
        ArtifactVersion, null=True, blank=True, on_delete=models.SET_NULL, related_name="events"
    )
    alias = models.CharField(max_length=64, blank=True)
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    caused_by = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="consequences")
    depth = models.PositiveIntegerField(default=0)
    context = models.JSONField(default=dict)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    dispatched_at = models.DateTimeField(null=True, blank=True)
    # When the sweeper last resent it, so a backed-up queue is not flooded with copies.
    dispatch_scheduled_at = models.DateTimeField(null=True, blank=True)
    dispatch_attempts = models.PositiveIntegerField(default=0)
    # Why an event was not acted on (e.g. the automation chain limit), shown to admins.
    dispatch_note = models.TextField(blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["created_at"], condition=Q(dispatched_at__isnull=True), name="event_undispatched_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.type} {self.context.get('artifact_version_string', '')}"


class ApiToken(models.Model):
    """An API token. Only its SHA-256 is stored; the token itself is shown once, when created."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=128, blank=True)
    key_hash = models.CharField(max_length=64, unique=True)
    prefix = models.CharField(max_length=12)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.user})"
