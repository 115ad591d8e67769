"""Shared fixtures. Integration tests drive the real CLI in a subprocess, exactly as a user would,
with the real pinned kernels (built on first use) and a temporary runs/ folder."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path

import nbformat
import pytest

from repro import paths
from repro.driver import integrity, kernels

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).with_name("fixtures")
# seconds, not minutes: one process each (repeats=1), unless a test is about repeats; exactly
# `steps` measured (min_time=0: tests/test_run.py's family runs check min_time)
SMALL = ["-p", "batch_size=2", "-p", "steps=5", "-p", "warmup=3", "-p", "repeats=1"]
SMALL += ["-p", "min_time=0"]


# A path that cannot exist (below a file): no kernel can be found, built or started there
NO_KERNELS = "/dev/null/no-kernel-without-pytest.mark.kernel"
KERNELS_ENV = os.environ.get("REPRO_KERNELS_DIR")
# `make test` exports it; a `repro` a test starts is a CLI call unless the test runs make.
os.environ.pop("REPRO_MAKE_VARS", None)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """The `kernel` marker is honest: a test without it (its fixtures included, set up next)
    gets a kernels folder that cannot exist, in this process and in every `repro` it starts, so
    building, verifying or starting a pinned kernel fails it. (An --unpinned run uses an existing
    interpreter, which this cannot stop: tests/test_faults.py marks those.)"""
    guarded = item.get_closest_marker("kernel") is None
    kernels.KERNELS = Path(NO_KERNELS) if guarded else paths.KERNELS
    if guarded or KERNELS_ENV:
        os.environ["REPRO_KERNELS_DIR"] = NO_KERNELS if guarded else KERNELS_ENV
    else:
        os.environ.pop("REPRO_KERNELS_DIR", None)


def pytest_configure(config: pytest.Config) -> None:
    """An xdist worker (and every run it starts) keeps to its share of the cores, so two
    workers' runs never take turns on one core: a threads=1 run measured while the other worker
    is busy keeps a core of its own (its noise, not a neighbour's, is what the tests read)."""
    worker = os.environ.get("PYTEST_XDIST_WORKER")  # gw0, gw1, ...
    count = os.environ.get("PYTEST_XDIST_WORKER_COUNT")
    cores = sorted(os.sched_getaffinity(0))
    if worker and count and len(cores) >= int(count):
        os.sched_setaffinity(0, cores[int(worker.removeprefix("gw")) :: int(count)])


def other_core() -> int:
    """A core that a threads=1 run of this process (pinned to its first core) does not use."""
    mine = min(os.sched_getaffinity(0))
    return next(c for c in range(os.cpu_count() or 1) if c != mine)


@contextmanager
def kernels_lock(exclusive: bool):
    """Shared by the tests that use the pinned kernels, exclusive for one that changes them (as
    the drift test does), across pytest-xdist workers. A waiting exclusive holder keeps the gate,
    so a worker taking shared turns back to back cannot starve it."""
    base = (
        Path(tempfile.gettempdir()) / f"repro-tests-{hashlib.sha256(bytes(ROOT)).hexdigest()[:12]}"
    )
    with open(f"{base}.gate", "a") as gate, open(f"{base}.lock", "a") as lock:
        fcntl.flock(gate, fcntl.LOCK_EX)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        finally:
            fcntl.flock(gate, fcntl.LOCK_UN)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem):
    """A kernel test holds the kernels lock through its set-up (fixtures such as small_runs
    included), call and tear-down."""
    if item.get_closest_marker("kernel") is None:
        yield
        return
    with kernels_lock(exclusive=item.get_closest_marker("changes_kernels") is not None):
        yield


def small_lock(package: str) -> str:
    """A lock of one pin, `package`'s, taken from the analysis kernel's lock (a small wheel: a
    kernel of it builds in seconds)."""
    lines = (ROOT / "kernelspecs" / "analysis" / "requirements.lock").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"{package}=="))
    block = [lines[start]] + [line for line in lines[start + 1 : start + 4] if "--hash" in line]
    return "\n".join(block) + "\n"


