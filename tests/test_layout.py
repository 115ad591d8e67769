"""The boundary between the driver (the `repro` command: plans, kernels, papermill, run folders)
and the kernel side (what a report's cells import), read from the source with `ast`: the kernel
side never imports a driver module, and the driver never imports a framework."""

from __future__ import annotations

import ast
import json
from pathlib import Path

from repro.paths import ROOT, TEMPLATES

DRIVER = {  # modules that only the `repro` command imports
    "repro.cli",
    "repro.run",
    "repro.plan",
    "repro.execute",
    "repro.finalize",
    "repro.kernels",
    "repro.rerun",
    "repro.integrity",
    "repro.untrusted",
    "repro.snapshot",
    "repro.wheelhouse",
    "repro.comparison",
    "repro.templates",
    "repro.headline",
}
FRAMEWORKS = {"torch", "tensorflow", "keras", "jax", "flax", "optax"}


def modules() -> dict[str, Path]:
    found = {}
    for path in (ROOT / "repro").rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imports(source: str) -> set[str]:
    """Every module an import statement in `source` names, at any depth (`from repro import x`
    names repro.x too)."""
    named = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            named |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            named |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
    return named


def reach(start: set[str]) -> set[str]:
    """Every module imported from `start`, transitively, repro's own and outside ones."""
    found, seen, todo = modules(), set(), list(start)
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo += imports(found[name].read_text()) if name in found else []
    return seen


def kernel_side() -> set[str]:
    """What a report can import: the templates' imports, the rerun verdict's cell, and the
    framework adapters and models they load by name."""
    cells = [
        "".join(cell["source"])
        for template in TEMPLATES.rglob("*.ipynb")
        for cell in json.loads(template.read_text())["cells"]
        if cell["cell_type"] == "code"
    ]
    start = set().union(*(imports(c) for c in cells)) | {"repro.verdict"}
    start |= {m for m in modules() if m.startswith(("repro.frameworks.", "repro.models."))}
    return {m for m in start if m in modules()}


def test_the_kernel_side_never_imports_the_driver():
    imported = reach(kernel_side())
    assert "repro.report" in imported and "repro.measure" in imported  # the reading works
    assert not imported & DRIVER, sorted(imported & DRIVER)


def test_the_driver_never_imports_a_framework():
    imported = {m.split(".")[0] for m in reach(DRIVER)}
    assert "papermill" in imported  # the reading works
    assert not imported & FRAMEWORKS, sorted(imported & FRAMEWORKS)
