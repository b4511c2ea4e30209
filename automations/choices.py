from django.db import models


class ActionType(models.TextChoices):
    WEBHOOK = "WEBHOOK", "Webhook"
    LAUNCH_JOB = "LAUNCH_JOB", "Launch job"


class DeliveryStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    SENDING = "sending", "Sending"
    SUCCEEDED = "succeeded", "Succeeded"
    RETRYING = "retrying", "Retrying"
    FAILED = "failed", "Failed"


# States from which a delivery may be claimed for an attempt.
CLAIMABLE = (DeliveryStatus.PENDING, DeliveryStatus.RETRYING)


class RunOutcome(models.TextChoices):
    """What an automation did with an event that matched it."""

    DELIVERY = "delivery", "Delivery"
    QUEUED = "queued", "Queued"
    SKIPPED = "skipped", "Skipped"
