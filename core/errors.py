"""The one application error type. Services raise it; the API turns it into a JSON 4xx."""

from __future__ import annotations


class ApplicationError(Exception):
    """A request the domain refuses. ``field`` names the input at fault, if any."""

    status_code = 400
    default_code = "invalid"

    def __init__(
        self, message: str, *, field: str | None = None, code: str | None = None, headers: dict | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.code = code or self.default_code
        # Response headers the refusal carries (e.g. Content-Range on a 416).
        self.headers = headers


class NotFound(ApplicationError):
    status_code = 404
    default_code = "not_found"


class Conflict(ApplicationError):
    status_code = 409
    default_code = "conflict"


class PermissionDenied(ApplicationError):
    status_code = 403
    default_code = "permission_denied"


class LengthRequired(ApplicationError):
    status_code = 411
    default_code = "length_required"


class TooLarge(ApplicationError):
    status_code = 413
    default_code = "too_large"


class RangeNotSatisfiable(ApplicationError):
    status_code = 416
    default_code = "range_not_satisfiable"
