"""Database helpers every app's selectors and services use."""

from __future__ import annotations

import contextlib
import functools
import threading
import time
from collections.abc import Iterable, Iterator, Sequence

from django.db import IntegrityError, connection, connections, router, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
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


# --- Hand-written SQL on the hottest requests ------------------------------------------------------------------
# The ORM compiles each query anew on every request; on the API's most frequent calls that compilation cost more
# CPU than the database spent answering. These helpers let a selector write the SQL once: identifiers come from
# the models' metadata and are quoted, every value is a parameter, and rows become model instances exactly as the
# ORM would build them (the fields' and the backend's converters applied).


def _quote(name: str) -> str:
    return connection.ops.quote_name(name)


def columns(model: type[Model], alias: str | None, fields: Sequence[str] | None = None) -> str:
    """A SELECT or RETURNING list: the named fields' columns (by default every concrete one, in field order: what
    ``instance_from`` reads), each as ``"alias"."column"``, or bare with no alias."""
    chosen = model._meta.concrete_fields if fields is None else [model._meta.get_field(name) for name in fields]
    prefix = f"{_quote(alias)}." if alias else ""
    return ", ".join(f"{prefix}{_quote(field.column)}" for field in chosen)


def instance_from(model: type[Model], row: Sequence, start: int = 0) -> tuple[Model | None, int]:
    """The ``model`` instance whose columns (``columns(model, ...)``) start at ``row[start]``, or None when its
    primary key is NULL (an outer join that matched nothing); and where the next model's columns start."""
    fields = model._meta.concrete_fields
    end = start + len(fields)
    values = list(row[start:end])
    if values[fields.index(model._meta.pk)] is None:
        return None, end
    converters = _converters(model, tuple(field.attname for field in fields), connection.alias)
    return model.from_db(connection.alias, None, _converted(values, converters, connection)), end


def related_cache(instance: Model, name: str, objects: list[Model]) -> None:
    """Fill ``instance.<name>.all()`` with ``objects`` as ``prefetch_related`` would, without its query."""
    queryset = getattr(instance, name).get_queryset()
    queryset._result_cache = objects
    queryset._prefetch_done = True
    if not hasattr(instance, "_prefetched_objects_cache"):
        instance._prefetched_objects_cache = {}
    instance._prefetched_objects_cache[name] = queryset


def names_agg(expression: str) -> str:
    """An aggregate of ``expression`` as one comma-separated string (NULL for no rows), in SQL both supported
    databases run. Only for names that cannot hold a comma (aliases and tags: ``registry.services.ALIAS_RE``)."""
    if connection.vendor == "postgresql":
        return f"string_agg({expression}, ',')"
    return f"group_concat({expression}, ',')"


def names_split(value: str | None) -> list[str]:
    return sorted(value.split(",")) if value else []


def for_update() -> str:
    """`` FOR UPDATE`` where the database locks rows (PostgreSQL); SQLite's transactions lock the whole file."""
    return " FOR UPDATE" if connection.features.has_select_for_update else ""


def fetch_one(sql: str, params: Sequence) -> tuple | None:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchone()


def insert_parts(instance: Model, *, cast: bool = True) -> tuple[str, str, list]:
    """What an INSERT of ``instance`` writes: its quoted columns, one placeholder per column, and the values,
    prepared as ``save()`` prepares them (``auto_now_add`` included). An automatic primary key not yet set is left
    out. ``cast`` (PostgreSQL, for ``INSERT ... SELECT``) casts each placeholder to its column's type: a bare
    parameter in a select list would be read as text. A VALUES list needs none."""
    fields = _insert_fields(instance)
    names, placeholders = _insert_sql(type(instance), tuple(fields), cast)
    return names, placeholders, _insert_values(fields, instance, connection)


@functools.cache
def _insert_sql(model: type[Model], fields: tuple, cast: bool) -> tuple[str, str]:
    names = ", ".join(_quote(field.column) for field in fields)
    placeholders = ", ".join(f"CAST(%s AS {field.db_type(connection)})" if cast else "%s" for field in fields)
    return names, placeholders


