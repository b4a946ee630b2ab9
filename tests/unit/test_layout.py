"""The package reads as the pipeline: one-way dependencies between stages, no import cycle, no
private name used across modules, short modules, jobs that use only public names."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "livseg"
MAX_LINES = 300
# Which stages each stage may import (besides itself and the top-level helpers below).
ALLOWED = {
    "io": set(),
    "synthetic": {"io"},
    "data": {"io"},
    "registry": {"io"},
    "train": {"io", "data"},
    "inference": {"io", "data", "train"},
    "tune": {"io", "data", "train", "registry"},
    "evaluate": {"io", "data", "train", "inference", "registry"},
    "serve": {"io", "data", "train", "inference", "registry"},
    "archive": {"io", "inference", "registry", "serve"},
    # Measures every stage against its plain baseline; nothing imports it.
    "benchmarks": {"io", "synthetic", "data", "train", "inference", "evaluate", "serve", "archive"},
}
HELPERS = {"errors", "config", "runtime", "figures"}  # top-level modules every stage may use


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


MODULES = _modules()


def _imports(path: Path, module: str) -> list[tuple[str, str, int]]:
    """(imported module, imported name or "", line) of every livseg import, at any depth."""
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(a.name, "", node.lineno) for a in node.names if a.name.startswith("livseg")]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            if base.split(".")[0] == "livseg":
                found += [(base, a.name, node.lineno) for a in node.names]
    return found


def _target(base: str, name: str) -> str:
    return f"{base}.{name}" if f"{base}.{name}" in MODULES else base


def _graph() -> dict[str, set[str]]:
    return {
        m: {_target(b, n) for b, n, _ in _imports(p, m) if _target(b, n) in MODULES} - {m}
        for m, p in MODULES.items()
    }


def _stage(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def test_no_import_cycle():
    graph, state, cycles = _graph(), {}, []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                cycles.append(" -> ".join(stack[stack.index(nxt) :] + [nxt]))
            elif nxt not in state:
                visit(nxt, [*stack, nxt])
        state[node] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert not cycles, cycles


def test_a_module_never_imports_its_own_package():
    """Siblings import each other directly; through the package they would half-initialise it."""
    bad = []
    for module, path in MODULES.items():
        if path.name == "__init__.py":
            continue
        own = module.rsplit(".", 1)[0]
        bad += [f"{module}:{line}" for b, n, line in _imports(path, module) if _target(b, n) == own]
    assert not bad, bad


def test_stages_depend_one_way():
    bad = []
    for module, path in MODULES.items():
        stage = _stage(module)
        if stage not in ALLOWED:
            continue
        for base, name, line in _imports(path, module):
            other = _stage(_target(base, name))
            if other and other != stage and other not in ALLOWED[stage] | HELPERS:
                bad.append(f"{module}:{line} imports {base} ({stage} must not use {other})")
    assert not bad, bad


def test_stages_use_each_other_through_their_packages():
    """Another stage's modules are its internals: import what its ``__init__`` exports."""
    bad = []
    for module, path in MODULES.items():
        for base, name, line in _imports(path, module):
            other = _stage(_target(base, name))
            if other and other != _stage(module) and base != f"livseg.{other}":
                bad.append(f"{module}:{line} imports from {base}")
    assert not bad, bad


def test_no_private_name_crosses_modules():
    bad = []
    for module, path in list(MODULES.items()) + [(f"jobs.{p.stem}", p) for p in _jobs()]:
        for base, name, line in _imports(path, module):
            if name.startswith("_") and not name.startswith("__"):
                bad.append(f"{module}:{line} imports {base}.{name}")
            if any(part.startswith("_") for part in base.split(".")):
                bad.append(f"{module}:{line} imports from private module {base}")
    assert not bad, bad


def _jobs() -> list[Path]:
    return sorted((ROOT / "jobs").glob("*.py"))


@pytest.mark.parametrize("job", _jobs(), ids=lambda p: p.name)
def test_jobs_import_only_public_names(job):
    """Jobs use a stage's package (its ``__init__`` exports) or a top-level module, and only
    names that the package exports."""
    import importlib

    for base, name, line in _imports(job, "jobs"):
        assert base.count(".") <= 1, f"{job.name}:{line}: import from {base}, not its package"
        if name and f"{base}.{name}" not in MODULES:
            exported = getattr(importlib.import_module(base), "__all__", None)
            if exported is not None:
                assert name in exported, f"{job.name}:{line}: {base}.{name} is not exported"


def test_modules_are_short():
    long = {m: n for m, p in MODULES.items() if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, long


def test_each_stage_exports_its_public_api():
    import importlib

    for stage in ALLOWED:
        package = importlib.import_module(f"livseg.{stage}")
        assert package.__doc__ and package.__all__, stage
        missing = [n for n in package.__all__ if not hasattr(package, n)]
        assert not missing, (stage, missing)


def _pyproject_list(name: str) -> list[str]:
    """The strings of the list ``name = [...]`` in pyproject.toml (Python 3.10 has no tomllib)."""
    import re

    text = (ROOT / "pyproject.toml").read_text()
    body = re.search(rf"^{name} = \[(.*?)\]$", text, re.S | re.M).group(1)
    return re.findall(r'"([^"]*)"', body)


def test_declared_test_dependencies_are_imported_not_skipped():
    """A missing declared dependency must fail the test that needs it, not skip it."""
    import re

    declared = {re.split(r"[<>=\[ ]", dep)[0].lower() for dep in _pyproject_list("test")}
    assert "medpy" in declared
    skipped = []
    for path in (ROOT / "tests").rglob("*.py"):
        for match in re.finditer(r"importorskip\(\s*['\"]([\w.]+)", path.read_text()):
            if match.group(1).split(".")[0].lower() in declared:
                skipped.append(f"{path.name}: {match.group(1)}")
    assert not skipped, skipped


def test_markers_the_docs_promise_exist():
    """A marker the README or the default run names must be declared and mark some test."""
    import re

    declared = [m.split(":")[0] for m in _pyproject_list("markers")]
    readme = (ROOT / "README.md").read_text()
    addopts = re.search(r"^addopts = (.*)$", (ROOT / "pyproject.toml").read_text(), re.M)[1]
    named = set(re.findall(r"marked `(\w+)`|pytest -m '?(?:not )?(\w+)", readme))
    named |= set(re.findall(r"()-m '?(?:not )?(\w+)", addopts))
    named = {m for pair in named for m in pair if m}
    text = "".join(p.read_text() for p in (ROOT / "tests").rglob("test_*.py"))
    missing = [m for m in named | set(declared) if m not in declared or f"mark.{m}" not in text]
    assert not missing, missing
