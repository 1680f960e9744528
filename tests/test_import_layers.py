"""Imports go one way: no cycle between packages or modules, the ground floor imports only torch,
and every package imports alone in a fresh interpreter.

The graph is read statically (``ast``) from every ``.py`` file of the repository's packages and
top-level modules. Every import statement counts, also one inside a function or under
``TYPE_CHECKING``: a deferred import is how a cycle usually hides, and it closes the cycle as
soon as the function runs.
"""

from __future__ import annotations

import ast
import functools
import json
import os
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SKIPPED_DIRS = {".venv", ".git", "configs", "runs", "wandb", "lightning_logs"}


def _top_level_names() -> list[str]:
    """The repository's packages (folders with ``__init__.py``) and top-level modules."""
    packages = [p.name for p in ROOT.iterdir() if p.is_dir() and p.name not in SKIPPED_DIRS and (p / "__init__.py").is_file()]
    modules = [p.stem for p in ROOT.glob("*.py")]
    return sorted(packages + modules)


@functools.lru_cache(maxsize=1)
def _module_files() -> dict[str, Path]:
    """Dotted module name -> file, for every module of every package and each top-level module."""
    files: dict[str, Path] = {}
    for name in _top_level_names():
        if (ROOT / f"{name}.py").is_file():
            files[name] = ROOT / f"{name}.py"
            continue
        for path in (ROOT / name).rglob("*.py"):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            files[".".join(parts)] = path
    return files


def _imported(module: str, path: Path, known: Iterable[str]) -> list[tuple[str, int]]:
    """``(imported module, line)`` for every import in the file that names a repository module.

    ``from a.b import c`` is an import of ``a.b.c`` when that is a module, else of ``a.b``;
    relative imports are resolved against ``module``.
    """
    known = set(known)
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]

    def nearest(name: str) -> str | None:
        parts = name.split(".")
        while parts and ".".join(parts) not in known:
            parts.pop()
        return ".".join(parts) or None

    found: list[tuple[str, int]] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                prefix = package[: len(package) - node.level + 1]
                base = ".".join(prefix + ([base] if base else []))
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
        for target in targets:
            resolved = nearest(target)
            if resolved is not None and resolved != module:
                found.append((resolved, node.lineno))
    return found


@functools.lru_cache(maxsize=1)
def _graph() -> dict[str, list[tuple[str, int]]]:
    files = _module_files()
    return {module: _imported(module, path, files) for module, path in files.items()}


def _find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the directed graph as a closed path [a, b, ..., a], or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state and (cycle := visit(nxt)) is not None:
                return cycle
        path.pop()
        state[node] = 2
        return None

    for start in sorted(edges):
        if start not in state and (cycle := visit(start)) is not None:
            return cycle
    return None


def _where(graph: dict[str, list[tuple[str, int]]], source_of: dict[str, str], a: str, b: str) -> str:
    """The import statements that make node ``a`` import node ``b`` (file:line -> module)."""
    files = _module_files()
    hits = [
        f"{files[m].relative_to(ROOT)}:{line} imports {target}"
        for m, imports in graph.items()
        for target, line in imports
        if source_of[m] == a and source_of[target] == b
    ]
    return "; ".join(list(dict.fromkeys(hits))[:3])


def _cycle_message(kind: str, cycle: list[str], graph: dict[str, list[tuple[str, int]]], source_of: dict[str, str]) -> str:
    steps = "\n".join(f"  {a} -> {b}: {_where(graph, source_of, a, b)}" for a, b in zip(cycle, cycle[1:]))
    return f"import cycle between {kind}: {' -> '.join(cycle)}\n{steps}"


def test_no_import_cycle_between_packages() -> None:
    graph = _graph()
    top = {m: m.split(".")[0] for m in graph}
    edges: dict[str, set[str]] = {}
    for module, imports in graph.items():
        for target, _ in imports:
            if top[module] != top[target]:
                edges.setdefault(top[module], set()).add(top[target])
    cycle = _find_cycle(edges)
    assert cycle is None, _cycle_message("packages", cycle, graph, top)


