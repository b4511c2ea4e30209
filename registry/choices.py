from django.db import models


class Role(models.TextChoices):
    VIEWER = "viewer", "Viewer"
    MEMBER = "member", "Member"
    ADMIN = "admin", "Admin"


# Higher rank can do everything a lower rank can.
ROLE_RANK = {Role.VIEWER: 0, Role.MEMBER: 1, Role.ADMIN: 2}

REGISTRY_PROJECT = "model-registry"
LATEST_ALIAS = "latest"


class VersionState(models.TextChoices):
    """An artifact version receives its files while pending; committing makes it immutable and linkable."""

    PENDING = "pending", "Pending"
    COMMITTED = "committed", "Committed"
