"""Error reports to Sentry (``SENTRY_DSN``) from the web and Celery processes, never carrying a secret.

What could carry one is kept out or scrubbed before an event leaves (``scrubbed``, sentry-sdk's ``before_send``):

* request bodies (a secret's value is set through one), cookies and local variables are never collected, and
  ``send_default_pii`` is off (no user, no IP address);
* headers and fields whose name says credential (Authorization, signatures, tokens, passwords, cookies) are masked;
* the values of the team secrets, and of the server's own (SECRET_KEY, the encryption keys, database and broker
  passwords), are replaced wherever they appear in the event, in every form ``core.redaction`` knows (an exception
  message may quote a response that echoed one).
"""

from __future__ import annotations

import re
import threading
import time
from typing import Any
from urllib.parse import urlsplit

from core import redaction

FILTERED = "[Filtered]"
SENSITIVE_NAME = re.compile(
    r"authori[sz]ation|cookie|csrf|token|secret|passw|signature|api[-_]?key|credential|session|dsn", re.IGNORECASE
)
# Seconds the team secrets' values are kept for scrubbing before being read again.
VALUES_TTL = 60.0
_values_lock = threading.Lock()
_values: tuple[float, list[str]] = (float("-inf"), [])


def sentry_init(dsn: str, *, environment: str | None = None) -> None:
    import sentry_sdk
    from sentry_sdk.integrations.celery import CeleryIntegration
    from sentry_sdk.integrations.django import DjangoIntegration

    sentry_sdk.init(
        dsn=dsn,
        environment=environment or None,
        integrations=[DjangoIntegration(), CeleryIntegration()],
        send_default_pii=False,
        include_local_variables=False,
        max_request_body_size="never",
        before_send=scrubbed,
        before_send_transaction=scrubbed,
        traces_sample_rate=0.0,
    )


def scrubbed(event: dict[str, Any], hint: dict[str, Any] | None = None) -> dict[str, Any]:
    """The event with every secret removed (see the module's docstring)."""
    request = event.get("request")
    if isinstance(request, dict):
        for field in ("data", "cookies", "env"):
            request.pop(field, None)
        if request.get("query_string"):
            request["query_string"] = FILTERED
    forms = secret_forms(secret_values())
    return _clean(event, forms)


def secret_forms(values: list[str]) -> list[str]:
    """Every form of each value (``core.redaction``), longest first, so a value containing another is replaced
    whole."""
    forms: set[str] = set()
    for value in values:
        if len(value) >= 4:  # shorter is too short to tell from ordinary text; masking it would garble the report
            forms |= redaction.secret_forms(value)
    return sorted(forms, key=len, reverse=True)


def secret_values() -> list[str]:
    """The server's own secrets and the team secrets' values (read at most every VALUES_TTL seconds; when the
    database cannot be read, the last values read)."""
    global _values
    from django.conf import settings

    own = [settings.SECRET_KEY, *settings.SECRETS_ENCRYPTION_KEYS]
    own += [db.get("PASSWORD") or "" for db in settings.DATABASES.values()]
    own.append(settings.EMAIL_HOST_PASSWORD)
    own.append(urlsplit(settings.CELERY_BROKER_URL).password or "")
    with _values_lock:
        read_at, teams = _values
        if time.monotonic() - read_at > VALUES_TTL:
            try:
                teams = _team_secret_values()
                _values = (time.monotonic(), teams)
            except Exception:  # noqa: S110 (the error being reported may be the database's; scrub with what is known)
                pass
    return [value for value in (*own, *teams) if value]


def _team_secret_values() -> list[str]:
    from secrets_vault.models import Secret
    from secrets_vault.services import secret_values_decrypt

    rows = Secret.objects.values_list("pk", "ciphertext")
    values: list[str] = []
    for pk, ciphertext in rows.iterator():
        try:
            values.extend(secret_values_decrypt({str(pk): ciphertext}).values())
        except Exception:  # noqa: S112 (a secret no key decrypts cannot appear in plain text either)
            continue
    return values


def _clean(node: Any, forms: list[str], key: str = "") -> Any:
    if key and SENSITIVE_NAME.search(key) and isinstance(node, str | int | float | bytes):
        return FILTERED
    if isinstance(node, dict):
        return {k: _clean(v, forms, str(k)) for k, v in node.items()}
    if isinstance(node, list | tuple):
        # Headers may come as [name, value] pairs: a sensitive name masks its value.
        if len(node) == 2 and isinstance(node[0], str) and SENSITIVE_NAME.search(node[0]):
            return [node[0], FILTERED]
        return [_clean(item, forms) for item in node]
    if isinstance(node, str):
        for form in forms:
            if form in node:
                node = node.replace(form, FILTERED)
    return node
