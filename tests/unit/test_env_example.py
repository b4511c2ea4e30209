"""`.env.example` documents every setting with its default; `config/settings.py` is where the defaults are written.
These tests keep the two from drifting apart: a setting added, renamed or given a new default in one must be changed
in the other."""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / ".env.example"
SETTINGS = ROOT / "config" / "settings.py"
# Read by the processes and the development script rather than by the settings: the Procfile's shell defaults and
# ./dev's test targets.
READ_ELSEWHERE = (ROOT / "Procfile", ROOT / "dev", ROOT / "registry" / "management" / "commands" / "seed_demo.py")


@dataclass(frozen=True)
class Read:
    name: str
    kind: str  # str, bool, int, float, list, db
    default: object  # the literal default, or NOT_LITERAL when it is computed
    line: int


NOT_LITERAL = object()
NO_DEFAULT = object()


def settings_reads() -> dict[str, Read]:
    """Every ``env.<kind>("NAME", default)`` call in the settings module."""
    reads: dict[str, Read] = {}
    for node in ast.walk(ast.parse(SETTINGS.read_text())):
        if not (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id == "env"
            and node.args
            and isinstance(node.args[0], ast.Constant)
        ):
            continue
        given = next(
            (k.value for k in node.keywords if k.arg == "default"), node.args[1] if len(node.args) > 1 else None
        )
        if given is None:
            default = NO_DEFAULT
        else:
            try:
                default = (
                    ast.literal_eval(given)
                    if not isinstance(given, ast.BinOp)
                    else eval(  # noqa: S307
                        compile(ast.Expression(given), "<default>", "eval"), {"__builtins__": {}}
                    )
                )
            except (ValueError, NameError, TypeError):
                default = NOT_LITERAL
        name = node.args[0].value
        reads.setdefault(name, Read(name, node.func.attr, default, node.lineno))
    return reads


def example_entries() -> dict[str, str]:
    """``#NAME=value`` lines of .env.example: the name and its documented default."""
    entries: dict[str, str] = {}
    for line in EXAMPLE.read_text().splitlines():
        if match := re.fullmatch(r"#([A-Z][A-Z0-9_]*)=(.*)", line):
            assert match[1] not in entries, f".env.example lists {match[1]} twice"
            entries[match[1]] = match[2]
    return entries


def same(read: Read, documented: str) -> bool:
    default = read.default
    if default is None or default == "" or default == []:
        return documented == ""
    if read.kind == "bool":
        return documented == str(default).lower()
    if read.kind == "list":
        return documented.split(",") == [str(item) for item in default]
    if read.kind in ("int", "float"):
        return float(documented) == float(default)
    return documented == str(default)


def test_every_setting_the_settings_read_is_in_the_example():
    missing = sorted(set(settings_reads()) - set(example_entries()))
    assert not missing, f".env.example does not list {missing}"


def test_every_setting_in_the_example_is_read_somewhere():
    elsewhere = "\n".join(path.read_text() for path in READ_ELSEWHERE)
    unread = sorted(
        name for name in set(example_entries()) - set(settings_reads()) if not re.search(rf"\b{name}\b", elsewhere)
    )
    assert not unread, f".env.example lists {unread}, which nothing reads"


def test_the_example_shows_each_literal_default():
    entries = example_entries()
    wrong = [
        f"{read.name}: settings.py line {read.line} says {read.default!r}, .env.example says {entries[read.name]!r}"
        for read in settings_reads().values()
        if read.name in entries and read.default not in (NOT_LITERAL, NO_DEFAULT) and not same(read, entries[read.name])
    ]
    assert not wrong, "\n".join(wrong)


def computed_default(name: str) -> object:
    """The default settings.py computes for ``name`` from other settings, with those at their documented defaults:
    what a reader of .env.example gets when nothing is set, whatever this test process's environment holds."""
    tree = ast.parse(SETTINGS.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and node.args and getattr(node.args[0], "value", None) == name:
            expression = next(k.value for k in node.keywords if k.arg == "default")
            names = {n.id for n in ast.walk(expression) if isinstance(n, ast.Name)} - {"max", "min"}
            documented = {other: int(example_entries()[other]) for other in names}
            code = compile(ast.Expression(expression), "<default>", "eval")
            return eval(code, {"__builtins__": {}, "max": max, "min": min}, documented)  # noqa: S307
    raise AssertionError(f"settings.py does not read {name}")


@pytest.mark.parametrize("name", ["DELIVERY_DESTINATION_MAX_SENDS", "DELIVERY_TEAM_MAX_SENDS"])
def test_the_example_shows_each_computed_default(name):
    """Defaults computed from other settings are shown with the value they take when nothing is set."""
    assert settings_reads()[name].default is NOT_LITERAL
    assert example_entries()[name] == str(computed_default(name))
