"""The boundary between the driver (`repro/driver/`: the `repro` command, plans, kernels,
papermill, run folders) and the kernel side (`repro/kernel/`: what a report's cells import), read
from the source with `ast`: the kernel side never imports the driver, the driver never imports a
framework, the shared modules at the top of `repro/` import neither side, and every module a
report imports lives in `repro/kernel/` or is shared."""

from __future__ import annotations

import ast
import json
from pathlib import Path

from repro.paths import ROOT, TEMPLATES

FRAMEWORKS = {"torch", "tensorflow", "keras", "jax", "flax", "optax", "mxnet"}


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


def driver() -> set[str]:
    return {m for m in modules() if m.startswith("repro.driver")} | {"repro.__main__"}


def shared() -> set[str]:
    return {m for m in modules() if m.count(".") == 1 and not m.startswith(SIDES)} - driver()


SIDES = ("repro.driver", "repro.kernel")


def kernel_side() -> set[str]:
    """What a report can import: the templates' imports, the rerun verdict's cell, and the
    framework adapters and models they load by name."""
    cells = [
        "".join(cell["source"])
        for template in TEMPLATES.rglob("*.ipynb")
        for cell in json.loads(template.read_text())["cells"]
        if cell["cell_type"] == "code"
    ]
    start = set().union(*(imports(c) for c in cells)) | {"repro.kernel.verdict"}
    start |= {
        m for m in modules() if m.startswith(("repro.kernel.frameworks.", "repro.kernel.models."))
    }
    return {m for m in start if m in modules()}


def test_the_kernel_side_never_imports_the_driver():
    imported = reach(kernel_side())
    assert {"repro.kernel.report", "repro.kernel.measure"} <= imported  # the reading works
    assert not {m for m in imported if m.startswith("repro.driver")}


def test_a_report_imports_only_the_kernel_side_and_shared_modules():
    imported = {m for m in reach(kernel_side()) if m.startswith("repro.") and m in modules()}
    assert imported and all(m.startswith("repro.kernel") or m in shared() for m in imported)


def test_shared_modules_import_neither_side():
    assert {"repro.stats", "repro.records", "repro.errors"} <= shared()  # the reading works
    assert not {m for m in reach(shared()) if m.startswith(SIDES)}


def test_the_driver_never_imports_a_framework():
    imported = {m.split(".")[0] for m in reach(driver())}
    assert "papermill" in imported  # the reading works
    assert not imported & FRAMEWORKS, sorted(imported & FRAMEWORKS)
