"""The client's errors: one class per kind of failure, each with the exit status the command line uses for it.

``RegistryError`` is the base of all of them. Errors the server answered carry its HTTP ``status``, its error
``code``, the ``field`` at fault and every field's reasons (``errors``), as the API's JSON error body gives them.
Messages never hold the token.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .types import WaitResult

__all__ = [
    "EXIT_CODES",
    "BadRequest",
    "ConfigError",
    "Conflict",
    "DigestMismatch",
    "NotAuthorized",
    "NotFound",
    "RegistryError",
    "ServerError",
    "ServerUnreachable",
    "TimedOut",
    "UnsafePath",
    "WaitFailed",
]


class RegistryError(Exception):
    """Any failure of a client call. ``exit_code`` is what the ``registry`` command exits with for it."""

    exit_code = 1

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str = "",
        field: str | None = None,
        errors: dict[str, list[str]] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.field = field
        self.errors: dict[str, list[str]] = errors or {}


class ConfigError(RegistryError):
    """No server URL, an unreadable config file, or a team that cannot be chosen: nothing was sent."""

    exit_code = 2


class ServerUnreachable(RegistryError):
    """No answer: connection refused or reset, unknown host, a timeout, or a transfer cut off mid-body."""

    exit_code = 3


class NotAuthorized(RegistryError):
    """401 (no token, or a wrong, revoked one) or 403 (the token's user may not do this)."""

    exit_code = 4


class NotFound(RegistryError):
    """404: no such team, project, version, model, alias, event or file (or not one this user may see)."""

    exit_code = 5


class Conflict(RegistryError):
    """409: the request clashes with the registry's state (e.g. a version not committed yet, or still linked)."""

    exit_code = 6


class BadRequest(RegistryError):
    """Any other 4xx: the input was refused. ``field`` names the input at fault when the server said which."""

    exit_code = 7


class UnsafePath(BadRequest):
    """A manifest path that could land outside its folder (absolute, ``..``, a symlink leading out, ...)."""


class TimedOut(RegistryError):
    """``wait`` gave up before everything a change started had settled."""

    exit_code = 8


class DigestMismatch(RegistryError):
    """Bytes whose SHA-256 is not the one the manifest names (a download, or a file that changed mid-upload)."""

    exit_code = 9


class WaitFailed(RegistryError):
    """What a change started has settled, and a delivery failed or a launch item failed or was cancelled.
    ``result`` holds everything as last seen."""

    exit_code = 10
    result: WaitResult | None = None


class ServerError(RegistryError):
    """A 5xx, or an answer that is not the registry API's."""

    exit_code = 1


# For the command line's help and the README: one line per status.
EXIT_CODES: dict[int, str] = {
    0: "success",
    1: "any other error (a server error, an unexpected answer)",
    2: "bad arguments or configuration (no server URL, unknown team)",
    ServerUnreachable.exit_code: "cannot reach the server (refused, unknown host, timeout, transfer cut off)",
    NotAuthorized.exit_code: "not authorised (401: no or bad token; 403: not allowed)",
    NotFound.exit_code: "not found (404)",
    Conflict.exit_code: "conflict (409)",
    BadRequest.exit_code: "input refused (other 4xx, or an unsafe manifest path)",
    TimedOut.exit_code: "wait timed out",
    DigestMismatch.exit_code: "SHA-256 mismatch",
    WaitFailed.exit_code: "wait: a delivery or launch item failed",
    130: "interrupted (Ctrl-C)",
}
