"""Every way a run can end leaves a finalised run folder: SIGTERM, a killed kernel, the memory
watchdog, a run that cannot fit, a bad runs directory, a full disk, concurrent kernel builds and
runs. Runs use fixture notebooks in this interpreter (--unpinned: no framework, no lock check),
so each costs a kernel start, not a benchmark."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest
from conftest import FIXTURES, ROOT, read_metrics, repro, run_folders

from repro import records
from repro.driver import kernels, memory, plan
from repro.driver.execute import PARTIAL, settle
from repro.driver.finalize import SUMMARY_TAG
from repro.driver.folders import seal, write, write_manifest
from repro.driver.integrity import check
from repro.errors import DriftError, UserError

GiB = 2**30


def start_run(fixture: str, runs_dir: Path, stderr: Path, **env: str) -> subprocess.Popen:
    """`repro run resnet-tiny --template tests/fixtures/<fixture>.ipynb`, in the background."""
    return subprocess.Popen(
        [sys.executable, "-m", "repro", "run", "resnet-tiny", "--unpinned", "--python"]
        + [sys.executable, "--template", str(FIXTURES / f"{fixture}.ipynb")]
        + ["--runs-dir", str(runs_dir)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=stderr.open("w"),
        env={**os.environ, **env},
    )


def finished_run(process: subprocess.Popen, runs_dir: Path, exit_code: int) -> Path:
    """The one run folder, after checking the exit code, that it verifies and that nothing
    temporary is left."""
    assert process.wait(timeout=120) == exit_code
    [folder] = run_folders(runs_dir)
    assert not list(folder.rglob("*.tmp")) and not (folder / PARTIAL).exists()
    done = repro("verify", str(folder))
    assert done.returncode == 0, done.stdout
    return folder


def banner(folder: Path) -> str:
    """The first cell of the report: its title says how the run ended, its warnings why."""
    first = nbformat.read(folder / "report.ipynb", as_version=4).cells[0]
    assert SUMMARY_TAG in first.metadata.get("tags", [])
    assert first.source.splitlines()[0].endswith(("run failed", "run interrupted"))
    return first.source


@pytest.mark.kernel
@pytest.mark.parametrize(
    "signum, reason",
    [
        (signal.SIGTERM, "interrupted by SIGTERM"),
        (signal.SIGINT, "interrupted by the user (Ctrl-C)"),
    ],
)
def test_a_signal_finalises_the_run_as_interrupted(signum, reason, tmp_path):
    runs_dir, stderr = tmp_path / "runs", tmp_path / "stderr"
    process = start_run("sleeping", runs_dir, stderr)
    deadline = time.monotonic() + 60
    while "sleeping now" not in stderr.read_text():  # the cell is running
        assert time.monotonic() < deadline and process.poll() is None, stderr.read_text()
        time.sleep(0.2)
    process.send_signal(signum)
    folder = finished_run(process, runs_dir, exit_code=1)
    metrics = read_metrics(folder)
    assert metrics["status"] == "interrupted" and metrics["error"] == reason
    assert f"Run interrupted: {reason}" in banner(folder)
    assert f"repro: run interrupted: {reason}" in stderr.read_text()
    assert "Traceback" not in stderr.read_text()  # the kernel was stopped, not left to complain
    cell = nbformat.read(folder / "report.ipynb", as_version=4).cells[-1]
    assert cell.metadata.papermill.status == "failed"  # the running cell, not left "running"
    assert "sleeping now" in json.dumps(cell.outputs)


@pytest.mark.kernel
@pytest.mark.parametrize("fixture", ["dying", "segfaulting"])  # SIGKILL; SIGSEGV, as a C bug
def test_a_kernel_killed_mid_cell_is_reported_as_dead(fixture, tmp_path):
    runs_dir = tmp_path / "runs"
    folder = finished_run(start_run(fixture, runs_dir, tmp_path / "err"), runs_dir, exit_code=1)
    metrics = read_metrics(folder)
    assert metrics["status"] == "failed" and metrics["error"].startswith("kernel died")
    assert "peak RSS" in metrics["error"] and "Run failed: kernel died" in banner(folder)
    cell = nbformat.read(folder / "report.ipynb", as_version=4).cells[-1]
    assert cell.metadata.papermill.status == "failed"  # papermill itself says "completed"
    assert cell.outputs[-1].evalue == metrics["error"]


@pytest.mark.kernel
def test_the_memory_watchdog_stops_a_kernel_before_memory_runs_out(tmp_path):
    runs_dir = tmp_path / "runs"
    process = start_run("allocating", runs_dir, tmp_path / "err", REPRO_MEMORY_LIMIT_MB="250")
    folder = finished_run(process, runs_dir, exit_code=1)
    error = read_metrics(folder)["error"]
    assert error.startswith("stopped: out of memory — kernel RSS ") and "limit 0.24 GiB" in error
    assert f"Run failed: {error}" in banner(folder)


def test_the_watchdog_keeps_the_machine_from_running_out(monkeypatch):
    child = subprocess.Popen(["sleep", "60"])  # stands for the kernel: this process's child
    watchdog = memory.Watchdog()
    watchdog.reserve = 1  # byte: the child holds more than the machine has left
    monkeypatch.setattr(memory, "meminfo", lambda: {"MemTotal": 24 * GiB, "MemAvailable": 0})
    watchdog.sample()
    assert child.wait(timeout=10) == -signal.SIGKILL
    assert watchdog.reason.startswith("stopped: out of memory — kernel RSS ")
    assert watchdog.reason.endswith(", 0.00 GiB left available, limit: keep 0.00 GiB free")
    assert watchdog.death() == watchdog.reason


def test_a_dead_kernel_is_blamed_on_memory_only_when_memory_was_short():
    watchdog = memory.Watchdog()
    watchdog.total, watchdog.reserve, watchdog.peak = 24 * GiB, GiB, GiB
    watchdog.lowest_available = 20 * GiB
    assert watchdog.death() == "kernel died — peak RSS 1.0 GiB of 24.0 GiB, memory was not short"
    watchdog.lowest_available = GiB  # the system's OOM killer struck between two samples
    assert watchdog.death().startswith("kernel died: out of memory — peak RSS 1.0 GiB of 24.0")


@pytest.mark.kernel
def test_eight_concurrent_runs_leave_eight_intact_folders(tmp_path):
    runs_dir = tmp_path / "runs"
    processes = [start_run("quick", runs_dir, tmp_path / f"err{i}") for i in range(8)]
    assert [p.wait(timeout=300) for p in processes] == [0] * 8
    folders = run_folders(runs_dir)
    assert len(folders) == 8
    assert all(read_metrics(f)["status"] == "ok" and not check(f) for f in folders)


@pytest.mark.kernel  # builds a kernel (of one small wheel, from PyPI)
def test_kernel_builds_wait_for_each_other_and_build_once(tmp_path):
    lock = tmp_path / "requirements.lock"  # one small pure-Python wheel from a real lock
    lines = (ROOT / "kernelspecs" / "analysis" / "requirements.lock").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("packaging=="))
    block = [lines[start]] + [line for line in lines[start + 1 : start + 4] if "--hash" in line]
    lock.write_text("\n".join(block) + "\n")
    build = (
        "import sys; from pathlib import Path; from repro.driver import kernels; "
        "print(kernels.build('analysis', Path(sys.argv[1]), reuse=True).python)"
    )
    kernels_dir = tmp_path / "kernels"
    kernels_dir.mkdir()
    env = {**os.environ, "REPRO_KERNELS_DIR": str(kernels_dir)}
    with open(kernels_dir / "analysis.lock", "w") as held:  # a build in progress elsewhere
        fcntl.flock(held, fcntl.LOCK_EX)
        builders = [
            subprocess.Popen(
                [sys.executable, "-c", build, lock],
                cwd=ROOT,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(2)
        ]
        for builder in builders:
            assert builder.stderr.readline().startswith("waiting for another process building")
    done = [builder.communicate(timeout=300) for builder in builders]
    assert [builder.returncode for builder in builders] == [0, 0], done
    assert sum("building kernel analysis from" in err for _, err in done) == 1  # built once
    python = done[0][0].strip()
    assert python == done[1][0].strip()
    assert subprocess.run([python, "-c", "import packaging"]).returncode == 0


def test_a_run_that_cannot_fit_is_refused_from_its_estimate():
    fits = {n for n, s in plan.workloads().items() if s.get("preset") == "small"} | {"resnet-50"}
    for name in fits:
        for mode in ("inference", "training"):
            request = plan.resolve(name, "torch", {"mode": mode})
            memory.check(request.workload, request.params, available=24 * GiB)
    big = plan.resolve("gpt-neo-2.7b", "torch", {"mode": "training"})
    with pytest.raises(UserError, match=r"needs about 40\.5 GiB .*--force-memory"):
        memory.check(big.workload, big.params, available=24 * GiB)


def test_the_cli_refuses_a_run_that_cannot_fit_before_any_work(tmp_path):
    big = plan.resolve("gpt-neo-2.7b", "torch", {"mode": "training"})
    if memory.estimate(big.workload, big.params)[0] < memory.meminfo().get("MemAvailable", 0):
        pytest.skip("this machine has the memory for gpt-neo-2.7b training")
    done = repro("run", "gpt-neo-2.7b", "-p", "mode=training", "--runs-dir", str(tmp_path / "r"))
    assert done.returncode == 2 and done.stderr.count("\n") == 1
    assert "needs about 40.5 GiB" in done.stderr and "--force-memory" in done.stderr
    assert not (tmp_path / "r").exists()


def test_an_unusable_runs_directory_is_refused_before_any_work(tmp_path):
    (tmp_path / "file").write_text("")
    args = ["run", "resnet-tiny", "--unpinned", "--runs-dir"]
    done = repro(*args, str(tmp_path / "file" / "runs"))
    assert done.returncode == 2 and done.stderr.startswith("repro: cannot create the runs dir")
    assert done.stderr.count("\n") == 1
    full = subprocess.run(
        [sys.executable, "-m", "repro", *args, str(tmp_path / "runs")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "REPRO_MIN_FREE_MB": "1e12"},  # more than any disk has
    )
    assert full.returncode == 2 and "a run needs 1000000000000 MB" in full.stderr
    assert not (tmp_path / "runs").exists()


def test_a_failed_write_leaves_no_temporary_file(tmp_path):
    (tmp_path / "report.ipynb").mkdir()  # the rename onto it fails, as a full disk would
    with pytest.raises(OSError):
        write(tmp_path / "report.ipynb", "{}")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.ipynb"]


def test_a_truncated_partial_report_never_becomes_report_ipynb(tmp_path):
    (tmp_path / PARTIAL).write_text('{"cells": [{"cell_type": "mark')  # a disk that filled up
    settle(tmp_path, "kernel died")
    assert list(tmp_path.iterdir()) == []


def fake_run(folder: Path, status: str = "ok") -> Path:
    """A run folder as compare reads it: a real run's metrics.json and environment.json."""
    folder.mkdir(parents=True)
    metrics = json.loads((FIXTURES / "records" / "metrics.json").read_text())
    metrics |= {"status": status, "run_id": folder.name}  # a run of its own, not a copy
    (folder / "metrics.json").write_text(json.dumps(metrics))
    shutil.copy(FIXTURES / "records" / "environment.json", folder)
    return folder


