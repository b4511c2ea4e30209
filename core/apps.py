from django.apps import AppConfig


class CoreConfig(AppConfig):
    """What every app shares: errors, API and admin base classes, team scoping, name and JSON checks."""

    name = "core"
    verbose_name = "Shared"
