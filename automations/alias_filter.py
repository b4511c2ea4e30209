"""Alias filters and the ``$regex`` of filter expressions: RE2 regular expressions that match anywhere in the value.

As in W&B, a pattern matches when it matches somewhere in the alias: ``^prod`` matches ``production`` and ``prod``
matches ``pre-prod``; ``\\A(?:prod)\\z`` (or ``^prod$``) matches ``prod`` alone. Filters saved when an alias filter had
to match the whole alias were rewritten to that anchored form (migration ``automations.0007``), so they match what
they matched before; a pattern anchored that way may be longer than MAX_PATTERN_LENGTH by the anchors.

Team admins write these patterns and dispatch runs them for every automation on every event, so matching must
never depend on how the pattern is written. RE2 matches in time linear in the alias whatever the pattern (no
backtracking: ``(b|bb)+c`` and ``(.*b){20}c`` are as quick as ``production``). The price is RE2's syntax: features
that need backtracking (backreferences, lookaround, atomic groups, possessive quantifiers) do not exist there, and a
pattern using them is refused when saved, with the reason.
"""

from __future__ import annotations

import functools
import logging
import re

import re2

logger = logging.getLogger(__name__)

MAX_PATTERN_LENGTH = 256
# A pattern p anchored to the whole value: what whole-match filters were migrated to.
ANCHOR_START, ANCHOR_END = "\\A(?:", ")\\z"
# Automation.alias_regex's max_length: room for the anchors and for the \E that ends a pattern's unterminated \Q.
MAX_ANCHORED_LENGTH = MAX_PATTERN_LENGTH + len(ANCHOR_START) + len("\\E") + len(ANCHOR_END)
# What RE2 may spend on one pattern: its compiled program gets about two thirds, its lazily built DFA the rest (when
# the DFA fills up RE2 falls back to its NFA, still linear). Ordinary filters use a few kilobytes; the limit refuses
# the few short patterns that expand to huge programs, such as \pL{1000}.
MAX_PATTERN_MEMORY = 1 << 20
# Distinct filters in use at once; each compiled pattern holds at most MAX_PATTERN_MEMORY.
COMPILED_CACHE_SIZE = 256


class AliasFilterError(ValueError):
    pass


def _options() -> re2.Options:
    options = re2.Options()
    options.log_errors = False  # a refused pattern is reported to whoever wrote it, not written to stderr
    options.max_mem = MAX_PATTERN_MEMORY
    options.never_capture = True  # only whether it matches counts: without groups RE2 can always use its DFA
    return options


_OPTIONS = _options()

_NOT_IN_RE2 = "RE2, the syntax of alias filters and $regex, does not support"
# RE2's error text (its start) -> what the pattern asked for, in words.
_OPERATORS = {
    "(?=": "lookahead assertions ((?=...), (?!...))",
    "(?!": "lookahead assertions ((?=...), (?!...))",
    "(?<=": "lookbehind assertions ((?<=...), (?<!...))",
    "(?<!": "lookbehind assertions ((?<=...), (?<!...))",
    "(?>": "atomic groups ((?>...))",
    "(?(": "conditional groups ((?(1)...|...))",
    "(?#": "inline comments ((?#...))",
    "(?|": "branch reset groups ((?|...))",
}


