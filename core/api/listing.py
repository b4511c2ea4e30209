"""The base of every list endpoint: each view declares its query filters once, in ``query_filters``.

That one declaration is what a request is checked against and what the OpenAPI schema documents. A query parameter
that is none of the view's filters, its paginator's parameters (``limit``, ``offset``) or ``format`` is refused with
a 400 naming it: ignoring a misspelt filter would answer the whole list as if it were the filtered one.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from drf_spectacular.openapi import AutoSchema
from drf_spectacular.utils import OpenApiParameter
from rest_framework import exceptions, generics
from rest_framework.settings import api_settings

MAX_ID = 2**63 - 1  # PostgreSQL's bigint: a larger id is refused here, not by the database


@dataclass(frozen=True)
class QueryFilter:
    """One filter of a list: ``?name=value``. An empty value filters nothing."""

    name: str
    description: str = ""
    # str (any text), int (a row id) or uuid.UUID (an event, delivery or item id).
    kind: type = str
    # The values allowed, or a function returning them (read when a request or the schema needs them).
    choices: Iterable[str] | Callable[[], Iterable[str]] | None = None

    def allowed(self) -> list[str] | None:
        if self.choices is None:
            return None
        return list(self.choices() if callable(self.choices) else self.choices)

    def parse(self, raw: str) -> object:
        """The value to filter by, or a 400 naming this filter."""
        if self.kind is int:
            if not (raw.isascii() and raw.isdigit()) or int(raw) > MAX_ID:
                raise exceptions.ValidationError({self.name: ["Must be an id (a whole number)."]})
            return int(raw)
        if self.kind is uuid.UUID:
            try:
                return uuid.UUID(raw)
            except ValueError:
                raise exceptions.ValidationError({self.name: ["Must be an id (a UUID)."]}) from None
        allowed = self.allowed()
        if allowed is not None and raw not in allowed:
            raise exceptions.ValidationError({self.name: [f"Use one of {', '.join(allowed)}."]})
        return raw

    def parameter(self) -> OpenApiParameter:
        return OpenApiParameter(self.name, self.kind, description=self.description, enum=self.allowed())


class ListSchema(AutoSchema):
    """Documents a list's ``query_filters`` as the query parameters of its GET."""

    def get_override_parameters(self) -> list:
        parameters = super().get_override_parameters()
        if self.method == "GET":
            parameters = [*parameters, *(f.parameter() for f in getattr(self.view, "query_filters", ()))]
        return parameters


class ListView(generics.ListAPIView):
    """A list endpoint. Its ``get_queryset`` reads the filters given in ``self.filters`` (name → parsed value)."""

    query_filters: tuple[QueryFilter, ...] = ()
    schema = ListSchema()

    def list(self, request, *args, **kwargs):
        self.filters = self.query_parse(request.query_params)
        return super().list(request, *args, **kwargs)

    def query_parse(self, params) -> dict[str, object]:
        declared = {f.name: f for f in self.query_filters}
        allowed = {*declared, *self.paging_parameters(), api_settings.URL_FORMAT_OVERRIDE}
        unknown = [name for name in params if name not in allowed]
        if unknown:
            takes = ", ".join(sorted(name for name in allowed if name))
            raise exceptions.ValidationError(
                {name: [f"Not a parameter of this list; it takes {takes}."] for name in unknown}
            )
        return {name: f.parse(params[name]) for name, f in declared.items() if params.get(name)}

    def paging_parameters(self) -> list[str]:
        """The query parameters the paginator reads, whatever paginator it is."""
        if self.paginator is None:
            return []
        return [p["name"] for p in self.paginator.get_schema_operation_parameters(self)]
