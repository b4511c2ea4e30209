"""Deploy check: alert e-mails need a mail server."""

from __future__ import annotations

from django.conf import settings
from django.core.checks import CheckMessage, Warning

# Backends that keep the message on this machine: right for the embedded default, silent in production.
_NOT_SENT = ("console.EmailBackend", "locmem.EmailBackend", "dummy.EmailBackend", "filebased.EmailBackend")


def email_check(app_configs=None, **kwargs) -> list[CheckMessage]:
    if not settings.EMAIL_BACKEND.endswith(_NOT_SENT):
        return []
    return [
        Warning(
            f"Alert e-mails go to {settings.EMAIL_BACKEND.rsplit('.', 2)[-2]} output, not to the team admins: a "
            "disabled webhook or deliveries failed for good reach nobody by e-mail.",
            hint="Set EMAIL_URL to your mail server, e.g. smtp+tls://user:password@mail.example.com:587.",
            id="alerts.W001",
        )
    ]