def test_compare_skips_and_lists_what_is_not_a_finished_run(tmp_path):
    runs = tmp_path / "runs"
    fake_run(runs / "1_ok")
    fake_run(runs / "2_ok")
    fake_run(runs / "3_failed", "failed")
    fake_run(runs / "4_interrupted", "interrupted")
    (runs / "5_killed").mkdir()  # the driver got SIGKILL: a partial notebook only
    (runs / "5_killed" / PARTIAL).write_text("{}")
    (runs / "6_compare").mkdir()
    (runs / "6_compare" / "comparison.json").write_text("{}")
    (runs / "1_ok.tar.gz").write_text("")
    done = repro("compare", "--no-report", *sorted(map(str, runs.iterdir())))  # a shell glob
    assert done.returncode == 0, done.stderr
    assert "2_ok vs 1_ok" in done.stdout
    for name, why in [
        ("1_ok.tar.gz", "a file, not a run folder (a bundle: unpack it first)"),
        ("3_failed", "a failed run"),
        ("4_interrupted", "an interrupted run"),
        ("5_killed", "an unfinished run (no metrics.json"),
        ("6_compare", "a comparison, not a run"),
    ]:
        assert f"{runs / name}: {why}" in done.stderr
    assert records.expand([runs]) == [runs / "1_ok", runs / "2_ok"]  # a folder of runs
    done = repro("compare", "--no-report", str(runs / "1_ok"), str(runs / "3_failed"))
    assert done.returncode == 2 and "at least two finished runs, got 1" in done.stderr


