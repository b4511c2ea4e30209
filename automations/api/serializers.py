from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from automations.alias_filter import MAX_ANCHORED_LENGTH
from automations.choices import ActionType, DeliveryStatus
from automations.filters import FIELDS, MAX_FILTER_BYTES, MAX_FILTER_DEPTH, MAX_FILTER_NODES, OPERATORS
from automations.manual import VERSION_HELP
from automations.models import Automation, AutomationRun, Delivery, DeliveryAttempt, Webhook
from automations.presets import PRESETS, preset_payload
from automations.rendering import render_preview
from core.validators import LABEL_MAX_LENGTH

FILTER_HELP = (
    "A filter expression (an object, or JSON text holding one) in the MongoDB operator form W&B stores, e.g. "
    '{"$and": [{"alias": {"$regex": "^prod"}}, {"artifact_metadata.accuracy": {"$gte": 0.9}}]}. '
    f"Fields: {', '.join(FIELDS)} (when the event type has them) and artifact_metadata.KEY. "
    f"Operators: {', '.join(OPERATORS)}; a plain value means $eq. $regex is RE2 and matches anywhere. "
    f"At most {MAX_FILTER_BYTES} bytes, {MAX_FILTER_DEPTH} levels and {MAX_FILTER_NODES} values; {{}} or null: "
    "every event."
)


@extend_schema_field({"type": "object", "additionalProperties": True, "description": FILTER_HELP})
class FilterField(serializers.JSONField):
    """A filter expression: any JSON here, checked by the services (``automations.filters``)."""


# --- Inputs ---------------------------------------------------------------------------------------------


class WebhookWriteSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=LABEL_MAX_LENGTH, trim_whitespace=False)
    url = serializers.CharField(max_length=2048)
    secret = serializers.CharField(max_length=64, allow_null=True, allow_blank=True, required=False, default=None)
    access_token = serializers.CharField(max_length=64, allow_null=True, allow_blank=True, required=False, default=None)
    enabled = serializers.BooleanField(required=False, default=True)
    alerts = serializers.BooleanField(
        required=False, default=False, help_text="Also receives the team's operational alerts, signed like deliveries."
    )


class WebhookTestSerializer(serializers.Serializer):
    payload = serializers.JSONField(help_text="A JSON object (or a string holding one); variables may be used.")


class AutomationWriteSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=LABEL_MAX_LENGTH, trim_whitespace=False)
    description = serializers.CharField(max_length=10000, allow_blank=True, required=False, default="")
    enabled = serializers.BooleanField(required=False, default=True)
    event_type = serializers.CharField(max_length=64)
    registered_model = serializers.CharField(max_length=128, allow_null=True, required=False, default=None)
    project = serializers.CharField(
        max_length=128, allow_null=True, required=False, default=None, help_text="CREATE_ARTIFACT: the project watched."
    )
    collection = serializers.CharField(
        max_length=128,
        allow_null=True,
        required=False,
        default=None,
        help_text="CREATE_ARTIFACT: one artifact collection of the project.",
    )
    alias_regex = serializers.CharField(
        max_length=MAX_ANCHORED_LENGTH,
        allow_null=True,
        allow_blank=True,
        required=False,
        default=None,
        help_text="Alias events: an RE2 pattern that must match somewhere in the alias (^prod matches production).",
    )
    filter = FilterField(required=False, allow_null=True, default=None)
    action_type = serializers.ChoiceField(choices=ActionType.choices)
    webhook = serializers.IntegerField(allow_null=True, required=False, default=None)
    payload = serializers.JSONField(required=False, default=None)
    job = serializers.CharField(max_length=128, allow_null=True, required=False, default=None)
    job_version = serializers.CharField(max_length=16, allow_null=True, required=False, default=None)
    overrides = serializers.JSONField(required=False, default=None)
    destination_project = serializers.CharField(max_length=128, allow_null=True, required=False, default=None)
    queue = serializers.CharField(max_length=128, allow_null=True, required=False, default=None)
    throttle_runs = serializers.IntegerField(
        allow_null=True, required=False, default=None, help_text="At most this many runs per throttle_window."
    )
    throttle_window = serializers.IntegerField(
        allow_null=True, required=False, default=None, help_text="The throttle's window, in seconds."
    )
    preset = serializers.ChoiceField(
        choices=sorted(PRESETS), required=False, write_only=True, help_text="Start the payload from a preset."
    )

    def validate(self, attrs):
        preset = attrs.pop("preset", None)
        if preset and attrs.get("payload") in (None, {}):
            attrs["payload"] = preset_payload(preset)
        return attrs


# --- Outputs --------------------------------------------------------------------------------------------


class WebhookSerializer(serializers.ModelSerializer):
    secret = serializers.CharField(source="secret.name", default=None)
    access_token = serializers.CharField(source="access_token.name", default=None)

    class Meta:
        model = Webhook
        fields = [
            "id", "name", "url", "secret", "access_token", "enabled", "alerts", "last_error", "disabled_reason",
            "failing_since", "created_at", "updated_at",
        ]  # fmt: skip


