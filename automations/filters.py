"""Filter expressions: which events an automation acts on, in the MongoDB operator form W&B stores.

An automation's ``filter`` is a JSON object evaluated against the event's context; ``{}`` (no filter) lets every
event through. W&B's ``ArtifactEvent.alias.regex("^prod") & ArtifactEvent.metadata["accuracy"].gte(0.9)`` is stored as
``{"$and": [{"alias": {"$regex": "^prod"}}, {"artifact_metadata.accuracy": {"$gte": 0.9}}]}``, and means the same here.

**Fields.** ``alias`` and ``tag`` when the automation's event type carries that variable (``registry.events``), and
``artifact_metadata.KEY`` for every type. ``KEY`` is first taken whole as a top-level key, dots included (as
``${artifact_metadata.KEY}`` reads it in a payload); only when there is no such key does ``a.b`` walk into nested
objects (``{"a": {"b": 1}}``). List elements are never walked into: use ``$contains``.

**Expressions.** An object whose keys are fields and the logical operators ``$and``, ``$or``, ``$nor`` (each a
non-empty list of expressions) and ``$not`` (one expression); several keys in one object must all hold. A field's
condition is either a plain value, meaning ``$eq`` (``{"alias": "prod"}``), or an object of operators that must all
hold (``{"$gte": 0.5, "$lt": 0.9}``):

- ``$eq``, ``$ne``: JSON equality, except that a boolean equals only a boolean (``1`` is not ``true``) and ``1``
  equals ``1.0``. ``$in``, ``$nin``: equal to one of (none of) a list of values.
- ``$gt``, ``$gte``, ``$lt``, ``$lte``: numbers only; a value that is not a number (a string, a boolean) never matches.
- ``$regex``: an RE2 pattern that matches anywhere in a string value (``automations.alias_filter``; linear time), with
  ``$options`` any of ``i`` (ignore case), ``m`` (``^``/``$`` at line breaks), ``s`` (``.`` matches a line break).
- ``$contains``: a substring of a string value, or an element of a list value.
- ``$exists``: ``true`` when the field is present (even as ``null``), ``false`` when it is missing.
- ``$not``: an object of operators that must not all hold.

**Missing fields** behave as in MongoDB: a missing field equals only ``null``, so ``$ne`` and ``$nin`` (without
``null``) match it, and every other operator does not.

**Bounds.** A filter is refused when saved beyond MAX_FILTER_BYTES of JSON, MAX_FILTER_DEPTH levels of nesting,
MAX_FILTER_NODES JSON values or MAX_FILTER_PATTERNS ``$regex``. Evaluation visits each node once and each visit costs
at most one pass over the value it looks at (RE2 is linear), so it takes O(nodes * value length). Refusals name the
operator and the path at fault, e.g. ``$and[1].artifact_metadata.accuracy.$gte: expects a number, got "high"``.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import operator
from collections.abc import Callable, Mapping
from typing import Any

from registry.events import METADATA_PREFIX, VARIABLES, event_type_get, event_types

from .alias_filter import OPTION_FLAGS, AliasFilterError, alias_filter_validate, pattern_search

logger = logging.getLogger(__name__)

MAX_FILTER_BYTES = 16 * 1024
MAX_FILTER_DEPTH = 16  # the filter object itself is level 1
MAX_FILTER_NODES = 512  # every JSON value counts: objects, lists, operands, list elements
MAX_FILTER_PATTERNS = 16  # each $regex may hold up to alias_filter.MAX_PATTERN_MEMORY once compiled
MAX_INTEGER_BITS = 1024  # larger integers are no one's metadata; Python refuses to print those of 4300+ digits

FIELDS = ("alias", "tag")  # besides artifact_metadata.KEY, which every event type has
METADATA_FIELD = METADATA_PREFIX + "KEY"
LOGICAL = ("$and", "$or", "$nor")
COMPARISONS: dict[str, Callable[[Any, Any], bool]] = {
    "$gt": operator.gt, "$gte": operator.ge, "$lt": operator.lt, "$lte": operator.le
}  # fmt: skip
FIELD_OPERATORS = ("$eq", "$ne", "$in", "$nin", *COMPARISONS, "$regex", "$options", "$contains", "$exists", "$not")
OPERATORS = (*LOGICAL, "$not", *FIELD_OPERATORS[:-1])  # every operator, once, for help texts

Path = tuple[str | int, ...]
_MISSING: Any = object()  # a field the event does not have


class FilterError(ValueError):
    """A filter refused: ``path`` (``$and[1].alias.$regex``) says where, ``reason`` what is wrong there."""

    def __init__(self, path: Path, reason: str) -> None:
        self.path = _where(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}" if self.path else reason)


def _key(key: object) -> str:
    text = str(key)
    if text and text.isprintable() and len(text) <= 64:
        return text
    # Control characters, lone surrogates (which no response could encode) and very long keys are shown escaped.
    return json.dumps(text[:64] + ("..." if len(text) > 64 else ""), ensure_ascii=True)


def _where(path: Path) -> str:
    shown = ""
    for step in path:
        shown += f"[{step}]" if isinstance(step, int) else (f".{_key(step)}" if shown else _key(step))
    return shown


def _show(value: object) -> str:
    """A short, ASCII-safe rendering of a value for an error message."""
    try:
        text = json.dumps(value, ensure_ascii=True)
    except (TypeError, ValueError, RecursionError):
        text = type(value).__name__
    return text if len(text) <= 40 else text[:37] + "..."


# --- Validation ----------------------------------------------------------------------------------------------


def filter_fields(event_type: str | None) -> tuple[str, ...]:
    """The fields a filter of ``event_type`` may use (those of every registered type when None), from the event
    registry's variables: a type added later with ``alias`` or ``tag`` among them can be filtered on them."""
    if event_type is None:
        types = event_types()
    else:
        try:
            types = [event_type_get(event_type)]
        except KeyError:
            types = event_types()
    return (*(name for name in FIELDS if any(found.carries(name) for found in types)), METADATA_FIELD)