def test_a_report_in_its_run_folder_is_verified_with_the_folder(tmp_path):
    folder = fake_run(tmp_path / "run")
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# 700 samples/s")])
    seal(notebook, folder, status="ok")
    write_manifest(folder)
    report = folder / "report.ipynb"
    assert check(report) == [] and check(folder) == []
    metrics = json.loads((folder / "metrics.json").read_text())
    metrics["summary"]["throughput"]["samples_per_s"] *= 2  # the number beside the report
    (folder / "metrics.json").write_text(json.dumps(metrics))
    done = repro("verify", str(report))
    assert done.returncode == 1
    assert done.stdout.splitlines() == [
        "CHANGED: metrics.json was modified",
        f"{report}: 1 changes",
    ]
    alone = tmp_path / "shared.ipynb"  # the same report sent on its own: only its own hashes
    shutil.copyfile(report, alone)
    assert check(alone) == []


@pytest.mark.parametrize(
    ("allow_drift", "offered"), [(False, True), (None, False)]
)  # None: rerun, lesson, compare, history and kernels have no --allow-drift
def test_a_drift_error_offers_only_options_the_command_has(monkeypatch, allow_drift, offered):
    drifted = {"lock_sha256": "0" * 64, "versions": ["numpy: locked 2.0, installed 2.1"]}
    done = subprocess.CompletedProcess([], 0, json.dumps({**drifted, "ok": False}), "")
    monkeypatch.setattr(kernels, "_run", lambda *args, **kwargs: done)
    kernel = kernels.Kernel("torch-cpu", Path(sys.executable), Path("requirements.lock"))
    with pytest.raises(DriftError) as drift:
        kernels.verify(kernel, allow_drift)
    assert "version numpy: locked 2.0, installed 2.1" in str(drift.value)
    assert "make kernels REBUILD=1" in str(drift.value)
    assert ("--allow-drift" in str(drift.value)) is offered


def test_verify_names_a_run_whose_driver_was_killed(tmp_path):
    (tmp_path / PARTIAL).write_text("{}")
    done = repro("verify", str(tmp_path))
    assert done.returncode == 1 and "is an unfinished run: no metrics.json" in done.stdout
