"""Query helpers for the hot paths."""

from __future__ import annotations

from django.db.models import Model, QuerySet


def unique_or_none(queryset: QuerySet) -> Model | None:
    """The row a lookup on a unique key matches, or None. Like ``.first()`` without the ORDER BY it adds, which on
    the API's hottest requests cost about a tenth of their CPU to compile and nothing to the result."""
    return next(iter(queryset.order_by()[:1]), None)


def filter_given(queryset: QuerySet, **lookups: object) -> QuerySet:
    """The queryset filtered by each lookup that was given (not None, not empty): a list's optional filters."""
    return queryset.filter(**{lookup: value for lookup, value in lookups.items() if value not in (None, "")})
