"""Print squad's import graph: module edges, package-level edges, and any cycles.

Only imports executed at module load count (those inside functions are deferred on purpose,
to keep the command line quick). Run: `.venv/bin/python tools/imports.py`.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "squad"


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def top_level_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in tree.body:  # module level only
        if isinstance(node, ast.If):  # `if TYPE_CHECKING:` blocks do not run
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return {name for name in found if name == "squad" or name.startswith("squad.")}


def graph() -> dict[str, set[str]]:
    modules = {module_name(p): p for p in ROOT.rglob("*.py")}
    edges: dict[str, set[str]] = {}
    for name, path in sorted(modules.items()):
        targets = set()
        for imported in top_level_imports(path):
            while imported not in modules and "." in imported:
                imported = imported.rsplit(".", 1)[0]
            if imported in modules and imported != name:
                targets.add(imported)
        edges[name] = targets
    return edges


def package_of(module: str) -> str:
    """A subpackage stands for all its modules; a top-level module stands for itself."""
    parts = module.split(".")
    return ".".join(parts[:2])


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on.add(node)
        for nxt in edges.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def main() -> int:
    edges = graph()
    print("module imports (load time):")
    for name, targets in edges.items():
        print(f"  {name} -> {', '.join(sorted(targets)) or '-'}")
    packages: dict[str, set[str]] = {}
    for name, targets in edges.items():
        for target in targets:
            a, b = package_of(name), package_of(target)
            if a != b:
                packages.setdefault(a, set()).add(b)
    print("package imports (subpackages folded into one node):")
    for name in sorted(packages):
        print(f"  {name} -> {', '.join(sorted(packages[name]))}")
    module_cycles, package_cycles = cycles(edges), cycles(packages)
    print(f"module cycles: {module_cycles or 'none'}")
    print(f"package cycles: {package_cycles or 'none'}")
    return 1 if module_cycles or package_cycles else 0


if __name__ == "__main__":
    sys.exit(main())
