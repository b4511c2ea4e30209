"""Webhook signatures: how the registry signs a delivery, and how a receiver checks one, with no web framework.

The registry's server signs every delivery with these functions, so a receiver that verifies with them checks
exactly what was sent. Two schemes travel side by side on a signed request:

- ``X-Wandb-Signature``: base64(HMAC-SHA256(secret, body)) with the secret's UTF-8 bytes as the key, byte for byte
  what ``printf %s "$BODY" | openssl dgst -sha256 -hmac "$SECRET" -binary | base64`` prints, so receivers written
  for the original product keep working. It does not bind a time: a captured request verifies forever.
- Standard Webhooks (https://www.standardwebhooks.com): ``webhook-signature: v1,<base64(HMAC-SHA256(key,
  "{webhook-id}.{webhook-timestamp}.{body}"))>``, which binds the delivery id and time to the body, so a receiver
  refuses a request replayed later (``tolerance``). The key is the base64-decoded remainder of a ``whsec_...``
  secret (the specification's format, what its libraries expect; padding may be left off, as they accept); any
  other secret is used as its UTF-8 bytes, like the scheme above.

A receiver passes the raw body bytes (never re-serialised JSON) and the request's headers::

    from registry_client.webhooks import WebhookVerificationError, verify

    try:
        verify(secret, body, headers)  # any mapping of header names (any case) to values
    except WebhookVerificationError as exc:
        return 401, str(exc)
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from collections.abc import Mapping

__all__ = [
    "DEFAULT_TOLERANCE",
    "STANDARD_SECRET_PREFIX",
    "STANDARD_VERSION",
    "WebhookVerificationError",
    "standard_key",
    "standard_signature",
    "verify",
    "verify_standard",
    "verify_wandb",
    "wandb_signature",
]

STANDARD_SECRET_PREFIX = "whsec_"  # noqa: S105 (the format marker of the specification, not a secret)
STANDARD_VERSION = "v1"
DEFAULT_TOLERANCE = 300.0  # seconds a webhook-timestamp may be away from the receiver's clock, either way

WANDB_HEADER = "x-wandb-signature"
ID_HEADER = "webhook-id"
TIMESTAMP_HEADER = "webhook-timestamp"
SIGNATURE_HEADER = "webhook-signature"


class WebhookVerificationError(ValueError):
    """The request is not a fresh, authentic delivery signed with this secret; the message says why."""


# --- Signing ------------------------------------------------------------------------------------------------


def _b64_hmac(key: bytes, message: bytes) -> str:
    return base64.b64encode(hmac.new(key, message, hashlib.sha256).digest()).decode("ascii")


def wandb_signature(secret: str, body: bytes) -> str:
    """The ``X-Wandb-Signature`` value: base64(HMAC-SHA256(secret as UTF-8, body))."""
    return _b64_hmac(secret.encode("utf-8"), body)


def standard_key(secret: str) -> bytes:
    """The HMAC key for Standard Webhooks: a ``whsec_`` secret's decoded bytes, else the secret's UTF-8 bytes.

    A ``whsec_`` secret whose remainder is not base64 is used whole as UTF-8, so a delivery never fails on it.
    """
    if secret.startswith(STANDARD_SECRET_PREFIX):
        encoded = secret[len(STANDARD_SECRET_PREFIX) :]
        try:
            key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
        except (binascii.Error, ValueError):
            key = b""
        if key:
            return key
    return secret.encode("utf-8")


def standard_signature(secret: str, *, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value: ``v1,`` and base64(HMAC-SHA256(key, "{msg_id}.{timestamp}.{body}"))."""
    signed = f"{msg_id}.{int(timestamp)}.".encode() + body
    return f"{STANDARD_VERSION},{_b64_hmac(standard_key(secret), signed)}"


# --- Verifying ----------------------------------------------------------------------------------------------


def _secret(secret: str) -> str:
    if not isinstance(secret, str) or not secret:
        raise WebhookVerificationError("No signing secret to verify with: pass the webhook's signing secret.")
    return secret


