"""Preparing a webhook request: its secrets decrypted, its payload rendered and signed; and what of the request and
of its outcome may be stored or shown, with every secret scrubbed.

Deliveries (``attempts``) and webhook tests (``webhook_testing``) both build and send their requests here, so both
go through the same rendering, signature and outbound safety path.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, replace

from django.conf import settings

from core.redaction import redact
from registry.models import Team
from secrets_vault.crypto import DecryptionError
from secrets_vault.services import secret_values

from . import rendering, safe_http, signing
from .safe_http import HttpResponse, SendError

USER_AGENT = "registry-automations-webhooks/0.1"
STORED_BODY_CHARS = 4096


@dataclass(frozen=True)
class PreparedRequest:
    body: bytes
    headers: dict[str, str]
    # Name → value of every secret used, so anything recorded can be scrubbed of them.
    secrets: dict[str, str]


def _secret_references(template: dict) -> set[str]:
    return {
        name
        for name in rendering.template_variables(template)
        if name not in rendering.VARIABLES and not name.startswith("artifact_metadata.")
    }


def request_prepare(
    *,
    team: Team,
    template: dict,
    context: dict,
    secret_name: str,
    access_token_name: str,
    msg_id: str,
    secrets_of=secret_values,
) -> PreparedRequest:
    """Render and sign one request. Secrets are decrypted here, at send time, and nowhere else.

    A request that can no longer be built (a secret is gone or cannot be decrypted, the template no longer renders)
    raises a permanent ``SendError``: nothing was sent, and nothing would change by trying again.
    """
    secrets = _secrets(
        team, _secret_references(template) | {n for n in (secret_name, access_token_name) if n}, secrets_of
    )
    try:
        body = rendering.render(template, context=context, secrets=secrets)
    except rendering.TemplateError as exc:
        raise SendError(f"The payload no longer renders: {exc.message}", permanent=True) from exc
    return _signed(body, secrets, secret_name=secret_name, access_token_name=access_token_name, msg_id=msg_id)


def request_sign(
    *, team: Team, body: bytes, secret_name: str, access_token_name: str, msg_id: str, secrets_of=secret_values
) -> PreparedRequest:
    """Sign a body that is not a template (an operational alert): like ``request_prepare``, without rendering, so a
    ``${...}`` in the body is sent as written."""
    secrets = _secrets(team, {n for n in (secret_name, access_token_name) if n}, secrets_of)
    return _signed(body, secrets, secret_name=secret_name, access_token_name=access_token_name, msg_id=msg_id)


def _secrets(team: Team, wanted: set[str], secrets_of) -> dict[str, str]:
    try:
        secrets = secrets_of(team=team, names=wanted)
    except DecryptionError as exc:
        raise SendError(f"A secret could not be decrypted: {exc}", permanent=True) from exc
    if missing := sorted(wanted - secrets.keys()):
        raise SendError(f"Secret(s) {', '.join(missing)} no longer exist in {team.name}.", permanent=True)
    return secrets


def _signed(
    body: bytes, secrets: dict[str, str], *, secret_name: str, access_token_name: str, msg_id: str
) -> PreparedRequest:
    headers = signing.signature_headers(
        secret=secrets.get(secret_name) if secret_name else None,
        access_token=secrets.get(access_token_name) if access_token_name else None,
        msg_id=msg_id,
        timestamp=int(time.time()),
        body=body,
        user_agent=USER_AGENT,
    )
    return PreparedRequest(body=body, headers=headers, secrets=secrets)


def request_send(
    url: str, prepared: PreparedRequest, *, deadline: float | None = None, reuse: safe_http.Reuse | None = None
) -> HttpResponse:
    """Send a prepared request through the safe client with the ``WEBHOOK_*`` limits; a ``deadline`` shorter than
    ``WEBHOOK_DEADLINE`` (a test somebody waits for) bounds every timeout too. Raises ``SendError`` when no answer
    came."""
    deadline = settings.WEBHOOK_DEADLINE if deadline is None else deadline
    return safe_http.post(
        url,
        body=prepared.body,
        headers=prepared.headers,
        reuse=reuse,
        connect_timeout=min(settings.WEBHOOK_CONNECT_TIMEOUT, deadline),
        read_timeout=min(settings.WEBHOOK_READ_TIMEOUT, deadline),
        deadline=deadline,
        max_response_bytes=settings.WEBHOOK_MAX_RESPONSE_BYTES,
    )


def outcome_scrubbed(outcome: HttpResponse | SendError, secrets: dict[str, str]) -> HttpResponse | SendError:
    """The outcome with any secret its error text quotes replaced by ``${NAME}``, ready to be decided on and
    recorded."""
    if isinstance(outcome, SendError):
        return SendError(redact(outcome.message, secrets), permanent=outcome.permanent, duration_ms=outcome.duration_ms)
    return replace(outcome, error=redact(outcome.error, secrets)) if outcome.error else outcome


def response_summary(outcome: HttpResponse | SendError, secrets: dict[str, str]) -> dict:
    """What may be stored or shown of a send's outcome: the answer truncated and decoded, or why none came; with
    secrets scrubbed."""
    if isinstance(outcome, SendError):
        return {
            "status_code": None,
            "headers": {},
            "body": "",
            "duration_ms": round(outcome.duration_ms, 1),
            "error": redact(outcome.message, secrets),
        }
    # Scrubbed before it is cut, so that a secret across the cut cannot stay half there.
    body = redact(outcome.body.decode("utf-8", errors="replace"), secrets)[:STORED_BODY_CHARS]
    return {
        "status_code": outcome.status_code,
        "headers": {k: redact(v, secrets) for k, v in outcome.headers.items()},
        "body": body,
        "duration_ms": round(outcome.duration_ms, 1),
        "error": redact(outcome.error, secrets),
    }


# Headers that carry a secret, or a signature made with one: shown masked, past their scheme ("Bearer ", "v1,").
SECRET_HEADERS = frozenset({"authorization", "x-wandb-signature", "webhook-signature"})
MASK = "••••••••"
_SCHEME = re.compile(r"^(?:[A-Za-z]+ |v\d+,)")


def _masked(value: str) -> str:
    scheme = _SCHEME.match(value)
    return (scheme.group() if scheme else "") + MASK


def request_shown(prepared: PreparedRequest) -> dict:
    """A request as sent, for people to read: secret-bearing headers masked, secrets in the body as ``${NAME}``."""
    headers = {
        name: _masked(value) if name.lower() in SECRET_HEADERS else redact(value, prepared.secrets)
        for name, value in prepared.headers.items()
    }
    return {"headers": headers, "body": redact(prepared.body.decode("utf-8", errors="replace"), prepared.secrets)}
