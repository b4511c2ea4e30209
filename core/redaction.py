"""Secret values as text may carry them, and their removal: one rule for what deliveries store (an endpoint that
echoes a secret back), what alerts say and what error reports send."""

from __future__ import annotations

import base64
import functools
import json
from collections.abc import Callable, Mapping
from urllib.parse import quote, quote_plus

# Shortest base64 run, in characters, taken as a value's own inside a larger base64 text: shorter runs turn up in
# ordinary base64 by chance.
MIN_INSIDE = 8


def secret_forms(value: str) -> set[str]:
    """``value`` as text may carry it: raw, JSON-escaped (ASCII-only or not, ``/`` escaped or not), URL-encoded
    (``quote`` and ``quote_plus``), base64 (standard and URL-safe, with and without padding), and base64 inside a
    larger base64 text (a token in an encoded JSON document or a Basic credential)."""
    if not value:
        return set()
    raw = value.encode()
    escaped = json.dumps(value)[1:-1]
    padded = {base64.b64encode(raw).decode(), base64.urlsafe_b64encode(raw).decode()}
    inside = {
        run
        for text in {raw, escaped.encode()}
        for encode in (base64.b64encode, base64.urlsafe_b64encode)
        for shift in range(3)
        if len(run := _base64_inside(text, shift, encode)) >= MIN_INSIDE
    }
    return {
        *padded,
        *(form.rstrip("=") for form in padded),
        *inside,
        value,
        escaped,
        escaped.replace("/", "\\/"),
        json.dumps(value, ensure_ascii=False)[1:-1],
        quote(value),
        quote(value, safe=""),
        quote_plus(value),
    }


def _base64_inside(raw: bytes, shift: int, encode: Callable[[bytes], bytes]) -> str:
    """The base64 characters that ``raw``'s bytes alone decide when it starts ``shift`` bytes into a 3-byte group
    of a larger encoded text: the groups wholly inside it. Any text holding ``raw`` at that offset holds them."""
    encoded = encode(b"\0" * shift + raw).decode()
    first = -(-shift // 3)  # the first group with none of the bytes before
    end = (shift + len(raw)) // 3  # groups before this one hold none of the bytes after
    return encoded[first * 4 : end * 4]


def redact(text: str, secrets: Mapping[str, str]) -> str:
    """``text`` with every form of each secret replaced by ``${NAME}``. Longest forms first, so that a secret
    containing another is replaced whole."""
    if not text or not secrets:
        return text
    for form, placeholder in _replacements(tuple(sorted(secrets.items()))):
        if form in text:
            text = text.replace(form, placeholder)
    return text


@functools.lru_cache(maxsize=64)
def _replacements(secrets: tuple[tuple[str, str], ...]) -> tuple[tuple[str, str], ...]:
    """The forms of a set of secrets, longest first, with their placeholders. Kept for the next texts: a batch of
    deliveries scrubs every answer and header with the same few secrets."""
    forms = ((form, "${" + name + "}") for name, value in secrets for form in secret_forms(value))
    return tuple(sorted(forms, key=lambda pair: -len(pair[0])))