def _parse(text: str) -> object:
    if len(text.encode("utf-8", "surrogatepass")) > MAX_FILTER_BYTES:
        raise FilterError((), f"The filter is larger than {MAX_FILTER_BYTES} bytes of JSON.")

    def refuse_constant(name: str) -> None:
        raise FilterError((), f"Invalid JSON: {name} is not a number a filter can hold.")

    try:
        return json.loads(text, parse_constant=refuse_constant)
    except FilterError:
        raise
    except json.JSONDecodeError as exc:
        raise FilterError((), f"Invalid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno}).") from None
    except RecursionError:
        raise FilterError((), f"The filter is nested deeper than {MAX_FILTER_DEPTH} levels.") from None
    except ValueError:  # an integer longer than Python converts
        raise FilterError((), "Invalid JSON: a number has too many digits.") from None


def _shape_check(expr: dict) -> None:
    """Refuse what no filter may hold, before looking at its meaning: too many nodes, too deep, text the database
    cannot store, numbers JSON cannot carry. Keeps its own stack, so no input can exhaust Python's."""
    stack: list[tuple[object, Path]] = [(expr, ())]
    nodes = 1
    while stack:
        value, path = stack.pop()
        if isinstance(value, str):
            _text_check(value, path)
        elif isinstance(value, bool) or value is None:
            pass
        elif isinstance(value, int):
            if value.bit_length() > MAX_INTEGER_BITS:
                raise FilterError(path, "a number has too many digits.")
        elif isinstance(value, float):
            if not math.isfinite(value):
                raise FilterError(path, f"numbers must be finite, got {value}.")
        elif isinstance(value, dict | list):
            if len(path) >= MAX_FILTER_DEPTH:
                raise FilterError(path, f"nested deeper than {MAX_FILTER_DEPTH} levels, the limit of a filter.")
            nodes += len(value)
            if nodes > MAX_FILTER_NODES:
                raise FilterError(
                    (), f"The filter holds more than {MAX_FILTER_NODES} values (operators, fields and operands)."
                )
            if isinstance(value, dict):
                for key, item in value.items():
                    if not isinstance(key, str):
                        raise FilterError(path, f"object keys must be strings, got {_show(key)}.")
                    _text_check(key, (*path, key))
                    stack.append((item, (*path, key)))
            else:
                stack.extend((item, (*path, index)) for index, item in enumerate(value))
        else:
            raise FilterError(path, f"is not a JSON value ({type(value).__name__}).")


def _text_check(text: str, path: Path) -> None:
    if "\x00" in text:
        raise FilterError(path, "may not contain the NUL character (\\u0000).")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise FilterError(path, "is not valid Unicode text (a lone surrogate).") from None


