from django.db import models


class ItemState(models.TextChoices):
    PENDING = "pending", "Pending"
    CLAIMED = "claimed", "Claimed"
    RUNNING = "running", "Running"
    FINISHED = "finished", "Finished"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


ACTIVE_STATES = (ItemState.CLAIMED, ItemState.RUNNING)
FINAL_STATES = (ItemState.FINISHED, ItemState.FAILED, ItemState.CANCELLED)
# What an agent may report, from which states.
AGENT_TRANSITIONS = {
    ItemState.RUNNING: (ItemState.CLAIMED, ItemState.RUNNING),
    ItemState.FINISHED: (ItemState.CLAIMED, ItemState.RUNNING),
    ItemState.FAILED: (ItemState.CLAIMED, ItemState.RUNNING),
    ItemState.CANCELLED: (ItemState.CLAIMED, ItemState.RUNNING),
}


class ResourceType(models.TextChoices):
    LOCAL_PROCESS = "local-process", "Local process"
