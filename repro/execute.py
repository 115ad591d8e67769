"""Execute a template with papermill in a kernel (driver side).

papermill injects the parameters after the cell tagged `parameters`, saves the output notebook
after every cell (a crash still leaves a readable record) and, when a cell raises, puts an error
banner at the top that links to the failing cell.
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat
import papermill
from papermill.exceptions import PapermillExecutionError

from repro.errors import RunFailed
from repro.kernels import Kernel, jupyter_env
from repro.lockfile import LockCheck
from repro.plan import RunPlan


def banner(plan: RunPlan, run_context: dict) -> str:
    """The first cell of a report: what ran where, and whether its environment was pinned."""
    lines = [
        f"**repro run `{run_context['run_id']}`**: workload `{plan.workload['name']}`, "
        f"framework `{plan.framework}`, kernel `{plan.kernel}`, "
        f"git `{(run_context['git'].get('commit') or 'unknown')[:10]}`"
        + (" (dirty tree)" if run_context["git"].get("dirty") else "")
    ]
    lock = run_context.get("lock")
    if lock is None:
        lines.append(
            f"> ⚠️ **UNPINNED**: ran in an existing interpreter (`{run_context['python']}`), not in "
            "a kernel built from a lock. The exact package versions found are in "
            "`environment.json`, but nothing guarantees they can be installed again."
        )
    elif not lock["ok"]:
        problems = LockCheck.from_dict(lock).problems()
        lines.append(
            f"> ⚠️ **DRIFT ALLOWED**: the kernel differs from its lock in {len(problems)} "
            "places, so these numbers may not reproduce from the lock:\n>\n"
            + "\n".join(f"> - {p}" for p in problems[:30])
        )
    else:
        lines.append(
            f"Pinned kernel: every installed file matches the lock "
            f"(sha256 `{lock['lock_sha256'][:16]}…`, {lock['files_checked']:,} files checked)."
        )
    return "\n\n".join(lines)


def verdict_cells(original_run: str) -> list:
    """The section `repro rerun` appends to the report it reruns."""
    return [
        nbformat.v4.new_markdown_cell(
            "## Rerun verdict\n\n"
            f"This run reran the report of `{original_run}` with the code, parameters, seeds and "
            "lock it carries. Its metrics and environment are in this folder's `original/`. Each "
            "metric measured on every step is compared as the ratio rerun / original with a "
            "bootstrap 95% CI: *reproduced within noise* when the CI contains 1. Single values "
            "(compile time, memory, energy) have no CI and are held to a stated tolerance. "
            "Environment differences (hardware, driver, packages, code) are listed below them."
        ),
        nbformat.v4.new_code_cell(
            'from repro import verdict\n\nrerun = verdict.show(metrics, environment, "original")'
        ),
    ]


def execute(plan: RunPlan, kernel: Kernel, run_dir: Path, run_context: dict) -> Path:
    """Run the template into `run_dir/report.ipynb`; RunFailed if a cell raises or the kernel
    dies."""
    notebook = nbformat.read(plan.template, as_version=4)
    notebook.cells.insert(0, nbformat.v4.new_markdown_cell(banner(plan, run_context)))
    if plan.reference:
        notebook.cells += verdict_cells(plan.reference["metrics"]["run_id"])
    return run_notebook(notebook, kernel, run_dir, plan.notebook_parameters(run_context))


def run_notebook(notebook, kernel: Kernel, folder: Path, parameters: dict) -> Path:
    """Execute `notebook` with papermill in `kernel` into `folder/report.ipynb`, saved after every
    cell; RunFailed if a cell raises or the kernel dies (what ran so far is kept)."""
    jupyter_env()
    notebook.metadata["kernelspec"] = kernel.notebook_spec
    output = folder / "report.ipynb"
    try:
        papermill.execute_notebook(
            notebook,
            str(output),
            parameters=parameters,
            kernel_name=kernel.spec_name,
            cwd=str(folder),
            progress_bar=sys.stderr.isatty(),  # a bar per cell in a terminal, none in CI logs
            log_output=False,
            stdout_file=sys.stderr,  # the kernel's own progress lines, live
            stderr_file=sys.stderr,
            request_save_on_cell_execute=True,
            start_timeout=120,
        )
    except PapermillExecutionError as error:
        raise RunFailed(
            f"cell {error.exec_count} raised {error.ename}: {error.evalue}".strip()
        ) from error
    except Exception as error:  # a dead kernel, a timeout: keep what was saved
        raise RunFailed(f"execution stopped: {type(error).__name__}: {error}") from error
    return output
