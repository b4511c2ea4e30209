"""Payload templates: validation when saved, and JSON-safe rendering when sent. The variables come from the event
registry (``registry.events``).

A template is a JSON object whose string values may hold ``${name}`` placeholders. Rendering works on the parsed
structure and serialises it once with ``json.dumps``, so no value (an author named ``a"b``, a metadata string with
newlines) can break the document: substitution is JSON-safe by construction, never by escaping text.

Rules:

- **Where**: placeholders are substituted in string *values* at any depth. Keys are literal text: a placeholder in a
  key is refused (the shape of the document would then depend on the event), so receivers always see fixed keys.
- **Escape**: ``$${`` always stands for a literal ``${``, in values and keys: ``"$${event_type}"`` renders as
  ``"${event_type}"``. A ``$`` not followed by ``{`` is plain text.
- **Names**: a variable of the event registry's table (``registry.events.VARIABLES``); ``artifact_metadata.KEY``
  for the top-level metadata key ``KEY`` (taken whole, dots included: ``artifact_metadata.a.b`` reads key ``"a.b"``;
  it may hold any character but ``{`` and ``}``); otherwise the name of a team secret (letters, digits, ``_``).
  Built-in variables win over a secret of the same name.
- **Exact placeholder**: a string value that is one placeholder and nothing else (``"${artifact_metadata.params}"``)
  becomes the variable's native JSON value (number, object, list, boolean, null, string).
- **Embedded placeholder**: inside a longer string, a non-string value is written as its compact JSON text
  (``"acc: ${artifact_metadata.acc}"`` → ``"acc: 0.93"``; ``true``, ``null``, ``{"a":1}``).
- **Missing metadata key**: renders as ``""`` inside a longer string and as ``null`` as an exact placeholder, so a
  version logged without that key still delivers (validation cannot know future metadata).
- **Secrets**: resolved only by :func:`render` with a ``secrets`` mapping; with ``secrets=None`` they stay as the
  literal ``${NAME}`` (what is shown and stored). No error message ever contains a secret's value.
"""

from __future__ import annotations

import copy
import functools
import json
import math
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from registry.events import METADATA_PREFIX, VARIABLES, event_type_get, event_types

METADATA_VARIABLE = METADATA_PREFIX + "KEY"

_IDENTIFIER_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_METADATA_KEY_RE = re.compile(r"[^{}]+")
_SNIPPET_CHARS = 40
_DUMPS = {"ensure_ascii": False, "separators": (",", ":"), "allow_nan": False}


