"""One run, top to bottom: plan -> kernel -> executed notebook -> run folder (driver side)."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from repro import __version__, kernels, memory, snapshot
from repro.errors import RunFailed, UserError, brief
from repro.execute import attempt, deferred_signals, execute, signals_interrupt
from repro.finalize import finalize, write
from repro.paths import ROOT
from repro.plan import RunPlan, equivalence


@dataclass(frozen=True)
class Run:
    folder: Path
    metrics: dict


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


MIN_FREE_VARIABLE = "REPRO_MIN_FREE_MB"  # free space a run needs (default 200 MB)


def check_runs_dir(runs_dir: Path) -> None:
    """UserError unless run folders can be written under `runs_dir` (created later if missing)
    and its disk has room for a report."""
    existing = Path(runs_dir).absolute()
    while not existing.exists():
        existing = existing.parent
    fix = "choose another with --runs-dir"
    if not existing.is_dir():
        raise UserError(f"cannot create the runs directory {runs_dir}: {existing} is a file; {fix}")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"the runs directory {runs_dir} is not writable ({existing}); {fix}")
    need = float(os.environ.get(MIN_FREE_VARIABLE, 200)) * 1e6
    free = shutil.disk_usage(existing).free
    if free < need:
        raise UserError(
            f"only {free / 1e6:.0f} MB free for {runs_dir}, a run needs {need / 1e6:.0f} MB "
            f"({MIN_FREE_VARIABLE}); free some space or {fix}"
        )


def new_folder(runs_dir: Path, label: str) -> Path:
    """<runs_dir>/<UTC time>_<label>_<short id>/, created here and never reused."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    folder = Path(runs_dir) / f"{stamp}_{label}_{secrets.token_hex(3)}"
    try:
        folder.mkdir(parents=True, exist_ok=False)
    except OSError as error:  # what check_runs_dir could not rule out (a read-only file system)
        raise UserError(f"cannot create a run folder in {runs_dir}: {error.strerror}") from None
    return folder


def run(
    plan: RunPlan,
    argv: list[str] | None = None,
    log=sys.stderr,
    force_memory: bool = False,
    addendum: Addendum = Addendum(),
) -> Run:
    """Execute `plan` (with `addendum`); the run folder is complete (status ok, failed or
    interrupted) however the run ends, short of the driver itself being killed (SIGKILL)."""
    if not force_memory:
        memory.check(plan.workload, plan.params)
    check_runs_dir(plan.runs_dir)
    kernel = (
        kernels.unpinned(plan.python)
        if plan.python
        else kernels.ensure(plan.kernel, log, lock=plan.lock, code=plan.code)
    )
    lock_check = kernels.verify(kernel, allow_drift=plan.allow_drift)
    code = snapshot.take(plan.template, plan.code)  # before running: the code that runs
    context = {
        "repro_version": __version__,
        "kernel": plan.kernel,
        "kernel_reason": plan.kernel_reason,
        "python": str(kernel.python),
        "lock": lock_check,
        "lock_file": kernels.shown(kernel.lock) if kernel.lock else None,
        "drift_allowed": plan.allow_drift,
        **snapshot.hashes(code),  # template path and sha256, library sha256
        "git": git_state()
        if plan.code == ROOT
        else {"commit": None, "dirty": None, "reason": "ran the code a report carried"},
        "equivalence": equivalence(plan.workload),
        "command": argv,
        **addendum.context,
    }
    with signals_interrupt():
        folder = new_folder(plan.runs_dir, f"{plan.workload['name']}_{plan.framework}")
        run_context = {"run_id": folder.name, **context}
        with attempt() as outcome:
            for name, text in addendum.files.items():
                write(folder / name, text)
            print(
                f"run {folder.name}: executing {plan.template.name} in kernel {kernel.spec_name}",
                file=log,
            )
            execute(plan, kernel, folder, run_context, addendum.cells)
    error = outcome.error
    with deferred_signals():
        try:
            metrics = finalize(plan, folder, run_context, code, error, outcome.interrupted)
        except OSError as failure:  # a disk that filled up meanwhile
            raise RunFailed(
                f"could not finish the run folder {folder}: {failure}"
                + (f" (the run itself: {error})" if error else "")
            ) from None
    print(f"run folder: {folder}", file=log)
    if metrics["status"] != "ok":
        raise RunFailed(
            f"run {metrics['status']}: {brief(metrics['error'])}; the partial report is in {folder}"
        )
    return Run(folder, metrics)
