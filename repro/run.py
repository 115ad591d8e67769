"""One run, top to bottom: plan -> kernel -> executed notebook -> run folder (driver side)."""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from repro import __version__, kernels, snapshot
from repro.errors import RunFailed, UserError, brief
from repro.execute import execute
from repro.finalize import finalize, write
from repro.paths import ROOT
from repro.plan import RunPlan, equivalence


@dataclass(frozen=True)
class Run:
    folder: Path
    metrics: dict


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


def new_folder(runs_dir: Path, label: str) -> Path:
    """<runs_dir>/<UTC time>_<label>_<short id>/, created here and never reused."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    folder = Path(runs_dir) / f"{stamp}_{label}_{secrets.token_hex(3)}"
    try:
        folder.mkdir(parents=True, exist_ok=False)
    except OSError as error:  # a path plan.runs_folder could not rule out (/proc, read-only)
        raise UserError(f"cannot create a run folder in {runs_dir}: {error.strerror}") from None
    return folder


def run(plan: RunPlan, argv: list[str] | None = None, log=sys.stderr) -> Run:
    """Execute `plan`; the run folder is complete (status ok or failed) unless a bug intervenes."""
    kernel = (
        kernels.unpinned(plan.python)
        if plan.python
        else kernels.ensure(plan.kernel, log, lock=plan.lock, code=plan.code)
    )
    lock_check = kernels.verify(kernel, allow_drift=plan.allow_drift)
    code = snapshot.take(plan.template, plan.code)  # before running: the code that runs
    folder = new_folder(plan.runs_dir, f"{plan.workload['name']}_{plan.framework}")
    run_context = {
        "run_id": folder.name,
        "repro_version": __version__,
        "kernel": plan.kernel,
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
        "rerun_of": plan.reference["metrics"]["run_id"] if plan.reference else None,
    }
    if plan.reference:  # what the rerun verdict compares with, kept in the run folder
        for name, content in plan.reference.items():
            write(folder / "original" / f"{name}.json", json.dumps(content, indent=1) + "\n")
    print(
        f"run {folder.name}: executing {plan.template.name} in kernel {kernel.spec_name}", file=log
    )
    error = None
    try:
        execute(plan, kernel, folder, run_context)
    except RunFailed as failure:
        error = str(failure)
    except KeyboardInterrupt:
        error = "interrupted by the user"
    metrics = finalize(plan, folder, run_context, code, error)
    print(f"run folder: {folder}", file=log)
    if metrics["status"] != "ok":
        raise RunFailed(f"run failed: {brief(metrics['error'])}; the partial report is in {folder}")
    return Run(folder, metrics)