class TemplateError(Exception):
    """A template that cannot be parsed, validated or rendered; ``variable`` names the culprit when there is one."""

    def __init__(self, message: str, *, variable: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.variable = variable

    def __str__(self) -> str:
        return self.message


# --- The variable table per event type ----------------------------------------------------------------------


def event_type_variables(event_type: str) -> tuple[str, ...]:
    """The built-in variables an event type provides (``artifact_metadata.KEY`` aside, which all provide)."""
    return tuple(v.name for v in event_type_get(event_type).variables if v.name != METADATA_VARIABLE)


def variables_by_event_type() -> dict[str, tuple[str, ...]]:
    """Event type → its built-in variables, read from the event registry so a new type needs no change here."""
    return {t.name: event_type_variables(t.name) for t in event_types()}


def _builtin_variables() -> set[str]:
    return set(VARIABLES) - {METADATA_VARIABLE}


# --- Parsing placeholders -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Placeholder:
    name: str


def _snippet(text: str) -> str:
    return text if len(text) <= _SNIPPET_CHARS else text[:_SNIPPET_CHARS] + "…"


def _tokens(text: str, *, strict: bool = True) -> tuple[str | _Placeholder, ...]:
    """Split a string into literal text and placeholders, resolving ``$${`` escapes.

    ``strict=False`` keeps malformed placeholders (``${}``, an unclosed ``${``) as text instead of raising. Short
    strings are split once per process: every delivery of an automation renders the same template's strings.
    """
    if len(text) <= _CACHED_CHARS:
        return _tokens_cached(text, strict)
    return _split(text, strict)


_CACHED_CHARS = 256


@functools.lru_cache(maxsize=2048)
def _tokens_cached(text: str, strict: bool) -> tuple[str | _Placeholder, ...]:
    return _split(text, strict)


def _split(text: str, strict: bool) -> tuple[str | _Placeholder, ...]:
    parts: list[str | _Placeholder] = []
    literal: list[str] = []
    i = 0
    while (j := text.find("$", i)) >= 0:
        literal.append(text[i:j])
        if text.startswith("$${", j):
            literal.append("${")
            i = j + 3
            continue
        if not text.startswith("${", j):
            literal.append("$")
            i = j + 1
            continue
        end = text.find("}", j + 2)
        if end < 0:
            if strict:
                raise TemplateError(
                    f"Unclosed placeholder {_snippet(text[j:])!r}: write ${{name}}, or $${{ for a literal ${{.",
                    variable=text[j + 2 :] or None,
                )
            literal.append(text[j:])
            i = len(text)
            break
        if end == j + 2:
            if strict:
                raise TemplateError("Empty placeholder ${}: put a variable name between the braces.")
            literal.append("${}")
        else:
            if text_before := "".join(literal):
                parts.append(text_before)
            literal = []
            parts.append(_Placeholder(text[j + 2 : end]))
        i = end + 1
    literal.append(text[i:])
    if tail := "".join(literal):
        parts.append(tail)
    return tuple(parts)


def _walk_strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _walk_strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _walk_strings(item)


def _walk_keys(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from _walk_keys(item)
    elif isinstance(value, list):
        for item in value:
            yield from _walk_keys(item)


# --- Parse and validate (when a template is saved) ----------------------------------------------------------


def _reject_constant(name: str) -> None:
    raise TemplateError(f"Invalid JSON: {name} is not a JSON value.")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise TemplateError(f"Invalid JSON: the key {key!r} appears twice in the same object.")
        result[key] = value
    return result


def _check_json_types(value: Any, path: str = "$") -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise TemplateError(f"Keys must be strings; {path} has the key {key!r}.")
            _check_json_types(item, f"{path}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _check_json_types(item, f"{path}[{index}]")
    elif isinstance(value, float) and not math.isfinite(value):
        raise TemplateError(f"{path} is not a finite number.")
    elif value is not None and not isinstance(value, str | int | float | bool):
        raise TemplateError(f"{path} is a {type(value).__name__}, which is not a JSON value.")


def template_parse(payload: dict | str) -> dict:
    """Accept a JSON object, or a string holding one (the API takes both), and return it as a dict."""
    if isinstance(payload, str):
        try:
            parsed = json.loads(payload, object_pairs_hook=_unique_keys, parse_constant=_reject_constant)
        except json.JSONDecodeError as exc:
            raise TemplateError(f"Invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}.") from None
        if not isinstance(parsed, dict):
            raise TemplateError(f"The payload must be a JSON object, not a JSON {_json_kind(parsed)}.")
        return parsed
    if isinstance(payload, dict):
        _check_json_types(payload)
        return payload
    raise TemplateError(f"The payload must be a JSON object (or a string holding one), not a {_json_kind(payload)}.")


def _json_kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, list):
        return "array"
    if isinstance(value, str):
        return "string"
    return type(value).__name__


def template_variables(template: Any) -> list[str]:
    """Every placeholder name used in the template's string values, once each, in order of first use.

    Tolerant of malformed placeholders (it is used to find what a stored template refers to, e.g. which secrets).
    """
    names: dict[str, None] = {}
    for text in _walk_strings(template):
        for part in _tokens(text, strict=False):
            if isinstance(part, _Placeholder):
                names.setdefault(part.name, None)
    return list(names)


def _check_name(name: str) -> None:
    """Raise unless ``name`` is well formed: an identifier, or ``artifact_metadata.`` and a key."""
    if name.startswith(METADATA_PREFIX):
        if not _METADATA_KEY_RE.fullmatch(name[len(METADATA_PREFIX) :]):
            raise TemplateError(
                f"${{{_snippet(name)}}} needs a metadata key (without braces) after {METADATA_PREFIX!r}, "
                "e.g. ${artifact_metadata.acc}.",
                variable=name,
            )
        return
    if name == METADATA_PREFIX.rstrip("."):
        raise TemplateError(
            "${artifact_metadata} needs a key: use ${artifact_metadata.KEY} for one top-level metadata key.",
            variable=name,
        )
    if not _IDENTIFIER_RE.fullmatch(name):
        raise TemplateError(
            f"${{{_snippet(name)}}} is not a valid variable name (letters, digits and _; "
            "or artifact_metadata.KEY). Write $${ for a literal ${.",
            variable=name,
        )


def template_validate(template: dict, *, event_type: str | None, secret_names: Iterable[str]) -> None:
    """Refuse a template that could not render for this event type, naming the offending variable.

    ``event_type=None`` (e.g. testing a webhook) accepts the variables of every event type.
    """
    if not isinstance(template, dict):
        raise TemplateError(f"The payload must be a JSON object, not a JSON {_json_kind(template)}.")
    if event_type is not None:
        try:
            provided = set(event_type_variables(event_type))
        except KeyError:
            raise TemplateError(f"Unknown event type {event_type!r}.") from None
    else:
        provided = _builtin_variables()
    secrets = set(secret_names)
    builtins = _builtin_variables()

    for key in _walk_keys(template):
        for part in _tokens(key):
            if isinstance(part, _Placeholder):
                raise TemplateError(
                    f"The key {_snippet(key)!r} holds ${{{_snippet(part.name)}}}: variables go in values, not keys "
                    "(write $${ for a literal ${ in a key).",
                    variable=part.name,
                )

    for text in _walk_strings(template):
        for part in _tokens(text):
            if not isinstance(part, _Placeholder):
                continue
            name = part.name
            _check_name(name)
            if name.startswith(METADATA_PREFIX) or name in provided:
                continue
            if name in builtins:
                providers = [t for t, names in variables_by_event_type().items() if name in names]
                raise TemplateError(
                    f"${{{name}}} is only available for {' and '.join(providers)} automations; "
                    f"this automation fires on {event_type}.",
                    variable=name,
                )
            if name in secrets:
                continue
            ordered = [n for n in VARIABLES if n in provided] + sorted(provided - set(VARIABLES))
            known = ", ".join(f"${{{n}}}" for n in [*ordered, METADATA_VARIABLE])
            raise TemplateError(
                f"Unknown variable ${{{name}}}: use one of {known}, or the name of a team secret.",
                variable=name,
            )


# --- Render (when a request is sent or shown) ---------------------------------------------------------------


_MASKED = object()  # a secret left as ${NAME} (secrets=None)
_ABSENT = object()  # a metadata key the artifact version does not have


def _lookup(name: str, *, context: Mapping[str, Any], secrets: Mapping[str, str] | None) -> Any:
    _check_name(name)
    if name.startswith(METADATA_PREFIX):
        metadata = context.get("artifact_metadata")
        if not isinstance(metadata, Mapping):
            return _ABSENT
        return metadata.get(name[len(METADATA_PREFIX) :], _ABSENT)
    if name in _builtin_variables():
        if name not in context:
            raise TemplateError(f"${{{name}}} is not available for this event.", variable=name)
        return context[name]
    if secrets is None:
        return _MASKED
    if name not in secrets:
        raise TemplateError(f"The secret ${{{name}}} is not available (it may have been deleted).", variable=name)
    return secrets[name]


def _as_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, **_DUMPS)
    except (TypeError, ValueError):
        raise TemplateError("A variable's value cannot be written as JSON (e.g. NaN or infinity).") from None


def _render_string(text: str, *, context: Mapping[str, Any], secrets: Mapping[str, str] | None) -> Any:
    parts = _tokens(text)
    if len(parts) == 1 and isinstance(parts[0], _Placeholder):
        name = parts[0].name
        value = _lookup(name, context=context, secrets=secrets)
        if value is _MASKED:
            return "${" + name + "}"
        return None if value is _ABSENT else copy.deepcopy(value)
    out: list[str] = []
    for part in parts:
        if isinstance(part, str):
            out.append(part)
            continue
        value = _lookup(part.name, context=context, secrets=secrets)
        if value is _MASKED:
            out.append("${" + part.name + "}")
        elif value is not _ABSENT:
            out.append(_as_text(value))
    return "".join(out)


def _render_key(key: str) -> str:
    parts = _tokens(key)
    for part in parts:
        if isinstance(part, _Placeholder):
            raise TemplateError(
                f"The key {_snippet(key)!r} holds a variable: variables go in values.", variable=part.name
            )
    return "".join(parts)  # type: ignore[arg-type]


def _render_value(value: Any, *, context: Mapping[str, Any], secrets: Mapping[str, str] | None) -> Any:
    if isinstance(value, str):
        return _render_string(value, context=context, secrets=secrets)
    if isinstance(value, dict):
        return {_render_key(k): _render_value(v, context=context, secrets=secrets) for k, v in value.items()}
    if isinstance(value, list):
        return [_render_value(item, context=context, secrets=secrets) for item in value]
    return value


def render(template: dict, *, context: Mapping[str, Any], secrets: Mapping[str, str] | None) -> bytes:
    """Render a template for one event as compact UTF-8 JSON: exactly the bytes that are signed and sent.

    ``context`` is the event's variable values (``registry.outbox`` builds it). With ``secrets=None`` secret
    placeholders stay as ``${NAME}``; with a mapping each must be present in it.
    """
    if not isinstance(template, dict):
        raise TemplateError(f"The payload must be a JSON object, not a JSON {_json_kind(template)}.")
    document = _render_value(template, context=context, secrets=secrets)
    try:
        return json.dumps(document, **_DUMPS).encode("utf-8")
    except ValueError:
        raise TemplateError("The rendered payload holds a number that JSON cannot express (NaN or infinity).") from None
    except UnicodeEncodeError:
        raise TemplateError("The rendered payload holds text that is not valid Unicode (a lone surrogate).") from None


def overrides_render(template: dict, *, context: Mapping[str, Any]) -> dict:
    """A launch automation's overrides for an event, as its queue item stores them: no secrets (they would be stored
    in clear; saving refuses them)."""
    return json.loads(render(template, context=context, secrets={}))


def render_preview(template: dict, *, context: Mapping[str, Any]) -> str:
    """The payload as it would be sent, with every secret shown as ``${NAME}``: safe to display and store."""
    return render(template, context=context, secrets=None).decode("utf-8")