def repro(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    """Run the `repro` CLI as a user would; output captured as text."""
    return subprocess.run(
        [sys.executable, "-m", "repro", *args], cwd=cwd, capture_output=True, text=True, timeout=900
    )


KERNEL_ENV = {  # CPU only, quiet, Keras on TensorFlow: the same conditions for every check
    "PATH": "/usr/bin:/bin",
    "CUDA_VISIBLE_DEVICES": "",
    "JAX_PLATFORMS": "cpu",
    "KERAS_BACKEND": "tensorflow",
    "TF_CPP_MIN_LOG_LEVEL": "2",
    "PYTHONPATH": str(ROOT),
}


def in_kernel(framework: str, script: Path, *args: str):
    """Run a check script in `framework`'s pinned kernel (or "analysis": the analysis kernel),
    built first if missing; return its last stdout line as JSON. The tests' own process never
    imports a framework."""
    python = kernels.ensure(framework if framework == "analysis" else f"{framework}-cpu").python
    done = subprocess.run(
        [python, script, *args],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=ROOT,
        env=KERNEL_ENV,
    )
    assert done.returncode == 0, f"{script.name} {args} in {framework}:\n{done.stderr[-4000:]}"
    return json.loads(done.stdout.strip().splitlines()[-1])


def resealed(report: Path, target: Path, change, ran: dict | None = None) -> str:
    """`report` with its rerun record changed by `change(record)`, written to `target` and sealed
    again as repro seals a report (the run context's hashes and the integrity record follow the
    record): what a colleague's other checkout, or a forger, sends. `verify` calls it intact.
    `ran`: parameters whose values its injected-parameters cell then says it ran with."""
    notebook = nbformat.read(report, as_version=4)
    meta = notebook.metadata.repro
    change(meta.rerun)
    for cell in notebook.cells:
        if "injected-parameters" in cell.metadata.get("tags", []):
            for name, value in (ran or {}).items():
                line = f"{name} = {json.dumps(value)}"  # as papermill writes an int or a str
                cell.source = re.sub(
                    rf"^{name} = .*$", lambda _, line=line: line, cell.source, flags=re.M
                )
    meta.run.lock.lock_sha256 = hashlib.sha256(meta.rerun.lock.encode()).hexdigest()
    meta.run.template.sha256 = meta.rerun.code.template.sha256
    meta.run.code.library_sha256 = meta.rerun.code.library.sha256
    meta.integrity = integrity.seal({k: v for k, v in meta.items() if k != "integrity"}, notebook)
    target.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(notebook, target)
    return str(target)


def summary_cell(notebook):
    """A report's summary cell (the run's headline and warnings), its first."""
    return next(c for c in notebook.cells if c.metadata.get("tags") == ["repro-summary"])


def run_folders(runs_dir: Path) -> list[Path]:
    return sorted(p for p in runs_dir.iterdir() if p.is_dir()) if runs_dir.exists() else []


def read_metrics(folder: Path) -> dict:
    return json.loads((folder / "metrics.json").read_text())


@pytest.fixture
def runs_dir(tmp_path: Path) -> Path:
    return tmp_path / "runs"


def shared_by_workers(tmp_path_factory) -> Path:
    """A folder this test session's pytest-xdist workers share (pytest-xdist's recipe for a
    session fixture made once): what one worker makes there, under a lock, the others reuse.
    (`xdist_group` marks cannot keep a fixture's tests on one worker: pytest 9 reads node ids
    from `Node._id`, and xdist 3.8 still writes the group into `_nodeid`, which nothing reads.)"""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


@pytest.fixture(scope="session")
def small_runs(tmp_path_factory) -> dict[str, Path]:
    """Real finished runs for the comparison, integrity and rerun tests: two identical
    resnet-tiny torch runs ("a", "b") and one with another batch size ("c"), each in four
    processes, and one in JAX, in one process. Made once per test session, by the first worker
    that asks (`shared_by_workers`); tests copy them before changing anything."""
    root = shared_by_workers(tmp_path_factory)
    made = root / "small_runs.json"
    with open(root / "small_runs.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if made.is_file():
            return {name: Path(folder) for name, folder in json.loads(made.read_text()).items()}
        runs = make_small_runs(root)
        made.write_text(json.dumps({name: str(folder) for name, folder in runs.items()}))
        return runs


def make_small_runs(root: Path) -> dict[str, Path]:
    runs = {}
    for name, framework, batch, repeats in (
        ("a", "torch", 2, 4),  # the kernel's process and three fresh ones, which the figures
        ("b", "torch", 2, 4),  # rest on (repro.stats.processes), as a default run measures
        ("c", "torch", 4, 4),
        ("jax", "jax", 2, 1),
    ):
        runs_dir = root / f"small-runs-{name}"
        done = repro(
            "run",
            "resnet-tiny",
            "-f",
            framework,
            "-p",
            f"batch_size={batch}",
            "-p",
            "steps=20",
            "-p",
            "min_time=0",
            "-p",
            "threads=1",
            "-p",
            f"repeats={repeats}",
            "--runs-dir",
            str(runs_dir),
        )
        assert done.returncode == 0, done.stderr[-3000:]
        (runs_dir / "terminal.txt").write_text(done.stdout)  # what the user saw
        runs[name] = run_folders(runs_dir)[0]
    return runs


@contextmanager
def burner(core: int | None = None, seconds: int = 60):
    """A CPU-bound process that is no descendant of ours (started through a shell that exits
    at once), pinned to `core` if given: another user's load. Killed on leaving."""
    pin = f"import os; os.sched_setaffinity(0, {{{core}}})\n" if core is not None else ""
    code = f"{pin}import time\nend = time.time() + {seconds}\nwhile time.time() < end: pass"
    started = subprocess.run(
        ["sh", "-c", f'"{sys.executable}" -c "$0" >/dev/null 2>&1 & echo $!', code],
        capture_output=True,
        text=True,
        check=True,
    )
    pid = int(started.stdout)
    try:
        yield pid
    finally:
        os.kill(pid, signal.SIGKILL)
