import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q

from registry.models import Event, Project, Team

from .choices import ItemState, ResourceType


class Job(models.Model):
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="jobs")
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="jobs")
    name = models.CharField(max_length=128)
    description = models.TextField(blank=True)
    next_index = models.PositiveIntegerField(default=0, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["team__name", "name"]
        constraints = [models.UniqueConstraint(fields=["team", "name"], name="job_unique_name_per_team")]

    def __str__(self) -> str:
        return f"{self.team.name}/{self.name}"


class JobVersion(models.Model):
    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="versions")
    index = models.PositiveIntegerField()
    entrypoint = models.JSONField(help_text="The command, as a list of strings.")
    default_config = models.JSONField(default=dict, blank=True)
    source = models.TextField(blank=True)
    download_artifact = models.BooleanField(
        default=False,
        help_text="The agent downloads the event's model version (every file's SHA-256 checked) into the job's "
        "working directory before the job starts, and names the folder in LAUNCH_ARTIFACT_DIR.",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["job_id", "index"]
        constraints = [models.UniqueConstraint(fields=["job", "index"], name="job_version_unique_index")]

    def __str__(self) -> str:
        return f"{self.job}:{self.version}"

    @property
    def version(self) -> str:
        return f"v{self.index}"


class RunQueue(models.Model):
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="run_queues")
    name = models.CharField(max_length=128)
    resource_type = models.CharField(max_length=32, choices=ResourceType.choices, default=ResourceType.LOCAL_PROCESS)
    resource_config = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["team__name", "name"]
        constraints = [models.UniqueConstraint(fields=["team", "name"], name="run_queue_unique_name_per_team")]

    def __str__(self) -> str:
        return f"{self.team.name}/{self.name}"


class Agent(models.Model):
    """A process on a compute machine that claims and runs queue items. Only its token's SHA-256 is stored."""

    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="agents")
    name = models.CharField(max_length=128)
    queues = models.ManyToManyField(RunQueue, related_name="agents")
    token_hash = models.CharField(max_length=64, unique=True)
    token_prefix = models.CharField(max_length=12)
    last_seen_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    disabled = models.BooleanField(default=False)

    class Meta:
        ordering = ["team__name", "name"]
        constraints = [models.UniqueConstraint(fields=["team", "name"], name="agent_unique_name_per_team")]

    def __str__(self) -> str:
        return f"{self.team.name}/{self.name}"


class RunQueueItem(models.Model):
    """One run to make. ``config`` is the snapshot of defaults overlaid with rendered overrides."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="run_queue_items")
    queue = models.ForeignKey(RunQueue, on_delete=models.CASCADE, related_name="items")
    job_version = models.ForeignKey(JobVersion, on_delete=models.PROTECT, related_name="items")
    entrypoint = models.JSONField()
    config = models.JSONField(default=dict)
    destination_project = models.ForeignKey(Project, on_delete=models.PROTECT, related_name="+")
    state = models.CharField(max_length=16, choices=ItemState.choices, default=ItemState.PENDING)
    agent = models.ForeignKey(Agent, null=True, blank=True, on_delete=models.SET_NULL, related_name="items")
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    exit_code = models.IntegerField(null=True, blank=True)
    log_tail = models.TextField(blank=True)
    reason = models.TextField(blank=True)
    cancel_requested = models.BooleanField(default=False)
    event = models.ForeignKey(Event, null=True, blank=True, on_delete=models.SET_NULL, related_name="run_queue_items")
    event_context = models.JSONField(default=dict, blank=True)
    # Plain values, not a foreign key: automations depend on launch, never the other way round.
    automation_id = models.BigIntegerField(null=True, blank=True)
    automation_name = models.CharField(max_length=128, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["created_at"]
        indexes = [
            models.Index(fields=["queue", "created_at"], condition=Q(state="pending"), name="item_pending_idx"),
            models.Index(
                fields=["lease_expires_at"], condition=Q(state__in=["claimed", "running"]), name="item_lease_idx"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.job_version} on {self.queue} ({self.state})"