def _insert_fields(instance: Model) -> list:
    """The fields an INSERT of ``instance`` writes: every concrete one but an automatic primary key not yet set."""
    return [
        field
        for field in instance._meta.concrete_fields
        if not (field.primary_key and getattr(instance, field.attname) is None)
    ]


def _insert_values(fields: list, instance: Model, on: BaseDatabaseWrapper) -> list:
    """The values an INSERT of ``instance`` writes, prepared as ``save()`` prepares them (``auto_now_add``
    included)."""
    return [field.get_db_prep_save(field.pre_save(instance, True), on) for field in fields]


@contextlib.contextmanager
def one_statement() -> Iterator[None]:
    """Around a write made in one statement, which is atomic by itself: outside a transaction it needs neither BEGIN
    nor COMMIT (two round trips); inside one, a savepoint keeps the enclosing transaction usable if it fails."""
    if connection.in_atomic_block:
        with transaction.atomic():
            yield
    else:
        yield


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
    fields = _insert_fields(objs[0])
    names, _ = _insert_sql(model, tuple(fields), False)
    rows = [_insert_values(fields, obj, connection) for obj in objs]
    with connection.cursor() as cursor:
        raw = cursor.cursor  # psycopg's own cursor: Django's wrapper has no COPY
        with raw.copy(f"COPY {quoted(model)} ({names}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
    for obj in objs:
        obj._state.adding = False
        obj._state.db = connection.alias


# --- Kept connections ------------------------------------------------------------------------------------------
# A request or task that starts within this many seconds of the previous one on its thread (or pool process) runs
# on the connection that one has just used, so it skips CONN_HEALTH_CHECKS' SELECT 1: a PostgreSQL round trip (and
# a cursor) before the first query of every API call, event and delivery. A connection idle for longer is checked
# before its first query. One that died within that second fails a query, and is dropped at the end of that request
# or task (``close_old_connections`` sees the error).
HEALTH_CHECK_AFTER_IDLE = 1.0
_last_use = threading.local()


def connections_resume() -> None:
    """At the start of a request or task, after ``close_old_connections``: a connection this thread used a moment
    ago counts as checked."""
    if time.monotonic() - getattr(_last_use, "finished", float("-inf")) < HEALTH_CHECK_AFTER_IDLE:
        for each in connections.all(initialized_only=True):
            if each.connection is not None:
                each.health_check_done = True


def connections_pause() -> None:
    """At the end of a request or task."""
    _last_use.finished = time.monotonic()


def rows_loaded(
    model: type[Model], field_names: list[str], rows: Iterable[tuple], *, using: str = "default"
) -> list[Model]:
    """Model instances from raw rows of ``field_names`` (e.g. what an ``UPDATE ... RETURNING`` gave), converted as
    a queryset converts them: how a hot path loads the rows its statement already returned, without reading them
    again."""
    connection = connections[using]
    converters = _converters(model, tuple(field_names), using)
    attnames = [model._meta.get_field(name).attname for name in field_names]
    return [model.from_db(using, attnames, _converted(list(row), converters, connection)) for row in rows]


@functools.cache
def _converters(model: type[Model], field_names: tuple[str, ...], using: str) -> tuple:
    """What a queryset applies to each column it reads (the backend's converters, then the field's): (index, column,
    converters) for the columns that have any."""
    connection = connections[using]
    found = []
    for index, name in enumerate(field_names):
        field = model._meta.get_field(name)
        col = field.get_col(model._meta.db_table)
        if converters := connection.ops.get_db_converters(col) + field.get_db_converters(connection):
            found.append((index, col, tuple(converters)))
    return tuple(found)


def _converted(values: list, converters: tuple, connection: BaseDatabaseWrapper) -> list:
    for index, col, found in converters:
        for convert in found:
            values[index] = convert(values[index], col, connection)
    return values


def quoted(model: type[Model], field: str | None = None) -> str:
    """A model's table, or one of its fields' column, quoted for SQL written by hand: the only text such SQL formats
    in (every value is a parameter)."""
    quote = connections[router.db_for_write(model)].ops.quote_name
    return quote(model._meta.db_table if field is None else model._meta.get_field(field).column)