class _Checker:
    """The meaning of a filter whose shape passed: operators known, operands of the right type, fields the event
    type has, patterns RE2 compiles, at most MAX_FILTER_PATTERNS of them."""

    def __init__(self, event_type: str | None) -> None:
        self.event_type = event_type
        self.fields = filter_fields(event_type)
        self.patterns = 0

    def expression(self, expr: object, path: Path) -> None:
        if not isinstance(expr, dict):
            raise FilterError(path, f"expects a filter expression (an object), got {_show(expr)}.")
        for key, operand in expr.items():
            here = (*path, key)
            if key in LOGICAL:
                if not isinstance(operand, list) or not operand:
                    raise FilterError(here, f"expects a non-empty list of filter expressions, got {_show(operand)}.")
                for index, item in enumerate(operand):
                    self.expression(item, (*here, index))
            elif key == "$not":
                self.expression(operand, here)
            elif key.startswith("$"):
                if key in FIELD_OPERATORS:
                    raise FilterError(
                        here, f'applies to a field, as in {{"alias": {{"{key}": ...}}}}; here it stands for a field.'
                    )
                raise FilterError(here, f"unknown operator; a filter combines fields with {', '.join(LOGICAL)}, $not.")
            else:
                self.field(key, here)
                self.condition(operand, here)

    def field(self, name: str, path: Path) -> None:
        if name.startswith(METADATA_PREFIX):
            if name == METADATA_PREFIX:
                raise FilterError(path, f"needs a metadata key after {METADATA_PREFIX!r}, e.g. artifact_metadata.acc.")
            return
        if name in self.fields:
            return
        allowed = ", ".join(self.fields)
        if name in FIELDS:
            raise FilterError(path, f"{self.event_type} events have no {name}; this filter may use {allowed}.")
        raise FilterError(path, f"unknown field; a filter may use {allowed}.")

    def condition(self, condition: object, path: Path) -> None:
        if not _is_operators(condition):
            return  # a plain value: $eq, and any JSON value can be compared
        assert isinstance(condition, dict)
        for name, operand in condition.items():
            self.operator(name, operand, (*path, name), condition)

    def operator(self, name: str, operand: object, path: Path, siblings: dict) -> None:
        if not name.startswith("$"):
            raise FilterError(path, "an object of operators may hold only operators ($eq, $gte, ...).")
        if name in ("$eq", "$ne", "$contains"):
            return
        if name in ("$in", "$nin"):
            if not isinstance(operand, list):
                raise FilterError(path, f"expects a list of values, got {_show(operand)}.")
        elif name in COMPARISONS:
            if not _is_number(operand):
                raise FilterError(path, f"expects a number, got {_show(operand)}.")
        elif name == "$exists":
            if not isinstance(operand, bool):
                raise FilterError(path, f"expects true or false, got {_show(operand)}.")
        elif name == "$regex":
            if not isinstance(operand, str):
                raise FilterError(path, f"expects a regular expression (a string), got {_show(operand)}.")
            self.patterns += 1
            if self.patterns > MAX_FILTER_PATTERNS:
                raise FilterError(path, f"a filter may hold at most {MAX_FILTER_PATTERNS} $regex.")
            try:
                alias_filter_validate(operand, flags=_flags(siblings))
            except AliasFilterError as exc:
                raise FilterError(path, str(exc)) from None
        elif name == "$options":
            if "$regex" not in siblings:
                raise FilterError(path, "goes with a $regex in the same object.")
            if not isinstance(operand, str) or any(c not in OPTION_FLAGS for c in operand):
                raise FilterError(path, f"expects some of the letters {', '.join(OPTION_FLAGS)}, got {_show(operand)}.")
        elif name == "$not":
            if not _is_operators(operand):
                example = '{"$regex": "^dev"}'
                raise FilterError(path, f"expects an object of operators, e.g. {example}, got {_show(operand)}.")
            self.condition(operand, path)
        elif name in LOGICAL:
            example = f'{{"{name}": [{{"alias": ...}}, ...]}}'
            raise FilterError(path, f"combines expressions, not a field's operators: write {example}.")
        else:
            raise FilterError(path, f"unknown operator; a field's operators are {', '.join(FIELD_OPERATORS)}.")


def _is_operators(condition: object) -> bool:
    """Whether a field's condition is an object of operators (rather than a plain object to compare with)."""
    return isinstance(condition, dict) and any(isinstance(k, str) and k.startswith("$") for k in condition)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _flags(condition: Mapping) -> str:
    options = condition.get("$options", "")
    # Letters that are not flags are refused when saved, under $options: never passed on to RE2.
    return "".join(sorted(set(options) & set(OPTION_FLAGS))) if isinstance(options, str) else ""


