"""What the fault tests need beyond the harness: the one line of figures each prints, and the malformed-request
storm (requests that must each get a 4xx and write nothing)."""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import requests

from harness.api import Api


@dataclass
class Figures:
    """The one-line result every fault test prints."""

    fault: str
    events: int
    delivered: int
    expected: int
    duplicated: int
    recover_seconds: float | None
    note: str = ""
    exits: list[str] = field(default_factory=list)

    @property
    def lost(self) -> int:
        return self.expected - self.delivered

    def line(self) -> str:
        recover = "-" if self.recover_seconds is None else f"{self.recover_seconds:.1f}s"
        notes = [self.note] if self.note else []
        if self.exits:
            notes.append(f"process exits, restarted by the supervisor: {', '.join(self.exits)}")
        return (
            f"FAULT {self.fault}: events={self.events} delivered={self.delivered}/{self.expected} lost={self.lost} "
            f"duplicated={self.duplicated} recover={recover}" + (f" ({'; '.join(notes)})" if notes else "")
        )


# --- The malformed-request storm --------------------------------------------------------------------------


@dataclass
class Shot:
    label: str
    method: str
    path: str
    body: bytes
    content_type: str = "application/json"


def _wrong_value(schema: dict, components: dict) -> object:
    """A value of the wrong JSON type for ``schema``: an object where a scalar or an array belongs, a number where
    an object belongs. None for a property of no declared type (a JSONField takes anything)."""
    while "$ref" in schema:
        schema = components[schema["$ref"].rsplit("/", 1)[-1]]
    if schema.get("type") == "object":
        return 12345
    if not schema or set(schema) <= {"description", "default", "title"}:
        return None
    return {"wrong": ["type", 1, None]}


def storm(openapi: dict, paths: dict[str, str], *, seed: int, huge_bytes: int) -> list[Shot]:
    """Malformed requests for every write operation of the schema: non-object documents, every field of the wrong
    type, broken JSON and UTF-8, deep nesting, non-finite numbers, lone surrogates, bodies over the size limit,
    and the wrong content type. None of them is a valid request, so each must get a 4xx and write nothing."""
    import random

    rng = random.Random(seed)
    components = openapi.get("components", {}).get("schemas", {})
    shots: list[Shot] = []
    for template, operations in openapi["paths"].items():
        path = template
        for name, value in paths.items():
            path = path.replace("{" + name + "}", value)
        path = re.sub(r"\{[a-z_]+\}", lambda _: str(uuid.uuid4()), path)  # ids of nothing: 404
        for method, operation in operations.items():
            if method not in ("post", "put", "patch"):
                continue
            schema = operation.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema", {})
            while "$ref" in schema:
                schema = components[schema["$ref"].rsplit("/", 1)[-1]]
            props = schema.get("properties", {})
            required = schema.get("required", [])
            wrong = {k: v for k, v in ((k, _wrong_value(p, components)) for k, p in props.items()) if v is not None}
            field_name = (required or list(props) or ["name"])[0]
            label = f"{method.upper()} {template}"

            def shot(kind: str, body: bytes, content_type: str = "application/json") -> None:
                shots.append(Shot(f"{label} [{kind}]", method.upper(), path, body, content_type))  # noqa: B023

            if props:  # an operation without a body would be a valid request with any body
                shot("wrong types", json.dumps(wrong).encode())
                junk = {_junk_key(rng): _junk(rng, 4) for _ in range(rng.randint(1, 6))}
                shot("random keys, wrong types", json.dumps({**junk, **wrong}).encode())
                if required:
                    only_required = {k: wrong.get(k, 12345) for k in required}
                    shot("required of the wrong type", json.dumps(only_required).encode())
                shot("padded to 1.5 MB, wrong types", json.dumps({**wrong, "padding": "x" * 1_500_000}).encode())
            shot("document not an object", json.dumps(rng.choice([[], [1, "a"], "text", 42, None, True])).encode())
            shot("truncated JSON", b'{"' + field_name.encode() + b'": "unfinished')
            shot("invalid UTF-8", b'{"' + field_name.encode() + b'": "\xff\xfe\xfd"}')
            shot("nested 100 deep", ('{"' + field_name + '": ' + "[" * 100 + "]" * 100 + "}").encode())
            shot("nested 100,000 deep", b'{"a":' * 100_000 + b"1" + b"}" * 100_000)
            shot("NaN", b'{"' + field_name.encode() + b'": NaN}')
            shot("lone surrogate", b'{"' + field_name.encode() + b'": "\\ud800"}')
            shot("over the size limit", b'{"' + field_name.encode() + b'": "' + b"x" * huge_bytes + b'"}')
            shot("text/plain", json.dumps(wrong or {"x": 1}).encode(), "text/plain")
            shot("form-encoded", b"name=x&url=y", "application/x-www-form-urlencoded")
    return shots


