from rest_framework import serializers

from launch.choices import ItemState, ResourceType
from launch.models import Agent, Job, JobVersion, RunQueue, RunQueueItem


class JobWriteSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=128, trim_whitespace=False)
    project = serializers.CharField(max_length=128)
    description = serializers.CharField(max_length=10000, allow_blank=True, required=False, default="")


class JobVersionWriteSerializer(serializers.Serializer):
    entrypoint = serializers.ListField(
        child=serializers.CharField(max_length=4096, trim_whitespace=False), max_length=256
    )
    default_config = serializers.DictField(required=False, default=dict)
    source = serializers.CharField(max_length=100000, allow_blank=True, required=False, default="")
    download_artifact = serializers.BooleanField(required=False, default=False)


class QueueWriteSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=128, trim_whitespace=False)
    resource_type = serializers.ChoiceField(
        choices=ResourceType.choices, required=False, default=ResourceType.LOCAL_PROCESS
    )
    resource_config = serializers.DictField(required=False, default=dict)


class ItemWriteSerializer(serializers.Serializer):
    job = serializers.CharField(max_length=128)
    job_version = serializers.CharField(max_length=16)
    overrides = serializers.DictField(required=False, default=dict)
    destination_project = serializers.CharField(max_length=128)


class AgentWriteSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=128, trim_whitespace=False)
    queues = serializers.ListField(child=serializers.CharField(max_length=128), max_length=100)


class ItemReportSerializer(serializers.Serializer):
    state = serializers.ChoiceField(
        choices=[ItemState.RUNNING, ItemState.FINISHED, ItemState.FAILED, ItemState.CANCELLED]
    )
    exit_code = serializers.IntegerField(required=False, allow_null=True, min_value=-(2**31), max_value=2**31 - 1)
    log_tail = serializers.CharField(required=False, allow_blank=True, trim_whitespace=False, max_length=1_000_000)
    reason = serializers.CharField(required=False, allow_blank=True, max_length=10_000)


class HeartbeatSerializer(serializers.Serializer):
    log_tail = serializers.CharField(required=False, allow_blank=True, trim_whitespace=False, max_length=1_000_000)


class JobSerializer(serializers.ModelSerializer):
    project = serializers.CharField(source="project.name")

    class Meta:
        model = Job
        fields = ["name", "project", "description", "created_at"]


class JobVersionSerializer(serializers.ModelSerializer):
    version = serializers.CharField()

    class Meta:
        model = JobVersion
        fields = ["version", "entrypoint", "default_config", "source", "download_artifact", "created_at"]


class QueueSerializer(serializers.ModelSerializer):
    pending = serializers.IntegerField(read_only=True, default=0)
    active = serializers.IntegerField(read_only=True, default=0)

    class Meta:
        model = RunQueue
        fields = ["name", "resource_type", "resource_config", "pending", "active", "created_at"]


class AgentSerializer(serializers.ModelSerializer):
    queues = serializers.SlugRelatedField(slug_field="name", many=True, read_only=True)

    class Meta:
        model = Agent
        fields = ["name", "queues", "last_seen_at", "created_at", "disabled"]


class ItemSerializer(serializers.ModelSerializer):
    queue = serializers.CharField(source="queue.name")
    job_version = serializers.SerializerMethodField()
    destination_project = serializers.CharField(source="destination_project.name")
    agent = serializers.CharField(source="agent.name", default=None)
    event = serializers.UUIDField(source="event_id", allow_null=True)
    automation = serializers.IntegerField(source="automation_id", allow_null=True)
    download_artifact = serializers.BooleanField(source="job_version.download_artifact", read_only=True)

    class Meta:
        model = RunQueueItem
        fields = [
            "id", "state", "queue", "job_version", "entrypoint", "config", "destination_project", "agent",
            "attempts", "exit_code", "log_tail", "reason", "cancel_requested", "lease_expires_at", "event",
            "event_context", "automation", "automation_name", "download_artifact", "created_at", "started_at",
            "finished_at",
        ]  # fmt: skip

    def get_job_version(self, obj) -> str:
        return f"{obj.job_version.job.name}:{obj.job_version.version}"
