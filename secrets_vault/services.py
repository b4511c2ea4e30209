"""Writes and send-time reads of team secrets. No function here returns, logs or raises with a value, apart from
``secret_generate``, whose caller shows the value it made once."""

from __future__ import annotations

import base64
import re
import secrets
from collections.abc import Iterable

from django.contrib.auth.base_user import AbstractBaseUser
from django.db import transaction
from registry_client.webhooks import STANDARD_SECRET_PREFIX

from core.db import conflict_on_duplicate
from core.errors import ApplicationError, Conflict, NotFound
from registry.models import Team

from . import crypto
from .models import Secret
from .usage import reserved_reason, secret_users

NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
MAX_VALUE_BYTES = 8 * 1024
# Kinds of value ``secret_generate`` makes. "whsec": a Standard Webhooks signing secret, ``whsec_`` and the base64 of
# 32 random bytes, the form the official libraries take as it is (they base64-decode any secret they are given).
GENERATED_KINDS = ("whsec",)
GENERATED_KEY_BYTES = 32


def secret_name_validate(name: object) -> str:
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise ApplicationError(
            f"Invalid secret name {name!r}: use 1-64 letters, digits or '_', not starting with a digit "
            "(it is used as ${NAME} in payloads).",
            field="name",
        )
    if reason := reserved_reason(name):
        raise ApplicationError(f"A secret cannot be named {name!r}: {reason}", field="name")
    return name


def value_validate(value: object) -> str:
    # Messages here never include the value.
    if not isinstance(value, str) or value == "":
        raise ApplicationError("The value must be a non-empty string.", field="value")
    if "\x00" in value:
        raise ApplicationError("The value may not contain the NUL character.", field="value")
    if len(value.encode()) > MAX_VALUE_BYTES:
        raise ApplicationError(f"The value is longer than {MAX_VALUE_BYTES} bytes.", field="value")
    return value


def secret_create(*, team: Team, name: str, value: str, user: AbstractBaseUser | None) -> Secret:
    name = secret_name_validate(name)
    ciphertext = crypto.encrypt(value_validate(value))
    with conflict_on_duplicate(f"Secret {name!r} already exists; PUT a new value to change it."):
        return Secret.objects.create(team=team, name=name, ciphertext=ciphertext, created_by=user, updated_by=user)


def secret_generate(*, team: Team, name: str, kind: str, user: AbstractBaseUser | None) -> tuple[Secret, str]:
    """Create a secret with a random value of ``kind``; return it with the value, which is never shown again."""
    if kind not in GENERATED_KINDS:
        raise ApplicationError(f"Cannot generate {kind!r}: use one of {', '.join(GENERATED_KINDS)}.", field="generate")
    value = STANDARD_SECRET_PREFIX + base64.b64encode(secrets.token_bytes(GENERATED_KEY_BYTES)).decode()
    return secret_create(team=team, name=name, value=value, user=user), value


def secret_update(*, secret: Secret, value: str, user: AbstractBaseUser | None) -> Secret:
    secret.ciphertext = crypto.encrypt(value_validate(value))
    secret.updated_by = user
    secret.save(update_fields=["ciphertext", "updated_by", "updated_at"])
    return secret


@transaction.atomic
def secret_delete(*, team: Team, name: str) -> None:
    secret = Secret.objects.select_for_update().filter(team=team, name=name).first()
    if secret is None:
        raise NotFound(f"No secret {name!r} in {team.name}.", field="name")
    if users := secret_users(team=team, name=name):
        raise Conflict(f"Secret {name!r} is in use by {', '.join(users)}; change those first.", field="name")
    secret.delete()


def secret_values(*, team: Team, names: Iterable[str]) -> dict[str, str]:
    """Decrypt the named secrets of a team, at send time only. Missing names are simply absent."""
    wanted = set(names)
    if not wanted:
        return {}
    rows = Secret.objects.filter(team=team, name__in=wanted).values_list("name", "ciphertext")
    return secret_values_decrypt(dict(rows))


def secret_values_decrypt(ciphertexts: dict[str, bytes | str]) -> dict[str, str]:
    """Decrypt secrets whose rows the caller already read (name → ciphertext), at send time only."""
    return {name: crypto.decrypt(ciphertext) for name, ciphertext in ciphertexts.items()}


def secrets_reencrypt(*, batch_size: int = 200) -> int:
    """Re-encrypt every secret with the newest key, so older keys can be retired. Returns how many."""
    count = 0
    for pk in Secret.objects.order_by("pk").values_list("pk", flat=True).iterator(chunk_size=batch_size):
        with transaction.atomic():
            secret = Secret.objects.select_for_update().get(pk=pk)
            secret.ciphertext = crypto.reencrypt(secret.ciphertext)
            secret.save(update_fields=["ciphertext"])
        count += 1
    return count
