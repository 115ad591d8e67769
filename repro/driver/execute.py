"""Execute a template with papermill in a kernel (driver side).

papermill injects the parameters after the cell tagged `parameters`, saves the output notebook
(report.partial.ipynb) after every cell, so a crash still leaves a record, and, when a cell raises,
puts an error banner at the top that links to the failing cell. When the run ends, however it
ends, the partial notebook is written whole as report.ipynb. Meanwhile a memory watchdog guards
the machine, and Ctrl-C or SIGTERM stop the kernel and raise KeyboardInterrupt with the reason.

What the kernel prints reaches the driver's log (stderr) as it comes, less framework log noise
(repro.kernel.noise), and the log names the cell that runs (repro.driver.talk); what the kernel
process writes to its own stdout and stderr (C++ libraries' logs) goes to the run's kernel.log.
"""

from __future__ import annotations

import ast
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import nbformat
import papermill
from jupyter_client.manager import AsyncKernelManager
from nbclient.exceptions import DeadKernelError
from papermill.engines import NBClientEngine, papermill_engines
from papermill.exceptions import PapermillExecutionError
from papermill.execute import ERROR_MARKER_TAG
from traitlets import default

from repro.driver.finalize import BANNER_TAG, Outcome
from repro.driver.folders import write
from repro.driver.kernels import Kernel, jupyter_env
from repro.driver.memory import Watchdog, stop_kernel
from repro.driver.plan import RunPlan
from repro.driver.scratch import scratch
from repro.driver.talk import Talk, talking
from repro.errors import RunFailed, brief
from repro.kernel.loadgen import SCRATCH_VARIABLE
from repro.kernel.noise import KERNEL_LOG, KERNEL_LOG_VARIABLE, noise
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
    plan: RunPlan,
    kernel: Kernel,
    run_dir: Path,
    run_context: dict,
    cells: tuple = (),
    log=sys.stderr,
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
    return run_notebook(notebook, kernel, run_dir, parameters, log)


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
    """A kernel on Unix domain sockets, not on TCP ports: kernels started at once by separate
    runs picked the same free port ("Address already in use", one run of eight concurrent ones
    lost). Its connection file, its sockets (kernel-ipc-<n>) and its temporary files are in
    `scratch`, a private folder of the run's (repro.driver.scratch), so nothing else on the
    machine can connect to it and nothing of it outlives the run."""

    @default("transport")
    def _default_transport(self) -> str:
        return "ipc"

    @default("connection_file")
    def _default_connection_file(self) -> str:  # jupyter_client puts the sockets beside it
        return str(self.scratch / "kernel.json")

    scratch: Path
    kernel_log: Path  # where the kernel process's stdout and stderr go
    processes: list  # the kernel's process (a Popen) once started: how it ended

    async def start_kernel(self, **kw) -> None:
        env = {
            **kw.pop("env", os.environ),
            "JUPYTER_RUNTIME_DIR": str(self.scratch),
            SCRATCH_VARIABLE: str(self.scratch),
            KERNEL_LOG_VARIABLE: str(self.kernel_log),
        }
        with open(self.kernel_log, "ab") as log:  # the kernel keeps its own descriptor
            await super().start_kernel(stdout=log, stderr=log, env=env, **kw)
        self.processes.append(getattr(self.provisioner, "process", None))


class TalkingEngine(NBClientEngine):
    """papermill's engine, telling the driver's Talk which code cell runs."""

    @classmethod
    def execute_managed_notebook(cls, nb_man, kernel_name, talk: Talk, **kwargs):
        start, code = nb_man.cell_start, [c for c in nb_man.nb.cells if c.cell_type == "code"]

        def cell_start(cell, cell_index=None, **kw):
            if cell.cell_type == "code":
                lines = [x for x in cell.source.splitlines() if x.strip()[:1] not in ("", "#")]
                shown = f": {lines[0][:60]}" if lines else ""
                talk.now(f"running code cell {code.index(cell) + 1}/{len(code)}{shown}")
            return start(cell, cell_index, **kw)

        nb_man.cell_start = cell_start
        return super().execute_managed_notebook(nb_man, kernel_name, **kwargs)


papermill_engines.register("repro", TalkingEngine)


class Sieve:
    """A stream of the kernel's output on its way to `out`, line by line, less framework log
    noise (which the report's cell outputs and kernel.log keep)."""

    def __init__(self, out) -> None:
        self.out, self.rest = out, ""

    def write(self, text: str) -> None:
        *lines, self.rest = (self.rest + text).split("\n")
        shown = "".join(f"{line}\n" for line in lines if not noise(line))
        if shown:
            self.out.write(shown)

    def flush(self) -> None:
        self.out.flush()

    def __enter__(self) -> Sieve:
        return self

    def __exit__(self, *exc) -> None:  # the last line, if it did not end
        self.write("\n" if self.rest else "")


