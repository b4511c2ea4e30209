from django.apps import AppConfig


class CoreConfig(AppConfig):
    """What every app shares: errors, API and admin base classes, team scoping, name and JSON checks."""

    name = "core"
    verbose_name = "Shared"

    def ready(self) -> None:
        from django.core.checks import Tags, register

        from . import checks

        register(checks.static_manifest_check, Tags.staticfiles)
        register(checks.broker_check)
        register(checks.cache_check, Tags.caches)
