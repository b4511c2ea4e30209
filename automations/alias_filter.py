"""Alias filters: regular expressions that must match the whole alias, with a bound on matching time.

Team admins write these patterns and dispatch runs them, so a pattern with catastrophic backtracking such as
``(a|aa)+b`` could stall the events worker. Matching uses the ``regex`` module's timeout, and a pattern that is
already slow on adversarial probes is refused when saved.
"""

from __future__ import annotations

import logging

import regex
from django.conf import settings

logger = logging.getLogger(__name__)

# Aliases are at most 64 characters of [A-Za-z0-9._-]; these probe the usual backtracking traps.
_PROBES = ("a" * 64, "a" * 63 + "-", "0" * 63 + ".", "aA0._-" * 10 + "!!!!")


class AliasFilterError(ValueError):
    pass


def _timeout() -> float:
    return getattr(settings, "ALIAS_FILTER_TIMEOUT", 0.05)


def alias_filter_validate(pattern: str) -> str:
    try:
        compiled = regex.compile(pattern)
    except regex.error as exc:
        raise AliasFilterError(f"Invalid regular expression: {exc}.") from exc
    for probe in _PROBES:
        try:
            compiled.fullmatch(probe, timeout=_timeout())
        except TimeoutError as exc:
            raise AliasFilterError(
                "This regular expression takes too long to match (nested repetition such as (a+)+ backtracks "
                "without bound); simplify it."
            ) from exc
    return pattern


def alias_filter_matches(pattern: str, alias: str) -> bool:
    """Whether the whole alias matches. A match that runs out of time counts as no match, and is logged."""
    try:
        return regex.fullmatch(pattern, alias, timeout=_timeout()) is not None
    except TimeoutError:
        logger.warning("alias filter %r timed out on alias %r; treated as no match", pattern, alias)
        return False
    except regex.error:
        return False