def query_storm(openapi: dict, paths: dict[str, str]) -> list[Shot]:
    """Garbage in the query string of every listing: numbers past 64 bits, negative, not numbers, repeated."""
    shots = []
    for template, operations in openapi["paths"].items():
        if "get" not in operations or not any(
            p.get("name") == "limit" for p in operations["get"].get("parameters", [])
        ):
            continue
        path = template
        for name, value in paths.items():
            path = path.replace("{" + name + "}", value)
        path = re.sub(r"\{[a-z_]+\}", lambda _: str(uuid.uuid4()), path)
        for query in ("limit=99999999999999999999999", "offset=99999999999999999999999", "limit=-1&offset=-5",
                      "limit=abc&offset=1e9", "limit=1&limit=2&offset=%00", "limit=1.5"):  # fmt: skip
            shots.append(Shot(f"GET {template}?{query}", "GET", f"{path}?{query}", b""))
    return shots


@dataclass
class ServerError:
    request: str  # method and URL, query string included
    cause: str  # the last exception line of Django's traceback


def server_errors(web_log: str) -> list[ServerError]:
    """Every 5xx the web process answered (gunicorn's access log), each with the exception Django logged for it;
    a 5xx Django did not log (a worker killed on timeout) is listed too."""
    answered = re.findall(r'"([A-Z]+) (\S+) HTTP/[\d.]+" (5\d\d) ', web_log)
    causes: dict[str, list[str]] = {}
    for record in re.split(r"^\S+ \S+ ERROR django\.request Internal Server Error: ", web_log, flags=re.M)[1:]:
        path, _, rest = record.partition("\n")
        traceback = re.split(r"^(?:\d{4}-\d\d-\d\d |127\.0\.0\.1 - - \[)", rest, maxsplit=1, flags=re.M)[0]
        lines = [line for line in traceback.splitlines() if re.match(r"^[\w.]+(Error|Exception)\w*: ", line)]
        causes.setdefault(path.strip(), []).append(lines[-1] if lines else traceback.strip()[-300:])
    found = []
    for method, url, status in answered:
        logged = causes.get(urlsplit(url).path) or [f"HTTP {status}, no error logged by Django"]
        found.append(ServerError(f"{method} {url}", logged.pop(0) if len(logged) > 1 else logged[0]))
    return found


def _junk_key(rng) -> str:
    return "".join(rng.choice("abcdefghijklmnopqrstuvwxyz_ü✓") for _ in range(rng.randint(1, 12)))


def _junk(rng, depth: int) -> object:
    kind = rng.randint(0, 6 if depth else 3)
    if kind == 0:
        return rng.randint(-(2**70), 2**70)
    if kind == 1:
        return rng.random() * 10 ** rng.randint(-30, 300)
    if kind == 2:
        return "".join(chr(rng.randint(1, 0xD7FF)) for _ in range(rng.randint(0, 40)))
    if kind == 3:
        return rng.choice([None, True, False])
    if kind in (4, 5):
        return [_junk(rng, depth - 1) for _ in range(rng.randint(0, 5))]
    return {_junk_key(rng): _junk(rng, depth - 1) for _ in range(rng.randint(0, 5))}


def fire(api: Api, shot: Shot) -> int:
    """Send one shot; the status, or 0 when the connection broke before an answer could be read."""
    try:
        response = api.session.request(
            shot.method, f"{api.base}{shot.path}", data=shot.body, headers={"Content-Type": shot.content_type},
            timeout=30,
        )  # fmt: skip
    except requests.ConnectionError:
        return 0
    return response.status_code
