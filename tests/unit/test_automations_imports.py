"""The automations app imports in one direction: no module imports, even inside a function, one that imports it
back (read from the source, so a cycle hidden in a function body counts too)."""

from __future__ import annotations

import ast
from pathlib import Path

import automations

PACKAGE = Path(automations.__file__).parent


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, modules: set[str]) -> set[str]:
    """The automations modules ``path`` imports, anywhere in its body."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")
            base = base[: len(base) - node.level + 1] if node.level else []
            module = ".".join([*base, *(node.module.split(".") if node.module else [])])
            submodules = [f"{module}.{alias.name}" for alias in node.names]
            targets = submodules if any(m in modules for m in submodules) else [module]
        else:
            continue
        found |= {target for target in targets if target in modules and target != name}
    return found


def automations_import_graph() -> dict[str, set[str]]:
    paths = [p for p in PACKAGE.rglob("*.py") if "migrations" not in p.parts]
    modules = {_module_name(p) for p in paths}
    return {_module_name(p): _imports(p, modules) for p in paths}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, str] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = "open"
        stack.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == "open":
                return [*stack[stack.index(target) :], target]
            if target not in state and (found := visit(target)):
                return found
        stack.pop()
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_automations_has_no_import_cycle():
    graph = automations_import_graph()

    assert _cycle(graph) is None, " → ".join(_cycle(graph))


def test_the_delivery_modules_import_downward():
    graph = automations_import_graph()

    assert "automations.attempts" in graph["automations.dispatch"]
    assert {"automations.schedule", "automations.prepare", "automations.retry"} <= graph["automations.attempts"]
    assert "automations.attempts" not in graph["automations.schedule"]
    assert graph["automations.safe_http"] == set()
    assert not {"automations.attempts", "automations.schedule"} & graph["automations.webhook_testing"]


def test_a_cycle_is_found():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
