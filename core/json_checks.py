"""Checks on a parsed JSON value before it is stored in a PostgreSQL ``jsonb`` column.

PostgreSQL cannot store the NUL character (U+0000) in ``jsonb`` or text: an insert holding one fails with a
database error. Callers refuse such a value up front instead, each with its own message and field.
"""

from __future__ import annotations

from typing import Literal

from .errors import ApplicationError

JsonProblem = Literal["nul", "depth"]


def json_problem(value: object, *, max_depth: int | None = None) -> JsonProblem | None:
    """The first thing that makes ``value`` unfit to store, or None.

    ``"nul"``: a string or an object key holds the NUL character, which jsonb refuses. ``"depth"`` (only with
    ``max_depth``): an object or array is nested deeper than ``max_depth`` levels, ``value`` itself being level 1.
    The walk keeps its own stack rather than recursing, so a deeply nested value cannot raise RecursionError.
    """
    stack: list[tuple[object, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return "nul"
        elif isinstance(item, dict | list):
            if max_depth is not None and depth > max_depth:
                return "depth"
            children = [*item.keys(), *item.values()] if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
    return None


def json_nul_refuse(value: object, *, field: str, what: str = "Text") -> None:
    """Refuse ``value`` (naming ``field``) when a string or key in it holds the NUL character."""
    if json_problem(value) == "nul":
        raise ApplicationError(f"{what} may not contain the NUL character (\\u0000).", field=field)