def verify_wandb(secret: str, body: bytes, signature: str | None) -> None:
    """Check an ``X-Wandb-Signature`` value against the body (in constant time); raise if it does not match."""
    _secret(secret)
    if not signature:
        raise WebhookVerificationError("The request has no X-Wandb-Signature header.")
    expected = wandb_signature(secret, body).encode("ascii")
    if not hmac.compare_digest(expected, signature.strip().encode("utf-8", errors="replace")):
        raise WebhookVerificationError(
            "X-Wandb-Signature does not match the body: another secret, or the body changed on the way "
            "(verify the raw bytes received, not re-serialised JSON)."
        )


def verify_standard(
    secret: str,
    body: bytes,
    *,
    msg_id: str | None,
    timestamp: int | str | None,
    signature: str | None,
    tolerance: float = DEFAULT_TOLERANCE,
    now: float | None = None,
) -> None:
    """Check the Standard Webhooks headers' values; raise if the request is not authentic and fresh.

    ``signature`` may list several space-separated signatures (the sender rotating its secret): one matching
    ``v1,`` signature suffices, other versions are ignored. A timestamp more than ``tolerance`` seconds away from
    ``now`` (default: this machine's clock), either way, is refused, so a captured request cannot be replayed.
    """
    _secret(secret)
    missing = [
        name
        for name, value in ((ID_HEADER, msg_id), (TIMESTAMP_HEADER, timestamp), (SIGNATURE_HEADER, signature))
        if value is None or value == ""
    ]
    if missing:
        raise WebhookVerificationError(f"The request has no {', '.join(missing)} header.")
    try:
        sent_at = int(str(timestamp).strip())
    except ValueError:
        raise WebhookVerificationError(f"webhook-timestamp {timestamp!r} is not unix seconds.") from None
    current = time.time() if now is None else now
    if abs(current - sent_at) > tolerance:
        direction = "behind" if sent_at < current else "ahead of"
        raise WebhookVerificationError(
            f"webhook-timestamp {sent_at} is {abs(current - sent_at):.0f} s {direction} this machine's clock, beyond "
            f"the tolerance of {tolerance:g} s: a replayed request, or a clock out of step."
        )
    expected = standard_signature(secret, msg_id=str(msg_id), timestamp=sent_at, body=body).encode("ascii")
    matched = False
    versions = []
    for candidate in str(signature).split():
        version, _, _ = candidate.partition(",")
        versions.append(version)
        if version == STANDARD_VERSION:
            # No early exit: the time taken does not depend on which candidate matched.
            matched |= hmac.compare_digest(expected, candidate.encode("utf-8", errors="replace"))
    if not matched:
        if STANDARD_VERSION not in versions:
            raise WebhookVerificationError("webhook-signature holds no v1 signature.")
        raise WebhookVerificationError(
            "webhook-signature does not match the id, timestamp and body: another secret, or the request changed "
            "on the way (verify the raw bytes received, not re-serialised JSON)."
        )


def verify(
    secret: str,
    body: bytes,
    headers: Mapping[str, str],
    *,
    tolerance: float = DEFAULT_TOLERANCE,
    now: float | None = None,
) -> None:
    """Check every signature a delivery carries; raise ``WebhookVerificationError`` unless all hold.

    ``headers`` is the request's headers in any case (a dict, ``http.server``'s message, a framework's header
    mapping). With Standard Webhooks headers, the id, timestamp (within ``tolerance`` seconds) and signature are
    checked; with ``X-Wandb-Signature``, that too. A request carrying neither is refused.
    """
    lowered = {str(name).lower(): value for name, value in headers.items()}
    standard = any(lowered.get(name) for name in (ID_HEADER, TIMESTAMP_HEADER, SIGNATURE_HEADER))
    wandb = lowered.get(WANDB_HEADER)
    if not standard and not wandb:
        raise WebhookVerificationError(
            "The request carries no signature (neither webhook-signature nor X-Wandb-Signature)."
        )
    if standard:
        verify_standard(
            secret,
            body,
            msg_id=lowered.get(ID_HEADER),
            timestamp=lowered.get(TIMESTAMP_HEADER),
            signature=lowered.get(SIGNATURE_HEADER),
            tolerance=tolerance,
            now=now,
        )
    if wandb:
        verify_wandb(secret, body, wandb)
