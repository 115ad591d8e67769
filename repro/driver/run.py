"""One run, top to bottom: plan -> kernel -> executed notebook -> run folder (driver side)."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from repro import __version__
from repro.driver import kernels, memory, snapshot
from repro.driver.execute import attempt, deferred_signals, execute, signals_interrupt
from repro.driver.finalize import finalize
from repro.driver.folders import new_folder, write
from repro.driver.plan import RunPlan, equivalence
from repro.driver.talk import Talk, talking
from repro.errors import RunFailed, brief
from repro.paths import ROOT, check_runs_dir
from repro.records import Metrics


@dataclass(frozen=True)
class Result:
    """Where a run left its folder, and its metrics (status ok, failed or interrupted)."""

    folder: Path
    metrics: Metrics


class Stopped(RunFailed):
    """A run that failed or was interrupted: its folder is finished all the same (`result`)."""

    def __init__(self, message: str, result: Result) -> None:
        super().__init__(message)
        self.result = result


@dataclass(frozen=True)
class Addendum:
    """What a caller adds to a run (`repro rerun`: the original's results and the verdict):
    files written into the run folder before the notebook runs, cells run after the
    template's, and facts added to the run context."""

    files: dict[str, str] = field(default_factory=dict)  # path inside the run folder: text
    cells: tuple = ()  # nbformat cells
    context: dict = field(default_factory=dict)


def git_state() -> dict:
    """The project's commit and whether the working tree differs from it."""
    try:
        commit = subprocess.run(
            ["git", "-C", ROOT, "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        status = subprocess.run(
            ["git", "-C", ROOT, "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError) as error:
        return {"commit": None, "dirty": None, "reason": f"git unavailable: {error}"}
    return {"commit": commit, "dirty": bool(status.strip()), "reason": None}


def run(
    plan: RunPlan,
    argv: list[str] | None = None,
    log=sys.stderr,
    force_memory: bool = False,
    addendum: Addendum = Addendum(),
) -> Result:
    """Execute `plan` (with `addendum`); the run folder is complete (status ok, failed or
    interrupted) however the run ends, short of the driver itself being killed (SIGKILL)."""
    if not force_memory:
        memory.check(plan.workload, plan.params)
    check_runs_dir(plan.runs_dir)
    with talking(log) as log:
        result = steps(plan, argv, log, addendum)
    if result.metrics.status != "ok":
        raise Stopped(
            f"run {result.metrics.status}: {brief(result.metrics.error)}; the partial report is "
            f"in {result.folder}",
            result,
        )
    return result


def steps(plan: RunPlan, argv: list[str] | None, log: Talk, addendum: Addendum) -> Result:
    """The run, however it ends, telling `log` what it is doing."""
    kernel = (
        kernels.unpinned(plan.python)
        if plan.python
        else kernels.ensure(plan.kernel, log, lock=plan.lock, code=plan.code)
    )
    with log.phase(f"checking kernel {kernel.name} against its lock"):
        lock_check = kernels.verify(kernel, allow_drift=plan.allow_drift)
    code = snapshot.take(plan.template, plan.code)  # before running: the code that runs
    context = {
        "repro_version": __version__,
        "kernel": plan.kernel,
        "kernel_reason": plan.kernel_reason,
        "python": str(kernel.python),
        "lock": lock_check,
        "lock_file": kernels.shown(kernel.lock) if kernel.lock else None,
        "drift_allowed": bool(plan.allow_drift),
        **snapshot.hashes(code),  # template path and sha256, library sha256
        "git": git_state()
        if plan.code == ROOT or "rerun_of" not in addendum.context  # or a user's file beside it
        else {"commit": None, "dirty": None, "reason": "ran the code a report carried"},
        "equivalence": equivalence(plan.workload),
        "command": argv,
        **addendum.context,
    }
    with signals_interrupt():
        folder = new_folder(plan.runs_dir, plan.label)
        run_context = {"run_id": folder.name, **context}
        with attempt() as outcome:
            for name, text in addendum.files.items():
                write(folder / name, text)
            print(
                f"run {folder.name}: executing {plan.template.name} in kernel {kernel.spec_name}",
                file=log,
            )
            execute(plan, kernel, folder, run_context, addendum.cells, log)
    with deferred_signals(), log.phase("writing the report"):
        metrics = finalize(plan, folder, run_context, code, outcome.error, outcome.interrupted)
    return Result(folder, metrics)
