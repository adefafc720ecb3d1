"""The floors of the house (docs/architecture.md): every import points down or sideways, never up,
and no import cycle exists. Function-local imports count too: they are imports all the same.

Pins issue 10's defects: 8 imports ran from a lower floor to a higher one (``config`` ->
``models.registry``, ``models`` -> ``train``/``evaluate``, the CLI's ``commands.py`` back to
``recsys.cli``) and ``evaluate.metrics`` <-> ``evaluate.protocol`` formed a cycle.
"""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Floors, lowest first. A module belongs to the longest prefix listed.
FLOORS = {
    0: ("recsys", "recsys.config", "recsys.schema", "recsys.interactions", "recsys.io",
        "recsys.spark", "recsys.device", "recsys.metrics", "recsys.model_params"),
    1: ("recsys.etl", "recsys.data", "recsys.models"),
    2: ("recsys.tracking", "recsys.pyfunc_model", "recsys.evaluate", "recsys.score"),
    3: ("recsys.steps",),
    4: ("recsys.cli", "recsys.bench", "recsys.demo", "recsys.localenv", "jobs", "dags"),
}
FLOOR_NAMES = {0: "ground", 1: "domain", 2: "services", 3: "steps", 4: "edges"}


def floor_of(module: str) -> int:
    best, floor = "", None
    for f, prefixes in FLOORS.items():
        for p in prefixes:
            if (module == p or module.startswith(p + ".")) and len(p) > len(best):
                best, floor = p, f
    if floor is None:
        raise AssertionError(f"{module} is on no floor: add it to FLOORS and docs/architecture.md")
    return floor


def _modules() -> dict[str, Path]:
    out = {}
    for folder in ("recsys", "jobs", "dags"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = path
    return out


MODULES = _modules()


def _resolve(name: str) -> str | None:
    """The project module ``name`` refers to (a package attribute counts as its package)."""
    while name:
        if name in MODULES:
            return name
        name = name.rpartition(".")[0]
    return None


def imports_of(module: str) -> set[str]:
    path = MODULES[module]
    is_pkg = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                pkg = module.split(".") if is_pkg else module.split(".")[:-1]
                pkg = pkg[: len(pkg) - node.level + 1]
                base = ".".join(pkg + ([base] if base else []))
            names = [f"{base}.{a.name}" for a in node.names] + [base]
        else:
            continue
        for name in names:
            target = _resolve(name)
            if target and target != module:
                found.add(target)
    # `from recsys.x import y` where y is a module resolves to recsys.x.y; its package too
    return found


GRAPH = {m: imports_of(m) for m in MODULES}


def test_every_module_is_on_a_floor():
    for module in MODULES:
        floor_of(module)


def test_no_import_runs_up_a_floor():
    upward = [f"{m} ({FLOOR_NAMES[floor_of(m)]}) imports {t} ({FLOOR_NAMES[floor_of(t)]})"
              for m, targets in GRAPH.items() for t in sorted(targets)
              if floor_of(t) > floor_of(m)]
    assert not upward, "imports that run up the floors:\n" + "\n".join(upward)


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def _package_edges(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    # A package's __init__ importing its own submodules is not a cycle; drop those edges.
    return {m: {t for t in ts if not t.startswith(m + ".")} for m, ts in graph.items()}


def test_no_import_cycle():
    cycles = _cycles(_package_edges(GRAPH))
    assert not cycles, f"import cycles: {cycles}"


def test_the_check_finds_an_upward_import_and_a_cycle():
    # The checks themselves can fail: an injected upward edge and a cycle are reported.
    graph = {k: set(v) for k, v in GRAPH.items()}
    graph["recsys.config"].add("recsys.steps.train")
    graph["recsys.steps.train"].add("recsys.config")
    assert floor_of("recsys.steps.train") > floor_of("recsys.config")
    assert any("recsys.config" in c for c in _cycles(_package_edges(graph)))


@pytest.mark.parametrize("module, heavy", [
    ("recsys.steps.publish", ("torch", "pyspark")),
    ("recsys.interactions", ("torch", "pyspark")),
    ("recsys.data.training_set", ("torch", "pyspark")),
    ("recsys.config", ("torch", "pyspark")),
])
def test_light_modules_load_neither_torch_nor_pyspark(module, heavy):
    code = (f"import sys, {module}; "
            f"print(','.join(m for m in {heavy!r} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=ROOT)
    assert out.stdout.strip() == "", f"importing {module} loaded {out.stdout.strip()}"
