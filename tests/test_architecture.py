"""The rooms import one way (ARCHITECTURE.md, "Rooms"): no room imports another that imports it
back, directly or around a circle, and no module does either. Read from the source (every
import statement, also those inside functions), so a lazy import cannot hide a cycle."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ROOMS = ("core", "media", "prompts", "safety", "engine", "tooling", "ui", "app")
# What each room may import; the order is the one-way flow, bottom to top.
MAY_IMPORT = {
    "core": set(),
    "media": {"core"},
    "prompts": set(),
    "safety": {"core"},
    "engine": {"core", "media", "prompts"},
    "tooling": {"core", "media", "engine"},
    "ui": {"core", "prompts"},
    "app": {"core", "media", "prompts", "safety", "engine", "tooling", "ui"},
}


def module_imports() -> dict[str, set[str]]:
    """Module name -> the product modules it imports."""
    modules = {
        ".".join(p.relative_to(ROOT).with_suffix("").parts): p for room in ROOMS for p in (ROOT / room).rglob("*.py")
    }
    modules = {name.removesuffix(".__init__"): path for name, path in modules.items()}
    graph = {}
    for name, path in modules.items():
        imported = set()
        for node in ast.walk(ast.parse(path.read_text())):
            names = (
                [node.module]
                if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module
                else [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else []
            )
            for target in names:
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                if target and target != name:
                    imported.add(target)
        graph[name] = imported
    return graph


def cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the graph, or None."""
    state, path = {}, []

    def visit(node):
        state[node] = "open"
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        state[node] = "done"
        path.pop()
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_no_module_imports_in_a_circle():
    assert cycle(module_imports()) is None


def test_each_room_imports_only_the_rooms_below_it():
    wrong = sorted(
        f"{module} imports {target}"
        for module, targets in module_imports().items()
        for target in targets
        if (room := module.split(".")[0]) != (other := target.split(".")[0]) and other not in MAY_IMPORT[room]
    )
    assert wrong == []
    rooms = {room: allowed for room, allowed in MAY_IMPORT.items()}
    assert cycle(rooms) is None


def test_the_cycle_finder_finds_one():
    assert cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