def test_no_import_cycle_between_modules() -> None:
    graph = _graph()
    edges = {module: {target for target, _ in imports} for module, imports in graph.items()}
    cycle = _find_cycle(edges)
    assert cycle is None, _cycle_message("modules", cycle, graph, {m: m for m in graph})


def test_the_cycle_finder_reports_a_cycle_with_its_path() -> None:
    assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert _find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def _absolute_imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every absolute import in the file, at any depth."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
    return found


def test_the_ground_floor_imports_only_torch_and_the_standard_library() -> None:
    outside = [
        f"{path.relative_to(ROOT)}:{line} imports {name}"
        for path in (ROOT / "common").rglob("*.py")
        for line, name in _absolute_imports(path)
        if name.split(".")[0] not in sys.stdlib_module_names and name.split(".")[0] not in ("torch", "common")
    ]
    assert not outside, "common/ must import only torch and the standard library:\n" + "\n".join(outside)


PLAIN_PYTORCH = ("common", "attacks", "attributions", "concepts", "losses", "metrics", "evaluation")
# Lightning, and the packages of robustlens built on it.
LIGHTNING_SIDE = (
    "pytorch_lightning", "lightning", "lightning_fabric",
    "callbacks", "lightning_modules", "datamodules", "report", "cli", "train",
)  # fmt: skip


def test_the_building_blocks_import_nothing_from_lightning() -> None:
    """attacks, attributions, concepts, losses, metrics, evaluation and common work on any nn.Module (a
    notebook can use them on an exported model): none imports Lightning or a package built on it."""
    found = [
        f"{path.relative_to(ROOT)}:{line} imports {name}"
        for package in PLAIN_PYTORCH
        for path in (ROOT / package).rglob("*.py")
        for line, name in _absolute_imports(path)
        if name.split(".")[0] in LIGHTNING_SIDE
    ]
    assert not found, "plain PyTorch packages must not import Lightning or its side:\n" + "\n".join(found)


# Runs in one interpreter: the third-party libraries the repository imports are loaded once, then
# each repository package is imported in a forked child, which starts with none of them loaded.
_IMPORT_EACH = """
import importlib, json, os, sys, traceback
names, third_party = json.loads(sys.argv[1]), json.loads(sys.argv[2])
for name in third_party:
    try:
        importlib.import_module(name)
    except Exception:
        pass  # an optional dependency: the child imports what it needs
assert not [m for m in sys.modules if m.split(".")[0] in names]
failures = {}
for name in names:
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        try:
            importlib.import_module(name)
            os._exit(0)
        except BaseException:
            os.write(write, traceback.format_exc().encode())
            os._exit(1)
    os.close(write)
    with os.fdopen(read) as pipe:
        message = pipe.read()
    _, status = os.waitpid(pid, 0)
    if status != 0:
        failures[name] = message or f"exit status {status}"
print(json.dumps(failures))
"""


def _third_party_roots() -> list[str]:
    """Top-level names of the libraries the repository's modules import at module level."""
    ours = set(_top_level_names())
    roots: set[str] = set()
    for path in _module_files().values():
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.Import):
                roots.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                roots.add(node.module.split(".")[0])
    return sorted(r for r in roots - ours if r not in sys.stdlib_module_names)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_every_package_imports_alone_in_a_fresh_interpreter() -> None:
    names = _top_level_names()
    assert {"attacks", "attributions", "cli", "common", "concepts", "metrics", "train"} <= set(names)
    result = subprocess.run(
        [sys.executable, "-c", _IMPORT_EACH, json.dumps(names), json.dumps(_third_party_roots())],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    failures = json.loads(result.stdout.strip().splitlines()[-1])
    assert not failures, "\n\n".join(f"import {name} failed alone:\n{text}" for name, text in failures.items())
