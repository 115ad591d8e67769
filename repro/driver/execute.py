"""Execute a template with papermill in a kernel (driver side).

papermill injects the parameters after the cell tagged `parameters`, saves the output notebook
(report.partial.ipynb) after every cell, so a crash still leaves a record, and, when a cell raises,
puts an error banner at the top that links to the failing cell. When the run ends, however it
ends, the partial notebook is written whole as report.ipynb. Meanwhile a memory watchdog guards
the machine, and Ctrl-C or SIGTERM stop the kernel and raise KeyboardInterrupt with the reason.
"""

from __future__ import annotations

import ast
import signal
import sys
import tempfile
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import nbformat
import papermill
from jupyter_client.manager import AsyncKernelManager
from nbclient.exceptions import DeadKernelError
from papermill.exceptions import PapermillExecutionError
from papermill.execute import ERROR_MARKER_TAG
from traitlets import default

from repro.driver.finalize import BANNER_TAG, Outcome
from repro.driver.folders import write
from repro.driver.kernels import Kernel, jupyter_env
from repro.driver.memory import Watchdog, stop_kernel
from repro.driver.plan import RunPlan
from repro.errors import RunFailed
from repro.lockfile import LockCheck

PARTIAL = "report.partial.ipynb"  # papermill's running record; report.ipynb is written whole


def banner(plan: RunPlan, run_context: dict) -> str:
    """The first cell of a report: what ran where, and whether its environment was pinned."""
    lines = [
        f"**repro run `{run_context['run_id']}`**: workload `{plan.workload['name']}`, "
        f"framework `{plan.framework}`, kernel `{plan.kernel}` ({plan.kernel_reason}), "
        f"git `{(run_context['git'].get('commit') or 'unknown')[:10]}`"
        + (" (dirty tree)" if run_context["git"].get("dirty") else "")
    ]
    lock = run_context.get("lock")
    if lock is None:
        lines.append(
            f"> ⚠ **UNPINNED**: ran in an existing interpreter (`{run_context['python']}`), not in "
            "a kernel built from a lock. The exact package versions found are in "
            "`environment.json`, but nothing guarantees they can be installed again."
        )
    elif not lock["ok"]:
        problems = LockCheck.from_dict(lock).problems()
        lines.append(
            f"> ⚠ **DRIFT ALLOWED**: the kernel differs from its lock in {len(problems)} "
            "places, so these numbers may not reproduce from the lock:\n>\n"
            + "\n".join(f"> - {p}" for p in problems[:30])
        )
    else:
        lines.append(
            f"Pinned kernel: every installed file matches the lock "
            f"(sha256 `{lock['lock_sha256'][:16]}…`, {lock['files_checked']:,} files checked: "
            f"{lock['files_hashed']:,} hashed now, the others unchanged since they were hashed)."
        )
    return "\n\n".join(lines)


def execute(
    plan: RunPlan, kernel: Kernel, run_dir: Path, run_context: dict, cells: tuple = ()
) -> Path:
    """Run the template, then `cells`, into `run_dir/report.ipynb`; RunFailed if a cell raises
    or the kernel dies."""
    notebook = plan.template.notebook()
    notebook.cells.insert(0, nbformat.v4.new_markdown_cell(banner(plan, run_context)))
    notebook.cells[0].metadata["tags"] = [BANNER_TAG]
    notebook.cells += cells
    parameters = plan.notebook_parameters(run_context)
    names = declared(notebook)  # a template receives the parameters it declares
    if names is not None:
        parameters = {k: v for k, v in parameters.items() if k in names}
    return run_notebook(notebook, kernel, run_dir, parameters)


def declared(notebook) -> set[str] | None:
    """The names the cell tagged `parameters` assigns; None where no cell is tagged so (papermill
    then injects at the top, and every parameter is passed)."""
    for cell in notebook.cells:
        if "parameters" in cell.metadata.get("tags", []):
            try:
                body = ast.parse(cell.source).body
            except SyntaxError:  # papermill says so when it runs the cell
                return None
            targets = [t for n in body if isinstance(n, ast.Assign) for t in n.targets]
            targets += [n.target for n in body if isinstance(n, ast.AnnAssign)]
            return {t.id for t in targets if isinstance(t, ast.Name)}
    return None


class SocketKernelManager(AsyncKernelManager):
    """A kernel on Unix domain sockets with names of its own, not on TCP ports: kernels started
    at once by separate runs picked the same free port ("Address already in use", one run of
    eight concurrent ones lost), and nothing else on the machine can connect to them."""

    @default("transport")
    def _default_transport(self) -> str:
        return "ipc"

    @default("ip")
    def _default_ip(self) -> str:  # socket paths: this prefix + "-<n>", short enough for Unix
        return str(Path(tempfile.gettempdir()) / f"repro-kernel-{uuid.uuid4().hex}")


