"""Name rules shared by the models (database-level validation) and every app's services."""

from __future__ import annotations

import re
import unicodedata

from django.core.validators import RegexValidator

from .errors import ApplicationError

# Team names: part of every reference and URL, so lowercase and short.
SLUG_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
# Projects, collections, registered models, jobs and queues allow dots and capitals too, as artifact names do.
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")

slug_validator = RegexValidator(
    SLUG_RE,
    "Use 1-64 lowercase letters, digits, '-' or '_', starting with a letter or digit (no spaces).",
    code="invalid_name",
)
name_validator = RegexValidator(
    NAME_RE,
    "Use 1-128 letters, digits, '.', '-' or '_', starting with a letter or digit (no spaces or slashes).",
    code="invalid_name",
)

_RULES = {
    SLUG_RE: "1-64 lowercase letters, digits, '-' or '_', starting with a letter or digit, no spaces",
    NAME_RE: "letters, digits, '.', '-' or '_', starting with a letter or digit, no spaces or slashes",
}


def name_validate(value: object, *, field: str = "name", what: str = "name", pattern: re.Pattern = NAME_RE) -> str:
    """``value`` if it is a name ``pattern`` (``NAME_RE`` or ``SLUG_RE``) allows; otherwise the refusal, saying the
    rule and naming ``field``."""
    if not isinstance(value, str) or not pattern.match(value):
        raise ApplicationError(f"Invalid {what} {value!r}: use {_RULES[pattern]}.", field=field)
    return value


# Automation and webhook names are labels people read; they are never part of a reference or a URL, so they take
# spaces, punctuation and any script. Refused: what cannot be seen or stored as typed — control characters (NUL,
# tabs, newlines), invisible formatting characters (zero-width, bidirectional overrides that disguise the text),
# line separators, lone surrogates — and blank or padded names, which would look like another name in a list.
LABEL_MAX_LENGTH = 128
_UNPRINTABLE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})


def label_validate(value: object, *, what: str, field: str = "name") -> str:
    """``value`` if it can name an automation or webhook (``what``); otherwise the refusal, naming ``field``."""
    if problem := _label_problem(value):
        raise ApplicationError(f"The {what} name {problem}.", field=field)
    return value


def _label_problem(value: object) -> str | None:
    if not isinstance(value, str):
        return "must be a string"
    if not value.strip():
        return "may not be empty or only spaces"
    if len(value) > LABEL_MAX_LENGTH:
        return f"may have at most {LABEL_MAX_LENGTH} characters (it has {len(value)})"
    unprintable = next((c for c in value if unicodedata.category(c) in _UNPRINTABLE_CATEGORIES), None)
    if unprintable is not None:
        return f"may not contain control or invisible characters (it has U+{ord(unprintable):04X})"
    if value != value.strip():
        return "may not start or end with a space"
    return None
