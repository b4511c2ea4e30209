"""The headers of a signed delivery.

The signatures themselves are computed by the engineers' client (``registry_client.webhooks``), the one
implementation that receivers verify with too: what the server sends and what a receiver checks cannot drift apart.
"""

from __future__ import annotations

from registry_client.webhooks import standard_signature, wandb_signature


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
