"""The shape of the code: no import cycle among dreamreel's own modules (imports inside functions
counted), and a first-party import inside a function only with its reason on the line."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("dreamcore", "pipeline")


def _modules(root: Path = ROOT) -> dict[str, Path]:
    mods = {}
    for pkg in PACKAGES:
        for path in (root / pkg).rglob("*.py"):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            mods[".".join(parts)] = path
    return mods


def _imports(path: Path, name: str, mods: dict[str, Path]) -> list[tuple[str, ast.stmt, bool]]:
    """(imported first-party module, the statement, whether it is inside a function)."""
    tree = ast.parse(path.read_text())
    inner = {
        id(n) for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef)) for n in ast.walk(f)
    }
    is_pkg = path.name == "__init__.py"
    found = []
    for node in ast.walk(tree):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                here = name.split(".") if is_pkg else name.split(".")[:-1]
                base = ".".join(here[: len(here) - node.level + 1] + ([base] if base else []))
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base for a in node.names]
        for t in targets:
            while t and t not in mods:
                t = t.rpartition(".")[0]
            if t and t != name and t.split(".")[0] in PACKAGES:
                found.append((t, node, id(node) in inner))
    return found


def find_cycles(root: Path = ROOT) -> list[list[str]]:
    mods = _modules(root)
    graph = {m: sorted({t for t, _, _ in _imports(p, m, mods)}) for m, p in mods.items()}
    # A package's __init__ importing its own modules is not a cycle of the design: its modules
    # import each other by their full names, which runs the package's __init__ first anyway.
    for m in graph:
        graph[m] = [t for t in graph[m] if not (mods[m].name == "__init__.py" and t.startswith(m + "."))]
        graph[m] = [t for t in graph[m] if not m.startswith(t + ".")]
    cycles: list[list[str]] = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for t in graph.get(m, []):
            if state.get(t) == 1:
                cycles.append(stack[stack.index(t) :] + [t])
            elif t not in state:
                visit(t)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)
    return cycles


def test_no_import_cycle_among_first_party_modules() -> None:
    cycles = find_cycles()
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_first_party_imports_inside_functions_say_why() -> None:
    mods = _modules()
    unexplained = []
    for m, p in mods.items():
        lines = p.read_text().splitlines()
        for _, node, inner in _imports(p, m, mods):
            if inner and "# lazy:" not in lines[node.lineno - 1] and "# lazy:" not in lines[node.end_lineno - 1]:
                unexplained.append(f"{p.relative_to(ROOT)}:{node.lineno}")
    assert not unexplained, "first-party imports inside functions without '# lazy: why': " + ", ".join(unexplained)


def test_the_cycle_check_finds_a_cycle(tmp_path: Path) -> None:
    """The check itself bites: two modules importing each other (one inside a function) are found."""
    pkg = tmp_path / "pipeline"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from pipeline.b import f\n")
    (pkg / "b.py").write_text("def f():\n    from pipeline import a\n    return a\n")
    (pkg / "c.py").write_text("from pipeline import a\n")
    assert find_cycles(tmp_path) == [["pipeline.a", "pipeline.b", "pipeline.a"]]
