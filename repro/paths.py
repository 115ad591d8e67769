"""Where things live in a checkout, and where repro may write. Built environments stay inside
the project, git-ignored. Every command that writes a folder or file the user placed asks here
first, before it writes anything: run, comparison, history and sweep folders only under a runs
directory checked once, nothing ever into a run or sweep folder that another command made.
(Kernels are built only under the kernels dir: repro.driver.kernels.kernel_dir.)"""

import os
import shutil
from pathlib import Path

from repro.bounds import setting
from repro.errors import UserError, option

ROOT = Path(__file__).resolve().parents[1]
TEMPLATES = ROOT / "templates"
KERNELSPECS = ROOT / "kernelspecs"  # committed: requirements.in + hashed lock per kernel
RUNS = ROOT / "runs"
LESSONS = ROOT / "lessons"  # one notebook per benchmarking pitfall (repro lesson NAME)
KERNELS = Path(os.environ.get("REPRO_KERNELS_DIR", ROOT / ".kernels"))  # the virtual environments
JUPYTER_DATA = ROOT / ".jupyter"  # project-local Jupyter data dir holding the kernelspecs
WORKLOADS = Path(__file__).resolve().parent / "workloads"  # one YAML spec per workload

# --- where repro may write -------------------------------------------------------------------

RECORD_FILES = ("MANIFEST.sha256", "report.partial.ipynb")  # a sealed folder; a run under way
SWEEP_FILES = ("sweep.yaml", "state.json")  # in runs/sweep_<name>_<digest>/ from its start
MIN_FREE_VARIABLE = "REPRO_MIN_FREE_MB"  # free space a run needs (default 200 MB)


def inside(path: str | Path, folder: Path) -> bool:
    """Whether `path` is `folder` or under it, once both are resolved (links, `..`)."""
    return Path(path).resolve().is_relative_to(folder.resolve())


def record_holding(path: str | Path, sweeps: bool = True) -> tuple[str, Path] | None:
    """("run", folder) for the run, comparison or history folder that `path` is or is inside
    (with `sweeps`, ("sweep", folder) for a sweep folder), or None. Only the command that made
    such a folder writes into it: a file added to a run folder breaks its manifest, a folder
    added to a sweep confuses its state."""
    path = Path(path).resolve()
    for folder in [path, *path.parents]:
        if any((folder / name).is_file() for name in RECORD_FILES):
            return "run", folder
        if (
            sweeps
            and folder.name.startswith("sweep_")
            and any((folder / name).is_file() for name in SWEEP_FILES)
        ):
            return "sweep", folder
    return None


def outside_records(
    path: str | Path, what: str, sweeps: bool = True, fix: str = "choose a place outside it"
) -> Path:
    """`path` resolved, or UserError (naming it as `what`) if a run or sweep folder holds it."""
    resolved = Path(path).resolve()
    held = record_holding(resolved, sweeps)
    if held:
        kind, record = held
        raise UserError(
            f"{what} {path} is {'' if record == resolved else 'inside '}the {kind} folder "
            f"{record}, which only the command that made it writes to; {fix}"
        )
    return resolved


def creatable(path: Path, what: str, fix: str) -> Path:
    """The nearest existing folder of `path` (a folder to make there), or UserError: a file is
    in the way, or that folder is not writable."""
    existing = Path(path).absolute()
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise UserError(f"cannot create {what} {path}: {existing} is a file; {fix}")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"{what} {path} is not writable ({existing}); {fix}")
    return existing


def check_runs_dir(runs_dir: Path, fix: str | None = None) -> None:
    """UserError unless run folders can be written under `runs_dir` (created later if missing)
    and its disk has room for a report; `fix` says where to choose another."""
    fix = fix or f"choose another with {option('--runs-dir')}"
    existing = creatable(runs_dir, "the runs directory", fix)
    need = setting(MIN_FREE_VARIABLE) * 1e6
    free = shutil.disk_usage(existing).free
    if free < need:
        raise UserError(
            f"only {free / 1e6:.0f} MB free for {runs_dir}, a run needs {need / 1e6:.0f} MB "
            f"({MIN_FREE_VARIABLE}); free some space or {fix}"
        )


def runs_dir(given: str | Path | None, default: Path = RUNS, fix: str | None = None) -> Path:
    """Where a command's new run, comparison, history or sweep folders go: `given` (else
    `default`) resolved, and checked once, up front: a folder or one that can be made, with
    room, and not inside a run or sweep folder. UserError naming the fix otherwise."""
    fix = fix or f"choose another with {option('--runs-dir')}"
    folder = Path(given or default).resolve()
    check_runs_dir(folder, fix)
    return outside_records(folder, "the runs directory", fix=fix)
