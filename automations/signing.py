"""Webhook signatures, computed in one place, with the checks a receiver makes.

Two schemes are sent side by side on every signed request:

- ``X-Wandb-Signature``: base64(HMAC-SHA256(secret, body)) with the secret's UTF-8 bytes as the key, byte for byte
  what ``printf %s "$BODY" | openssl dgst -sha256 -hmac "$SECRET" -binary | base64`` prints, so receivers written
  for the original product keep working.
- Standard Webhooks (https://www.standardwebhooks.com): ``webhook-signature: v1,<base64(HMAC-SHA256(key,
  "{webhook-id}.{webhook-timestamp}.{body}"))>``, which binds the delivery id and time to the body so a captured
  request cannot be replayed later. The key is the base64-decoded remainder of a ``whsec_...`` secret (the spec's
  format, what its libraries expect); any other secret is used as its UTF-8 bytes, like the scheme above.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time

STANDARD_SECRET_PREFIX = "whsec_"  # noqa: S105 (the format marker of the specification, not a secret)
STANDARD_VERSION = "v1"


def _b64_hmac(key: bytes, message: bytes) -> str:
    return base64.b64encode(hmac.new(key, message, hashlib.sha256).digest()).decode("ascii")


def wandb_signature(secret: str, body: bytes) -> str:
    """The ``X-Wandb-Signature`` value: base64(HMAC-SHA256(secret as UTF-8, body))."""
    return _b64_hmac(secret.encode("utf-8"), body)


def standard_key(secret: str) -> bytes:
    """The HMAC key for Standard Webhooks: a ``whsec_`` secret's decoded bytes, else the secret's UTF-8 bytes.

    A ``whsec_`` secret whose remainder is not valid base64 is used whole as UTF-8, so a delivery never fails on it.
    """
    if secret.startswith(STANDARD_SECRET_PREFIX):
        try:
            return base64.b64decode(secret[len(STANDARD_SECRET_PREFIX) :], validate=True)
        except (binascii.Error, ValueError):
            pass
    return secret.encode("utf-8")


def standard_signature(secret: str, *, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value: ``v1,`` and base64(HMAC-SHA256(key, "{msg_id}.{timestamp}.{body}"))."""
    signed = f"{msg_id}.{int(timestamp)}.".encode() + body
    return f"{STANDARD_VERSION},{_b64_hmac(standard_key(secret), signed)}"


def signature_headers(
    *, secret: str | None, access_token: str | None, msg_id: str, timestamp: int, body: bytes, user_agent: str
) -> dict[str, str]:
    """Every header of a delivery request. ``msg_id`` is the delivery id, the same on every retry.

    An empty secret or token counts as absent: a signature under an empty key proves nothing, and an empty bearer
    is a malformed header.
    """
    headers = {
        "Content-Type": "application/json",
        "User-Agent": user_agent,
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(timestamp)),
    }
    if secret:
        headers["X-Wandb-Signature"] = wandb_signature(secret, body)
        headers["webhook-signature"] = standard_signature(secret, msg_id=msg_id, timestamp=timestamp, body=body)
    if access_token:
        headers["Authorization"] = f"Bearer {access_token}"
    return headers


# --- Receivers ----------------------------------------------------------------------------------------------


def verify_wandb(secret: str, body: bytes, header: str | None) -> bool:
    """Whether ``X-Wandb-Signature`` matches the body, compared in constant time."""
    if not header:
        return False
    expected = wandb_signature(secret, body).encode("ascii")
    return hmac.compare_digest(expected, header.strip().encode("utf-8", errors="replace"))


def verify_standard(
    secret: str,
    *,
    msg_id: str,
    timestamp: int | str,
    body: bytes,
    header: str | None,
    tolerance_s: float = 300,
    now: float | None = None,
) -> bool:
    """Whether a Standard Webhooks request is authentic and fresh.

    The header may carry several space-separated signatures (the sender rotating its secret); one matching ``v1,``
    signature suffices, other versions are ignored. A timestamp more than ``tolerance_s`` away from ``now`` (either
    way) is refused, so a captured request cannot be replayed.
    """
    if not header:
        return False
    try:
        sent_at = int(timestamp)
    except (TypeError, ValueError):
        return False
    current = time.time() if now is None else now
    if abs(current - sent_at) > tolerance_s:
        return False
    expected = standard_signature(secret, msg_id=msg_id, timestamp=sent_at, body=body).encode("ascii")
    matched = False
    for candidate in header.split():
        version, _, _ = candidate.partition(",")
        if version == STANDARD_VERSION:
            # No early exit: the time taken does not depend on which candidate matched.
            matched |= hmac.compare_digest(expected, candidate.encode("utf-8", errors="replace"))
    return matched