def run_notebook(notebook, kernel: Kernel, folder: Path, parameters: dict) -> Path:
    """Execute `notebook` with papermill in `kernel` into `folder/report.ipynb`; RunFailed with a
    one-line reason if a cell raises, the kernel dies or the memory watchdog stops it
    (KeyboardInterrupt passes through). However it ends, report.ipynb holds what ran so far,
    unless papermill could not save even that (a full disk).
    """
    jupyter_env()
    notebook.metadata["kernelspec"] = kernel.notebook_spec
    watchdog = Watchdog()
    watchdog.start()
    reason = None
    try:
        papermill.execute_notebook(
            notebook,
            str(folder / PARTIAL),  # saved after every cell, so a crash leaves a record
            parameters=parameters,
            kernel_name=kernel.spec_name,
            cwd=str(folder),
            progress_bar=sys.stderr.isatty(),  # a bar per cell in a terminal, none in CI logs
            log_output=False,
            stdout_file=sys.stderr,  # the kernel's own progress lines, live
            stderr_file=sys.stderr,
            request_save_on_cell_execute=True,
            start_timeout=120,
            kernel_manager_class=SocketKernelManager,
        )
    except PapermillExecutionError as error:
        reason = f"cell {error.exec_count} raised {error.ename}: {error.evalue}".strip()
    except KeyboardInterrupt as error:
        reason = str(error) or INTERRUPTED
        raise
    except DeadKernelError:
        reason = watchdog.death()
    except Exception as error:  # a timeout, an unreadable kernel reply: keep what was saved
        reason = f"execution stopped: {type(error).__name__}: {error}"
    finally:
        watchdog.stop()
        with deferred_signals():
            settle(folder, reason)
    if reason:
        raise RunFailed(reason)
    return folder / "report.ipynb"


def settle(folder: Path, reason: str | None) -> None:
    """Write papermill's partial notebook whole as report.ipynb and remove it. A cell that was
    running when the run stopped is marked so (papermill calls a killed cell completed); a
    partial notebook that cannot be read (a full disk) leaves no report.ipynb."""
    partial = folder / PARTIAL
    try:
        notebook = nbformat.read(partial, as_version=4)
    except (OSError, ValueError):
        partial.unlink(missing_ok=True)
        return
    if reason and not any(ERROR_MARKER_TAG in c.metadata.get("tags", []) for c in notebook.cells):
        mark_stopped_cell(notebook, reason)
    write(folder / "report.ipynb", nbformat.writes(notebook))
    partial.unlink()


def mark_stopped_cell(notebook, reason: str) -> None:
    """Give the last cell that started an error output with `reason`, and papermill status
    failed."""
    started = [c for c in notebook.cells if c.metadata.get("papermill", {}).get("start_time")]
    if not started:
        return
    cell = started[-1]
    cell.metadata.papermill.update(status="failed", exception=True)
    cell.outputs.append(
        nbformat.v4.new_output("error", ename="RunStopped", evalue=reason, traceback=[reason])
    )


INTERRUPTED = "interrupted by the user (Ctrl-C)"
TERMINATED = "interrupted by SIGTERM"


@contextmanager
def signals_interrupt(stop_children: bool = True) -> Iterator[None]:
    """Ctrl-C and SIGTERM (sent by `timeout`, CI cancellation, `docker stop`) stop the kernel at
    once (with `stop_children`: every child process) and raise KeyboardInterrupt with the reason.
    A SIGINT that this process was started to ignore (a background job) stays ignored."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum, frame):
        if stop_children:  # quietly: a kernel left running would print errors as the driver leaves
            stop_kernel()
        raise KeyboardInterrupt(INTERRUPTED if signum == signal.SIGINT else TERMINATED)

    handled = [signal.SIGTERM]
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        handled.append(signal.SIGINT)
    previous = {s: signal.signal(s, interrupt) for s in handled}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


@contextmanager
def attempt() -> Iterator[Outcome]:
    """Run the block; a failed or interrupted execution is recorded in the outcome instead of
    raised, so that the caller finalises its folder either way."""
    outcome = Outcome()
    try:
        yield outcome
    except RunFailed as failure:
        outcome.error = str(failure)
    except KeyboardInterrupt as stop:
        outcome.error, outcome.interrupted = str(stop) or INTERRUPTED, True


@contextmanager
def deferred_signals() -> Iterator[list[int]]:
    """While the run folder is being completed, Ctrl-C and SIGTERM are noted, not obeyed: a run
    that has stopped is finalised whatever arrives meanwhile."""
    received: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield received
        return
    previous = {
        s: signal.signal(s, lambda signum, frame: received.append(signum))
        for s in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        yield received
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
