"""Bearer tokens (API tokens, launch agents' tokens) are stored only as their SHA-256."""

from __future__ import annotations

import hashlib


def token_hash(raw: str) -> str:
    """The stored form of a token: a lookup compares hashes, so the database never holds a usable token."""
    return hashlib.sha256(raw.encode()).hexdigest()
