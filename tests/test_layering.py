"""The import graph of the toolkit: packages in one declared order, no arrow upwards, no cycle between modules.

Every import counts, also one inside a function: a lazy import hides a cycle from Python, not from a reader.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Bottom to top; a package may import only from its own rank or below, and never one of the same rank but itself.
LAYERS: list[tuple[str, ...]] = [("ground",), ("prompts",), ("kgen",), ("eval",), ("distill", "annotate"), ("ctr",),
                                 ("pipeline",)]
RANK = {package: rank for rank, packages in enumerate(LAYERS) for package in packages}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path, modules: set[str]) -> set[str]:
    """The toolkit modules `path` imports (`from a.b import c` counts as a.b.c when that is a module)."""
    name, found = module_name(path), set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            found |= {base} | {f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in modules}
    return {m for m in found if m.split(".")[0] in RANK and m in modules}


def import_graph() -> dict[str, set[str]]:
    paths = [p for package in RANK for p in (ROOT / package).rglob("*.py")] + list(ROOT.glob("pipeline.py"))
    modules = {module_name(p) for p in paths}
    return {module_name(p): imported_modules(p, modules) - {module_name(p)} for p in paths}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_package_imports_one_above_it_or_beside_it():
    upward = sorted(f"{a} -> {b}" for a, targets in import_graph().items() for b in targets
                    if a.split(".")[0] != b.split(".")[0] and RANK[b.split(".")[0]] >= RANK[a.split(".")[0]])
    assert not upward, "imports against the layer order " + " < ".join("/".join(p) for p in LAYERS) + ":\n" + "\n".join(upward)


def test_no_import_cycle_between_modules():
    assert not cycles(import_graph())


# Inside a package: what runs the models stands above the models. A teacher backend is called by the run, never
# the other way round (openai_batch once reached up into kgen.run for the request key).
BELOW = {"kgen.teachers": ("kgen.run", "kgen.generate", "kgen.cli", "kgen.ray_engine", "kgen.tasks")}


def test_teacher_backends_do_not_import_the_run_that_calls_them():
    upward = sorted(f"{a} -> {b}" for a, targets in import_graph().items() for low, high in BELOW.items()
                    if a.startswith(low) for b in targets if b.startswith(high))
    assert not upward, "\n".join(upward)


def test_the_checks_see_a_cycle_and_an_upward_arrow():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    graph = import_graph()
    assert "ground.records" in graph["kgen.run"]  # the graph is read, not empty
    assert RANK["kgen"] < RANK["eval"] < RANK["ctr"]
