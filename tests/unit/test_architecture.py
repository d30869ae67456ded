"""The package layout keeps the architecture of docs/architecture.md: dependencies point down the
data flow, no module-level import cycles, no private names imported across packages, and no module
grows past ~600 lines without saying why at its top.

Read from the source with :mod:`ast` (nothing is imported), so the check costs milliseconds.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2] / "reliability"

#: which top-level packages each package may import at module level (docs/architecture.md);
#: the package itself and ``reliability`` top-level helper modules (``errors``, ``streams``,
#: ``_json``) are always allowed
LAYERS = {
    "errors": set(),
    "streams": set(),
    "_json": set(),
    "devices": set(),
    "data": {"devices"},
    "fit": {"data", "devices"},
    "cim": {"devices"},
    "sampling": {"cim", "devices"},
    "worstcase": {"cim", "devices"},
    "bench": {"cim", "devices", "data", "sampling"},
    "report": {"data", "devices", "fit", "cim", "sampling", "worstcase", "mitigation"},
    "mitigation": {"devices", "cim", "sampling", "worstcase"},
    "demo": {"data", "devices", "fit", "cim", "sampling", "worstcase"},
    "cli": None,        # the top: may import anything (lazily, per command)
    "_console": None,   # the console script: imports the command line
    "__init__": set(),
}
HELPERS = {"errors", "streams", "_json"}
MAX_LINES = 600
SIZE_REASON = "size:"  # "# size: <why this module is one piece>" in its first 10 lines


def _modules():
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        yield ".".join(parts), path


MODULES = dict(_modules())


def _resolve(module: str, path: Path, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    base = module.split(".")
    if path.name != "__init__.py":
        base = base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _top_level_imports(module: str, path: Path):
    """(imported module, names, line) of every import executed when the module is imported: module
    level and class bodies, not function bodies nor ``if TYPE_CHECKING:`` blocks."""
    tree = ast.parse(path.read_text(), filename=str(path))

    def walk(body):
        for node in body:
            if isinstance(node, ast.Import):
                for a in node.names:
                    yield a.name, (), node.lineno
            elif isinstance(node, ast.ImportFrom):
                yield _resolve(module, path, node), tuple(a.name for a in node.names), node.lineno
            elif isinstance(node, ast.If):
                test = ast.unparse(node.test)
                if "TYPE_CHECKING" not in test:
                    yield from walk(node.body)
                yield from walk(node.orelse)
            elif isinstance(node, ast.Try):
                yield from walk(node.body)
                for h in node.handlers:
                    yield from walk(h.body)
                yield from walk(node.orelse)
                yield from walk(node.finalbody)
            elif isinstance(node, ast.ClassDef):
                yield from walk(node.body)
            elif isinstance(node, ast.With):
                yield from walk(node.body)

    yield from walk(tree.body)


def _all_imports(path: Path):
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            yield node


def _package(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _targets(name: str, names) -> list[str]:
    """The toolkit modules an import statement loads (``from pkg import sub`` loads ``pkg.sub``)."""
    out = []
    if name in MODULES:
        out.append(name)
    for n in names:
        if f"{name}.{n}" in MODULES:
            out.append(f"{name}.{n}")
    return out


def test_layers_point_down_the_flow():
    bad = []
    for module, path in MODULES.items():
        pkg = _package(module)
        allowed = LAYERS.get(pkg, "unknown")
        if allowed == "unknown":
            bad.append(f"{module}: package {pkg!r} is not in LAYERS (add it, and to docs/architecture.md)")
            continue
        if allowed is None:
            continue
        for name, _, line in _top_level_imports(module, path):
            if not name.startswith("reliability"):
                continue
            other = _package(name) if name != "reliability" else "__init__"
            if other in (pkg, "__init__") or other in HELPERS or other in allowed:
                continue
            bad.append(f"{module}:{line} imports {name} (package {pkg!r} may import {sorted(allowed)})")
    assert not bad, "imports against the data flow:\n" + "\n".join(bad)


def test_no_module_level_import_cycles():
    graph = {m: set() for m in MODULES}
    for module, path in MODULES.items():
        for name, names, _ in _top_level_imports(module, path):
            if name.startswith("reliability"):
                graph[module].update(t for t in _targets(name, names) if t != module)
    # a package's __init__ importing its own submodules is how packages work; a cycle through a
    # submodule that imports its parent package back is the kind that breaks
    index, low, stack, on, sccs = {}, {}, [], set(), []

    def strong(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                strong(w)
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
                sccs.append(sorted(comp))

    for v in graph:
        if v not in index:
            strong(v)
    # cycles made only of a package and its own submodules re-exported by its __init__ are benign
    real = [c for c in sccs if not _only_reexport(c, graph)]
    assert not real, f"module-level import cycles: {real}"


def _only_reexport(comp, graph) -> bool:
    """True when the only edges back into a package come from its ``__init__`` re-exporting."""
    pkgs = [m for m in comp if (MODULES[m].name == "__init__.py")]
    for m in comp:
        for w in graph[m] & set(comp):
            if w in pkgs and not m.startswith(w + "."):
                return False
            if w in pkgs and MODULES[m].name != "__init__.py":
                return False
    return bool(pkgs)


def test_no_private_names_imported_across_packages():
    bad = []
    for module, path in MODULES.items():
        pkg = _package(module)
        for node in _all_imports(path):
            name = _resolve(module, path, node)
            if not name.startswith("reliability.") or _package(name) == pkg:
                continue
            for a in node.names:
                if a.name.startswith("_") and not a.name.startswith("__"):
                    bad.append(f"{module}:{node.lineno} imports {name}.{a.name}")
            if any(p.startswith("_") and p != "__init__" for p in name.split(".")[1:]) and _package(name) not in HELPERS:
                bad.append(f"{module}:{node.lineno} imports the private module {name}")
    assert not bad, "private names used across packages:\n" + "\n".join(bad)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_module_size_or_reason(module):
    path = MODULES[module]
    lines = path.read_text().splitlines()
    if len(lines) <= MAX_LINES:
        return
    head = "\n".join(lines[:10]).lower()
    assert SIZE_REASON in head, (
        f"{path.relative_to(ROOT.parent)} has {len(lines)} lines (> {MAX_LINES}): split it along a seam, or say "
        f"why it is one piece in a '# size: ...' comment within its first 10 lines")
