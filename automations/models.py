import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q

from launch.models import JobVersion, RunQueue, RunQueueItem
from registry.events import event_type_choices, event_type_get
from registry.models import ArtifactCollection, Event, Project, RegisteredModel, Team
from secrets_vault.models import Secret

from .alias_filter import MAX_ANCHORED_LENGTH
from .choices import ActionType, DeliveryStatus, RunOutcome


class Webhook(models.Model):
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="webhooks")
    name = models.CharField(max_length=128)
    url = models.CharField(max_length=2048)
    # Deleting a secret a webhook uses is refused (PROTECT), with the webhook named.
    secret = models.ForeignKey(
        Secret, null=True, blank=True, on_delete=models.PROTECT, related_name="signing_webhooks",
        help_text="Signs each delivery (X-Wandb-Signature and webhook-signature).",
    )  # fmt: skip
    access_token = models.ForeignKey(
        Secret, null=True, blank=True, on_delete=models.PROTECT, related_name="token_webhooks",
        help_text="Sent as the Authorization header: Bearer, then the token.",
    )  # fmt: skip
    enabled = models.BooleanField(default=True)
    alerts = models.BooleanField(
        default=False,
        help_text="Also receives this team's operational alerts (webhook.disabled, delivery.failed, agent.lost), "
        "signed like deliveries.",
    )
    last_error = models.TextField(blank=True)
    disabled_reason = models.TextField(blank=True)
    # Start of the current run of failed deliveries; a webhook failing for long enough is disabled.
    failing_since = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["team__name", "name"]
        constraints = [models.UniqueConstraint(fields=["team", "name"], name="webhook_unique_name_per_team")]

    def __str__(self) -> str:
        return f"{self.team.name}/{self.name}"


class Automation(models.Model):
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="automations")
    name = models.CharField(max_length=128)
    description = models.TextField(blank=True)
    enabled = models.BooleanField(default=True)
    event_type = models.CharField(max_length=64, choices=event_type_choices)
    # Null: every registered model of the team.
    registered_model = models.ForeignKey(
        RegisteredModel, null=True, blank=True, on_delete=models.CASCADE, related_name="automations"
    )
    # For project-scoped event types (CREATE_ARTIFACT): one artifact collection, or every collection of one project,
    # or (both null) every project of the team.
    project = models.ForeignKey(
        Project, null=True, blank=True, on_delete=models.CASCADE, related_name="watching_automations"
    )
    collection = models.ForeignKey(
        ArtifactCollection, null=True, blank=True, on_delete=models.CASCADE, related_name="automations"
    )
    # An RE2 pattern that must match somewhere in the alias (alias events only); see alias_filter.
    alias_regex = models.CharField(max_length=MAX_ANCHORED_LENGTH, blank=True)
    # A filter expression over the event's alias, tag and artifact metadata; {} lets every event through. See filters.
    filter = models.JSONField(default=dict, blank=True)
    # At most ``throttle_runs`` runs in any ``throttle_window`` seconds (both set, or neither): an event over the
    # limit is recorded as a skipped run. Runs started by hand neither count nor are refused.
    throttle_runs = models.PositiveIntegerField(null=True, blank=True)
    throttle_window = models.PositiveIntegerField(null=True, blank=True)
    action_type = models.CharField(max_length=16, choices=ActionType.choices)
    webhook = models.ForeignKey(Webhook, null=True, blank=True, on_delete=models.PROTECT, related_name="automations")
    payload = models.JSONField(default=dict, blank=True)
    # LAUNCH_JOB action. Queue items keep their own snapshot, so deleting the automation stops nothing queued.
    job_version = models.ForeignKey(
        JobVersion, null=True, blank=True, on_delete=models.PROTECT, related_name="automations"
    )
    overrides = models.JSONField(default=dict, blank=True)
    destination_project = models.ForeignKey(
        Project, null=True, blank=True, on_delete=models.PROTECT, related_name="launch_automations"
    )
    queue = models.ForeignKey(RunQueue, null=True, blank=True, on_delete=models.PROTECT, related_name="automations")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["team__name", "name"]
        constraints = [
            models.UniqueConstraint(fields=["team", "name"], name="automation_unique_name_per_team"),
            models.CheckConstraint(
                condition=~Q(action_type=ActionType.LAUNCH_JOB)
                | Q(job_version__isnull=False, destination_project__isnull=False, queue__isnull=False),
                name="automation_launch_action_is_complete",
            ),
            models.CheckConstraint(
                condition=~Q(action_type=ActionType.WEBHOOK) | Q(webhook__isnull=False),
                name="automation_webhook_action_has_webhook",
            ),
        ]
        indexes = [models.Index(fields=["team", "event_type", "enabled"], name="automation_match_idx")]

    def __str__(self) -> str:
        return f"{self.team.name}/{self.name}"

    @property
    def trigger_type(self) -> str:
        return event_type_get(self.event_type).label

    @property
    def action_name(self) -> str:
        """What the action runs: the webhook's name, or ``job:vN``."""
        if self.action_type == ActionType.LAUNCH_JOB and self.job_version:
            return f"{self.job_version.job.name}:{self.job_version.version}"
        return self.webhook.name if self.webhook else ""


