"""Alias filters match whole aliases and can never stall dispatch."""

from __future__ import annotations

import time

import pytest

from automations.alias_filter import AliasFilterError, alias_filter_matches, alias_filter_validate


@pytest.mark.parametrize(
    ("pattern", "alias", "expected"),
    [
        ("production", "production", True),
        ("prod", "production", False),  # the whole alias must match
        ("prod.*", "production", True),
        ("staging|production", "staging", True),
        ("v\\d+-rc", "v12-rc", True),
    ],
)
def test_the_filter_matches_the_whole_alias(pattern, alias, expected):
    assert alias_filter_matches(alias_filter_validate(pattern), alias) is expected


@pytest.mark.parametrize("pattern", ["(a|aa)+b", "(a|a)+b", "(0|00)+x"])
def test_a_catastrophically_backtracking_pattern_is_refused_when_saved(pattern):
    with pytest.raises(AliasFilterError, match="too long to match"):
        alias_filter_validate(pattern)


def test_an_invalid_pattern_is_refused_with_the_reason():
    with pytest.raises(AliasFilterError, match="Invalid regular expression"):
        alias_filter_validate("prod(")


def test_a_match_that_runs_out_of_time_counts_as_no_match_and_returns_quickly():
    started = time.monotonic()
    assert alias_filter_matches("(a|aa)+b", "a" * 64) is False
    assert time.monotonic() - started < 1
