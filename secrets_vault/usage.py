"""Hooks through which apps that use secrets speak to the vault, without the vault knowing them.

``automations`` registers the names secrets may not take (payload variables) and a function listing what uses a
secret, so deleting a used secret can be refused with the users named.
"""

from __future__ import annotations

from collections.abc import Callable

from registry.models import Team

UsageFinder = Callable[[Team, str], list[str]]
_finders: list[UsageFinder] = []
_reserved: dict[str, str] = {}


def usage_finder_register(finder: UsageFinder) -> None:
    if finder not in _finders:
        _finders.append(finder)


def secret_users(*, team: Team, name: str) -> list[str]:
    """Human-readable names of what refers to the secret (``webhook 'deploy'``, ``automation 'notify'``)."""
    users: list[str] = []
    for finder in _finders:
        users.extend(finder(team, name))
    return users


def reserved_names_register(names: dict[str, str]) -> None:
    """Names (compared case-insensitively) a secret may not take, each with the reason."""
    _reserved.update({name.lower(): reason for name, reason in names.items()})


def reserved_reason(name: str) -> str | None:
    lowered = name.lower()
    for reserved, reason in _reserved.items():
        if lowered == reserved or (reserved.endswith(".") and lowered.startswith(reserved)):
            return reason
    return None
