"""Database helpers every app's selectors and services use."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator

from django.db import IntegrityError, connections, router, transaction
from django.db.models import Model, QuerySet

from .errors import Conflict


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


def rows_loaded(
    model: type[Model], field_names: list[str], rows: Iterable[tuple], *, using: str = "default"
) -> list[Model]:
    """Model instances from raw rows of ``field_names`` (e.g. what an ``UPDATE ... RETURNING`` gave), converted as
    a queryset converts them: how a hot path loads the rows its statement already returned, without reading them
    again."""
    connection = connections[using]
    fields = [model._meta.get_field(name) for name in field_names]
    converters = []
    for index, field in enumerate(fields):
        col = field.get_col(model._meta.db_table)
        found = connection.ops.get_db_converters(col) + field.get_db_converters(connection)
        if found:
            converters.append((index, col, found))
    attnames = [field.attname for field in fields]
    loaded = []
    for row in rows:
        values = list(row)
        for index, col, found in converters:
            for convert in found:
                values[index] = convert(values[index], col, connection)
        loaded.append(model.from_db(using, attnames, values))
    return loaded


def quoted(model: type[Model], field: str | None = None) -> str:
    """A model's table, or one of its fields' column, quoted for SQL written by hand: the only text such SQL formats
    in (every value is a parameter)."""
    quote = connections[router.db_for_write(model)].ops.quote_name
    return quote(model._meta.db_table if field is None else model._meta.get_field(field).column)
