from django.db import models


class AlertKind(models.TextChoices):
    """What operators are told about; the value is the operational webhook's event type."""

    WEBHOOK_DISABLED = "webhook.disabled", "Webhook disabled"
    DELIVERY_FAILED = "delivery.failed", "Deliveries failed for good"
    AGENT_LOST = "agent.lost", "Agent lost"


def kind_rank(kind: str) -> int:
    """Where alerts of a kind come in a message: in the order above, most consequential first."""
    return list(AlertKind).index(AlertKind(kind))


class Channel(models.TextChoices):
    EMAIL = "email", "E-mail to the team's admins"
    WEBHOOK = "webhook", "Operational webhook"


class NoticeStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    SENDING = "sending", "Sending"
    SENT = "sent", "Sent"
    RETRYING = "retrying", "Retrying"
    FAILED = "failed", "Failed"