def run_notebook(notebook, kernel: Kernel, folder: Path, parameters: dict, log=sys.stderr) -> Path:
    """Execute `notebook` with papermill in `kernel` into `folder/report.ipynb`, the kernel's
    output shown on `log` as it comes; RunFailed with a one-line reason if a cell raises, the
    kernel dies or the memory watchdog stops it (KeyboardInterrupt passes through). However it
    ends, report.ipynb holds what ran so far, unless papermill could not save even that (a full
    disk); kernel.log, what the kernel process wrote to its own stdout and stderr, is removed
    when empty.
    """
    jupyter_env()
    notebook.metadata["kernelspec"] = kernel.notebook_spec
    kernel_log = folder / KERNEL_LOG
    processes: list = []
    watchdog = Watchdog()
    reason = None
    try:
        with (
            scratch() as tmp,
            talking(log, f"starting kernel {kernel.spec_name}") as talk,
            Sieve(talk) as out,
            Sieve(talk) as err,
        ):
            own = {"kernel_log": kernel_log, "scratch": tmp, "processes": processes}
            watchdog.start()
            papermill.execute_notebook(
                notebook,
                str(folder / PARTIAL),  # saved after every cell, so a crash leaves a record
                parameters=parameters,
                engine_name="repro",
                talk=talk,
                kernel_name=kernel.spec_name,
                cwd=str(folder),
                progress_bar=False,  # the Talk names each cell instead
                log_output=False,
                stdout_file=out,  # the kernel's own progress lines, live
                stderr_file=err,
                request_save_on_cell_execute=True,
                start_timeout=120,
                kernel_manager_class=type("RunKernelManager", (SocketKernelManager,), own),
            )
    except PapermillExecutionError as error:
        reason = f"cell {error.exec_count} raised {error.ename}: {error.evalue}".strip()
    except KeyboardInterrupt as error:
        reason = str(error) or INTERRUPTED
        raise
    except DeadKernelError:
        reason = watchdog.death(ended(processes))
    except Exception as error:  # a timeout, an unreadable kernel reply: keep what was saved
        reason = f"execution stopped: {type(error).__name__}: {error}"
    finally:
        watchdog.stop()
        with deferred_signals():
            settle(folder, reason)
            if kernel_log.is_file() and not kernel_log.stat().st_size:
                kernel_log.unlink()
    if reason:
        raise RunFailed(reason)
    return folder / "report.ipynb"


def ended(processes: list) -> int | None:
    """The exit status of the last kernel process started (negative: the signal that ended it),
    None where unknown."""
    process = processes[-1] if processes else None
    try:
        return process.wait(timeout=5) if process else None
    except subprocess.TimeoutExpired:
        return None


def settle(folder: Path, reason: str | None) -> None:
    """Write papermill's partial notebook whole as report.ipynb and remove it. A cell that was
    running when the run stopped is marked so (papermill calls a killed cell completed); a
    partial notebook that cannot be read (a full disk) leaves no report.ipynb, and one that
    cannot be written again (a full disk) becomes report.ipynb as it is, unmarked."""
    partial = folder / PARTIAL
    try:
        notebook = nbformat.read(partial, as_version=4)
    except (OSError, ValueError):
        partial.unlink(missing_ok=True)
        return
    if reason and not any(ERROR_MARKER_TAG in c.metadata.get("tags", []) for c in notebook.cells):
        mark_stopped_cell(notebook, reason)
    try:
        write(folder / "report.ipynb", nbformat.writes(notebook))
    except OSError:  # a full disk: the partial notebook whole, as papermill last saved it
        os.replace(partial, folder / "report.ipynb")
        return
    partial.unlink()


def mark_stopped_cell(notebook, reason: str) -> None:
    """Give the last cell that started an error output with `reason`, and papermill status
    failed; the cells after it, which never ran, status pending (papermill, its run stopped,
    calls every pending cell completed)."""
    for cell in notebook.cells:
        meta = cell.metadata.get("papermill", {})
        if not meta.get("start_time") and meta.get("status") == "completed":
            meta["status"] = "pending"
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
    except OSError as error:  # the run folder could not be written (a full disk)
        outcome.error = f"execution stopped: {type(error).__name__}: {brief(error)}"
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
