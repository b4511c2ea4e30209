"""Encryption at rest for team secrets: Fernet with a key list, newest first (MultiFernet)."""

from __future__ import annotations

from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured


class DecryptionError(Exception):
    """A stored secret could not be decrypted with any configured key."""


@lru_cache(maxsize=4)
def _multi_fernet(keys: tuple[str, ...]) -> MultiFernet:
    if not keys:
        raise ImproperlyConfigured("SECRETS_ENCRYPTION_KEYS is empty.")
    try:
        return MultiFernet([Fernet(key.encode()) for key in keys])
    except (ValueError, TypeError) as exc:
        # Never echo the keys: say which position is wrong.
        raise ImproperlyConfigured(
            "SECRETS_ENCRYPTION_KEYS holds a value that is not a Fernet key (32 url-safe base64-encoded bytes)."
        ) from exc


def _fernet() -> MultiFernet:
    return _multi_fernet(tuple(settings.SECRETS_ENCRYPTION_KEYS))


def encrypt(value: str) -> str:
    return _fernet().encrypt(value.encode()).decode()


def decrypt(token: str) -> str:
    try:
        return _fernet().decrypt(token.encode()).decode()
    except InvalidToken as exc:
        raise DecryptionError("no configured key decrypts this secret (was its key removed?)") from exc


def reencrypt(token: str) -> str:
    """The same value under the newest key (a no-op in effect if it already is)."""
    try:
        return _fernet().rotate(token.encode()).decode()
    except InvalidToken as exc:
        raise DecryptionError("no configured key decrypts this secret (was its key removed?)") from exc
