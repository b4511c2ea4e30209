from django.db import models

REGISTRY_PROJECT = "model-registry"
LATEST_ALIAS = "latest"


class VersionState(models.TextChoices):
    """An artifact version receives its files while pending; committing makes it immutable and linkable."""

    PENDING = "pending", "Pending"
    COMMITTED = "committed", "Committed"
