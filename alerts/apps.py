from django.apps import AppConfig


class AlertsConfig(AppConfig):
    name = "alerts"

    def ready(self) -> None:
        from django.core.checks import register

        from . import checks

        register(checks.email_check, deploy=True)
