"""Database helpers every app's selectors and services use."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, TypeVar

from django.db import IntegrityError, connection, connections, router, transaction
from django.db.models import Field, Model, QuerySet
from django.db.models.expressions import Col

from .errors import Conflict

M = TypeVar("M", bound=Model)


def unique_or_none(queryset: QuerySet) -> Model | None:
    """The row a lookup on a unique key matches, or None. Like ``.first()`` without the ORDER BY it adds, which on
    the API's hottest requests cost about a tenth of their CPU to compile and nothing to the result."""
    return next(iter(queryset.order_by()[:1]), None)


def filter_given(queryset: QuerySet, **lookups: object) -> QuerySet:
    """The queryset filtered by each lookup that was given (not None, not empty): a list's optional filters."""
    return queryset.filter(**{lookup: value for lookup, value in lookups.items() if value not in (None, "")})


@contextlib.contextmanager
def conflict_on_duplicate(message: str, *, field: str = "name") -> Iterator[None]:
    """Run the block's writes in a savepoint; a row that breaks a unique constraint becomes ``Conflict(message)``
    naming ``field``. The savepoint keeps an enclosing transaction usable after the refusal."""
    try:
        with transaction.atomic():
            yield
    except IntegrityError as exc:
        raise Conflict(message, field=field) from exc


def rows_insert(model: type[Model], objs: Iterable[Model]) -> None:
    """Insert new rows as ``bulk_create`` does, for the hot paths' many small rows: on PostgreSQL through ``COPY``,
    which skips the ORM's per-value SQL compilation (the bulk of a dispatch's CPU when it writes hundreds of
    deliveries). A database-assigned primary key (an auto field left None) stays unset on the objects."""
    objs = list(objs)
    if not objs:
        return
    connection = connections[router.db_for_write(model)]
    if connection.vendor != "postgresql":
        model.objects.bulk_create(objs)
        return
    fields = [f for f in model._meta.concrete_fields if not (f.primary_key and getattr(objs[0], f.attname) is None)]
    quote = connection.ops.quote_name
    columns = ", ".join(quote(f.column) for f in fields)
    rows = [[f.get_db_prep_save(f.pre_save(obj, add=True), connection) for f in fields] for obj in objs]
    with connection.cursor() as cursor:
        raw = cursor.cursor  # psycopg's own cursor: Django's wrapper has no COPY
        with raw.copy(f"COPY {quote(model._meta.db_table)} ({columns}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
    for obj in objs:
        obj._state.adding = False
        obj._state.db = connection.alias


# --- Rows of hand-written SQL, loaded as the ORM loads them ----------------------------------------------------
# For the few statements the ORM cannot write (UPDATE ... RETURNING) or that run on every request of a hot path,
# where compiling a queryset costs more than the query.


def columns(model: type[Model], table: str | None = None) -> str:
    """Every concrete column of the model, quoted and qualified by its table (or ``table``), in field order: what
    ``row_loaded`` reads."""
    quote = connection.ops.quote_name
    prefix = table or quote(model._meta.db_table)
    return ", ".join(f"{prefix}.{quote(field.column)}" for field in model._meta.concrete_fields)


def row_loaded(model: type[M], row: Sequence[Any]) -> M:
    """The instance a row of ``columns(model)`` holds, its values converted as the ORM converts them."""
    fields = model._meta.concrete_fields
    return model.from_db(
        connection.alias,
        [field.attname for field in fields],
        [value_loaded(field, value) for field, value in zip(fields, row, strict=True)],
    )


def loaded(model: type[M], **values: Any) -> M:
    """An instance as loaded from the database with only these fields (by attribute name, already converted): the
    others are deferred."""
    names = [field.attname for field in model._meta.concrete_fields if field.attname in values]
    return model.from_db(connection.alias, names, [values[name] for name in names])


def value_loaded(field: Field, value: Any) -> Any:
    """A column's value as the ORM loads it into ``field`` (JSON decoded; SQLite's dates, UUIDs and booleans)."""
    column = _column(field)
    for converter in connection.ops.get_db_converters(column) + column.get_db_converters(connection):
        value = converter(value, column, connection)
    return value


@functools.cache
def _column(field: Field) -> Col:
    return field.get_col(field.model._meta.db_table)