def _reason(pattern: str, detail: str) -> str:
    """The reason RE2 refused ``pattern``, in words, with RE2's own text ``detail``."""
    said = f"(RE2: {detail})"
    escape = re.fullmatch(r"invalid escape sequence: \\(.)", detail)
    if escape and escape.group(1) in "123456789":
        return f"{_NOT_IN_RE2} backreferences (\\{escape.group(1)}) {said}."
    if escape and escape.group(1) == "k":
        return f"{_NOT_IN_RE2} named backreferences (\\k<name>) {said}."
    if escape:
        return f"{_NOT_IN_RE2} the escape \\{escape.group(1)} {said}."
    if detail.startswith("invalid perl operator: "):
        operator = detail.removeprefix("invalid perl operator: ")
        if operator in _OPERATORS:
            return f"{_NOT_IN_RE2} {_OPERATORS[operator]} {said}."
        if operator == "(?P" and "(?P=" in pattern:
            return f"{_NOT_IN_RE2} named backreferences ((?P=name)) {said}."
        if operator == "(?P" and "(?P>" in pattern:
            return f"{_NOT_IN_RE2} recursion ((?P>name)) {said}."
        return f"{_NOT_IN_RE2} the group {operator}...); its inline flags are i, m, s and U {said}."
    if detail.startswith("bad repetition operator: "):
        return f"{_NOT_IN_RE2} possessive quantifiers (a++, a*+) or repeating a repetition (a**) {said}."
    if detail.startswith("invalid repetition size"):
        return f"a repetition count may be at most 1000 {said}."
    if detail.startswith("pattern too large"):
        return (
            f"it compiles to more than RE2's {MAX_PATTERN_MEMORY / 2**20:g} MiB limit for one pattern; use fewer or "
            f"smaller repetitions, or narrower classes than \\pL {said}."
        )
    return f"{detail}."


def _length_ok(pattern: str) -> bool:
    if len(pattern) <= MAX_PATTERN_LENGTH:
        return True
    # A whole-match pattern of the limit's length in the anchored form, which may need a \E to end a \Q quote first.
    if len(pattern) > MAX_ANCHORED_LENGTH or not (pattern.startswith(ANCHOR_START) and pattern.endswith(ANCHOR_END)):
        return False
    return len(pattern[len(ANCHOR_START) : -len(ANCHOR_END)].removesuffix("\\E")) <= MAX_PATTERN_LENGTH


# Mongo's $options letters, as RE2's inline flags: case-insensitive, ^ and $ at line breaks, . matches \n.
OPTION_FLAGS = "ims"


@functools.lru_cache(maxsize=COMPILED_CACHE_SIZE)
def _compiled(pattern: str, flags: str = "") -> re2._Regexp:
    """The compiled pattern (with RE2 inline ``flags``, a subset of OPTION_FLAGS); raises AliasFilterError with the
    reason when there is none."""
    if not _length_ok(pattern):
        raise AliasFilterError(
            f"A regular expression must be at most {MAX_PATTERN_LENGTH} characters (not counting "
            f"{ANCHOR_START}...{ANCHOR_END} around the whole of it)."
        )
    if "\x00" in pattern:
        raise AliasFilterError("A regular expression may not contain the NUL character (\\u0000).")
    try:
        return re2.compile(f"(?{flags}){pattern}" if flags else pattern, options=_OPTIONS)
    except UnicodeEncodeError as exc:  # a lone surrogate, which a JSON string can carry
        raise AliasFilterError("Invalid regular expression: it is not valid Unicode text.") from exc
    except re2.error as exc:
        detail = exc.args[0] if exc.args else ""
        if isinstance(detail, bytes):
            detail = detail.decode("utf-8", "replace")
        raise AliasFilterError(f"Invalid regular expression: {_reason(pattern, str(detail))}") from exc


def alias_filter_validate(pattern: str, *, flags: str = "") -> str:
    """``pattern`` if RE2 compiles it within the limits; otherwise AliasFilterError saying why not."""
    _compiled(pattern, flags)
    return pattern


def pattern_search(pattern: str, text: str, *, flags: str = "") -> bool:
    """Whether ``pattern`` (already validated) matches somewhere in ``text``; raises AliasFilterError if it does not
    compile."""
    return _compiled(pattern, flags).search(text) is not None


def alias_filter_matches(pattern: str, alias: str) -> bool:
    """Whether ``pattern`` matches somewhere in the alias. A stored pattern RE2 cannot compile matches nothing (the
    system check ``automations.W001`` lists such automations)."""
    try:
        return pattern_search(pattern, alias)
    except AliasFilterError as exc:
        logger.warning("alias filter %r does not compile, treated as no match: %s", pattern, exc)
        return False
