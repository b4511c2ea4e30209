from rest_framework import serializers

from alerts.choices import AlertKind
from alerts.models import Alert, Notice


class NoticeSerializer(serializers.ModelSerializer):
    to = serializers.SerializerMethodField(help_text="The operational webhook's name, or the e-mail addresses.")

    class Meta:
        model = Notice
        fields = ["id", "channel", "to", "status", "attempts", "last_error", "created_at", "finished_at"]

    def get_to(self, notice: Notice) -> str:
        return notice.webhook_name or ", ".join(notice.recipients.split())


class AlertSerializer(serializers.ModelSerializer):
    summary = serializers.SerializerMethodField()
    notices = NoticeSerializer(many=True, read_only=True)

    class Meta:
        model = Alert
        fields = [
            "id", "kind", "summary", "subject_id", "subject_name", "count", "first_at", "last_at", "samples", "last",
            "created_at", "notices",
        ]  # fmt: skip

    def get_summary(self, alert: Alert) -> str:
        return alert.headline


ALERT_KINDS = [kind.value for kind in AlertKind]