class AutomationSerializer(serializers.ModelSerializer):
    registered_model = serializers.CharField(source="registered_model.name", default=None)
    project = serializers.CharField(source="project.name", default=None)
    collection = serializers.CharField(source="collection.name", default=None)
    alias_regex = serializers.SerializerMethodField()
    filter = FilterField(read_only=True)
    trigger_type = serializers.CharField(read_only=True)
    action_name = serializers.CharField(read_only=True)
    queue = serializers.SerializerMethodField()

    class Meta:
        model = Automation
        fields = [
            "id", "name", "description", "enabled", "event_type", "registered_model", "project", "collection",
            "alias_regex", "filter", "action_type",
            "webhook", "payload", "job", "job_version", "overrides", "destination_project", "queue", "throttle_runs",
            "throttle_window", "trigger_type", "action_name", "created_at", "updated_at",
        ]  # fmt: skip

    def get_alias_regex(self, obj) -> str | None:
        return obj.alias_regex or None

    job = serializers.CharField(source="job_version.job.name", default=None)
    job_version = serializers.CharField(source="job_version.version", default=None)
    destination_project = serializers.CharField(source="destination_project.name", default=None)

    def get_queue(self, obj) -> str | None:
        return obj.queue.name if obj.queue else None


class AutomationRunInputSerializer(serializers.Serializer):
    version = serializers.CharField(max_length=400, help_text=VERSION_HELP)
    alias = serializers.CharField(
        max_length=64, required=False, default="", allow_blank=True,
        help_text="Alias events: the alias (when the version is not named by it).",
    )  # fmt: skip
    tag = serializers.CharField(max_length=64, required=False, default="", allow_blank=True, help_text="Tag events.")


class AutomationRunSerializer(serializers.ModelSerializer):
    """A run in an automation's history: the event, what it did, and how that went."""

    event_type = serializers.CharField(source="event.type")
    version = serializers.CharField(source="event.context.artifact_version_string", default="")
    delivery_status = serializers.CharField(source="delivery.status", default=None)
    item_state = serializers.CharField(source="item.state", default=None)

    class Meta:
        model = AutomationRun
        fields = [
            "id", "created_at", "event", "event_type", "version", "manual", "outcome", "reason", "delivery",
            "delivery_status", "item", "item_state",
        ]  # fmt: skip


class AutomationPreviewSerializer(serializers.Serializer):
    event = serializers.UUIDField(source="event.pk")
    event_type = serializers.CharField(source="event.type")
    version = serializers.CharField(source="event.context.artifact_version_string", default="")
    body = serializers.CharField(
        required=False, help_text="Webhook automations: the body as it would be sent, secrets as ${NAME}"
    )
    config = serializers.JSONField(required=False, help_text="Launch automations: the queue item's config")


class DeliveryAttemptSerializer(serializers.ModelSerializer):
    class Meta:
        model = DeliveryAttempt
        fields = ["number", "started_at", "duration_ms", "status_code", "response_headers", "response_body", "error"]


class DeliveryStatusSerializer(serializers.ModelSerializer):
    """What members and viewers see of a delivery: whether what their change fired got through. Not its URL (a Slack
    or Teams URL is itself a credential), payload, error text or the endpoint's answers: those are for admins."""

    event_type = serializers.CharField(source="event.type")
    attempt_count = serializers.IntegerField(source="attempts")

    class Meta:
        model = Delivery
        fields = [
            "id", "status", "attempt_count", "next_attempt_at", "event", "event_type", "automation", "automation_name",
            "webhook", "webhook_name", "last_status_code", "created_at", "finished_at",
        ]  # fmt: skip


class DeliverySerializer(DeliveryStatusSerializer):
    class Meta(DeliveryStatusSerializer.Meta):
        fields = [*DeliveryStatusSerializer.Meta.fields, "url", "last_error"]


class DeliveryDetailSerializer(DeliverySerializer):
    attempts = DeliveryAttemptSerializer(source="attempt_log", many=True)
    payload = serializers.SerializerMethodField(help_text="The payload as sent, with secrets shown as ${NAME}.")

    class Meta(DeliverySerializer.Meta):
        fields = [*DeliverySerializer.Meta.fields, "attempts", "payload"]

    def get_payload(self, obj) -> str:
        try:
            return render_preview(obj.payload_template, context=obj.event.context)
        except Exception as exc:  # a template that no longer renders is shown as such, not a 500
            return f"(does not render: {getattr(exc, 'message', type(exc).__name__)})"


class PresetSerializer(serializers.Serializer):
    key = serializers.CharField(source="name")
    label = serializers.CharField()
    description = serializers.CharField()
    payload = serializers.JSONField()


DELIVERY_STATUSES = [s.value for s in DeliveryStatus]


class WebhookRecoverSerializer(serializers.Serializer):
    since = serializers.DateTimeField(help_text="Deliveries created at or after this time (ISO 8601) are sent again.")


class WebhookRecoveredSerializer(serializers.Serializer):
    recovered = serializers.IntegerField(help_text="Failed deliveries taken up again.")
