"""The shared walk over a JSON value that finds what jsonb cannot store (core/json_checks.py)."""

from __future__ import annotations

import pytest

from core.json_checks import json_problem


@pytest.mark.parametrize(
    "value",
    [{}, [], "text", 3, None, {"a": [1, "b", {"c": None}]}, [[[[]]]]],
)
def test_storable_values_have_no_problem(value) -> None:
    assert json_problem(value) is None
    assert json_problem(value, max_depth=4) is None


@pytest.mark.parametrize(
    "value",
    ["a\x00b", {"a\x00": 1}, {"a": {"b": ["ok", "c\x00"]}}, [{"k": [{"\x00": "v"}]}]],
)
def test_a_nul_in_any_string_or_key_is_found(value) -> None:
    assert json_problem(value) == "nul"


def test_depth_counts_containers_only_and_only_with_a_limit() -> None:
    three = {"a": [{"b": "a string one level further does not count"}]}
    assert json_problem(three, max_depth=3) is None
    assert json_problem(three, max_depth=2) == "depth"
    assert json_problem(three) is None


def test_a_value_far_deeper_than_the_recursion_limit_is_walked() -> None:
    value: object = "end\x00"
    for _ in range(100_000):
        value = [value]
    assert json_problem(value) == "nul"
    assert json_problem(value, max_depth=64) == "depth"