def filter_validate(expr: object, *, event_type: str | None = None) -> dict:
    """``expr`` (an object, or JSON text holding one; None or blank text for no filter) if it is a filter an
    automation on ``event_type`` may carry; otherwise FilterError naming the operator and path at fault. With
    ``event_type=None`` the fields of every event type are allowed."""
    if expr is None or (isinstance(expr, str) and not expr.strip()):
        return {}
    if isinstance(expr, str):
        expr = _parse(expr)
    if not isinstance(expr, dict):
        kind = {list: "a list", str: "a string", bool: "a boolean", type(None): "null"}.get(type(expr), _show(expr))
        raise FilterError((), f"A filter must be a JSON object, got {kind}.")
    _shape_check(expr)
    size = len(json.dumps(expr, ensure_ascii=False, separators=(",", ":")).encode("utf-8"))
    if size > MAX_FILTER_BYTES:
        raise FilterError((), f"The filter is larger than {MAX_FILTER_BYTES} bytes of JSON.")
    _Checker(event_type).expression(expr, ())
    return expr


# --- Evaluation ----------------------------------------------------------------------------------------------


def filter_matches(expr: Mapping, context: Mapping, *, event_type: str | None = None) -> bool:
    """Whether an event (of ``event_type``) with ``context`` passes the filter. No filter passes everything; a stored
    filter that is not valid for the event type (written around the services) passes nothing, as the system check
    ``automations.W001`` reports."""
    if not expr:
        return True
    problem = _stored_problem(json.dumps(expr, sort_keys=True), event_type)
    if problem:
        logger.warning("filter %s is not valid, treated as no match: %s", _show(expr), problem)
        return False
    return _matches(expr, context)


@functools.lru_cache(maxsize=1024)
def _stored_problem(canonical: str, event_type: str | None) -> str:
    """Why a stored filter (its canonical JSON) is not valid for the event type, or "": checked once per filter and
    type, not again at every event dispatch matches it against."""
    try:
        filter_validate(json.loads(canonical), event_type=event_type)
    except FilterError as exc:
        return str(exc)
    return ""


def _matches(expr: Mapping, context: Mapping) -> bool:
    for key, operand in expr.items():
        if key == "$and":
            holds = all(_matches(item, context) for item in operand)
        elif key == "$or":
            holds = any(_matches(item, context) for item in operand)
        elif key == "$nor":
            holds = not any(_matches(item, context) for item in operand)
        elif key == "$not":
            holds = not _matches(operand, context)
        else:
            holds = _holds(operand, _lookup(context, key))
        if not holds:
            return False
    return True


def _lookup(context: Mapping, field: str) -> Any:
    if field.startswith(METADATA_PREFIX):
        value = context.get("artifact_metadata")
        key = field[len(METADATA_PREFIX) :]
        if isinstance(value, dict) and key in value:
            return value[key]
        for step in key.split("."):
            if not isinstance(value, dict) or step not in value:
                return _MISSING
            value = value[step]
        return value
    variable = VARIABLES.get(field)
    return context.get(variable.key if variable is not None else field, _MISSING)


def _holds(condition: object, value: Any) -> bool:
    if not _is_operators(condition):
        return _equal(value, condition)
    assert isinstance(condition, dict)
    flags = _flags(condition)
    return all(_operator(name, operand, value, flags) for name, operand in condition.items())


def _operator(name: str, operand: Any, value: Any, flags: str) -> bool:
    if name == "$eq":
        return _equal(value, operand)
    if name == "$ne":
        return not _equal(value, operand)
    if name == "$in":
        return any(_equal(value, item) for item in operand)
    if name == "$nin":
        return not any(_equal(value, item) for item in operand)
    if name == "$exists":
        return (value is not _MISSING) is operand
    if name == "$regex":
        return isinstance(value, str) and pattern_search(operand, value, flags=flags)
    if name == "$options":
        return True  # read with its $regex
    if name == "$contains":
        if isinstance(value, str):
            return isinstance(operand, str) and operand in value
        return isinstance(value, list) and any(_same(item, operand) for item in value)
    if name in COMPARISONS:
        return _is_number(value) and COMPARISONS[name](value, operand)
    if name == "$not":
        return not _holds(operand, value)
    raise AssertionError(name)  # validation lets no other operator through


def _equal(value: Any, operand: Any) -> bool:
    """``$eq``: as in MongoDB, a missing field equals null."""
    if value is _MISSING:
        return operand is None
    return _same(value, operand)


def _same(a: Any, b: Any) -> bool:
    """JSON equality in which a boolean equals only a boolean; it recurses only as deep as both values go, so no
    deeper than the filter's operand."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a is b
    if _is_number(a) and _is_number(b):
        return a == b
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b
