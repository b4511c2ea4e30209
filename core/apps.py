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

        from django.core.signals import request_finished, request_started

        from .db import connections_pause, connections_resume

        # After Django's own close_old_connections (connected when django.db is imported, so called first).
        request_started.connect(connections_resume, dispatch_uid="core.db.connections_resume")
        request_finished.connect(connections_pause, dispatch_uid="core.db.connections_pause")