class Delivery(models.Model):
    """One webhook delivery of one event for one automation, with a snapshot of everything it needs.

    The snapshot (URL, unrendered payload, secret names) lets a delivery finish even if its automation or webhook
    is changed or deleted meanwhile. Its id is the ``webhook-id`` header, the same on every attempt.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # Indexed by delivery_team_status_idx, which leads with it: a second index would only slow every write.
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="deliveries", db_index=False)
    event = models.ForeignKey(Event, on_delete=models.CASCADE, related_name="deliveries")
    automation = models.ForeignKey(
        Automation, null=True, blank=True, on_delete=models.SET_NULL, related_name="deliveries"
    )
    webhook = models.ForeignKey(Webhook, null=True, blank=True, on_delete=models.SET_NULL, related_name="deliveries")
    automation_name = models.CharField(max_length=128)
    webhook_name = models.CharField(max_length=128)
    url = models.CharField(max_length=2048)
    # scheme://host:port of ``url``: the key deliveries share their send capacity by (``fairness``).
    destination = models.CharField(max_length=300, blank=True)
    payload_template = models.JSONField()
    secret_name = models.CharField(max_length=64, blank=True)
    access_token_name = models.CharField(max_length=64, blank=True)
    status = models.CharField(max_length=16, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    # While sending: when the claim lapses if the worker died mid-attempt.
    claimed_until = models.DateTimeField(null=True, blank=True)
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name_plural = "deliveries"
        indexes = [
            models.Index(
                fields=["next_attempt_at"],
                condition=Q(status__in=["pending", "retrying"]),
                name="delivery_due_idx",
            ),
            models.Index(fields=["claimed_until"], condition=Q(status="sending"), name="delivery_sending_idx"),
            models.Index(fields=["team", "status", "-created_at"], name="delivery_team_status_idx"),
            models.Index(
                fields=["destination", "next_attempt_at"],
                condition=Q(status__in=["pending", "retrying"]),
                name="delivery_destination_due_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.webhook_name} ← {self.event.type} ({self.status})"


class Destination(models.Model):
    """An endpoint's host as deliveries see it (scheme://host:port), with its circuit breaker.

    Closed (``open_until`` empty): sends go through, up to the destination's share of the send capacity.
    Open (``open_until`` ahead): its deliveries wait in the database until then. Half-open (``open_until`` passed):
    one probe at a time; the probe's outcome closes it or opens it again for twice as long.
    """

    key = models.CharField(max_length=300, unique=True)
    failures = models.PositiveIntegerField(default=0)  # consecutive failed or slow answers
    open_until = models.DateTimeField(null=True, blank=True)
    backoff = models.FloatField(default=0)  # seconds the breaker last stayed open
    # Deliveries were refused a slot here: the next send to end hands them on.
    waiting = models.BooleanField(default=False)
    last_error = models.TextField(blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return self.key


class SendSlot(models.Model):
    """One send under way (a batch of deliveries, or a webhook test): what bounds a destination's and a team's share
    of the senders. A slot whose holder died lapses at ``expires_at``."""

    class Kind(models.TextChoices):
        DELIVERY = "delivery", "Delivery"
        TEST = "test", "Webhook test"

    kind = models.CharField(max_length=16, choices=Kind.choices)
    destination = models.CharField(max_length=300, blank=True)
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="+")
    expires_at = models.DateTimeField()

    class Meta:
        indexes = [
            models.Index(fields=["destination", "expires_at"], name="sendslot_destination_idx"),
            models.Index(fields=["team", "kind", "expires_at"], name="sendslot_team_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} slot of {self.destination or self.team_id}"


class DeliveryAttempt(models.Model):
    # Indexed by the unique (delivery, number) constraint, which leads with it.
    delivery = models.ForeignKey(Delivery, on_delete=models.CASCADE, related_name="attempt_log", db_index=False)
    number = models.PositiveIntegerField()
    started_at = models.DateTimeField()
    duration_ms = models.FloatField(default=0)
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    response_headers = models.JSONField(default=dict, blank=True)
    response_body = models.TextField(blank=True)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["delivery_id", "number"]
        constraints = [models.UniqueConstraint(fields=["delivery", "number"], name="delivery_attempt_unique_number")]

    def __str__(self) -> str:
        return f"attempt {self.number} of {self.delivery_id}"


class AutomationRun(models.Model):
    """What one automation did with one event that matched it: a delivery, a queue item, or nothing and why.

    The automation's history, and what its throttle counts. The delivery's or item's own row says how it went.
    """

    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="+")
    # Indexed by run_history_idx, which leads with it.
    automation = models.ForeignKey(
        Automation, null=True, blank=True, on_delete=models.SET_NULL, related_name="runs", db_index=False
    )
    automation_name = models.CharField(max_length=128)
    event = models.ForeignKey(Event, on_delete=models.CASCADE, related_name="runs")
    outcome = models.CharField(max_length=16, choices=RunOutcome.choices)
    reason = models.TextField(blank=True)  # why it was skipped
    delivery = models.ForeignKey(Delivery, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    item = models.ForeignKey(RunQueueItem, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    manual = models.BooleanField(default=False)  # run by hand, for one chosen version
    created_at = models.DateTimeField()

    class Meta:
        ordering = ["-created_at", "-pk"]
        indexes = [
            models.Index(fields=["automation", "-created_at"], name="run_history_idx"),
            models.Index(
                fields=["automation", "created_at"],
                condition=Q(manual=False) & ~Q(outcome="skipped"),
                name="run_throttle_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.automation_name} on {self.event_id}: {self.outcome}"
