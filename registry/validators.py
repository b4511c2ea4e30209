"""Name rules shared by the models (database-level validation) and the services."""

import re

from django.core.validators import RegexValidator

SLUG_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
# Registered models, collections and aliases allow dots and capitals too, as artifact names do.
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
ALIAS_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
# "v3" would read as a version index in references like team/project/name:v3.
VERSION_LIKE_RE = re.compile(r"^v\d+$")

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
