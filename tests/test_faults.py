"""Every way a run can end leaves a finalised run folder: SIGTERM, a killed kernel, the memory
watchdog, a run that cannot fit, a bad runs directory, a full disk, concurrent kernel builds and
runs. Runs use fixture notebooks in this interpreter (--unpinned: no framework, no lock check),
so each costs a kernel start, not a benchmark."""

from __future__ import annotations

import errno
import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat
import pytest
from conftest import FIXTURES, ROOT, read_metrics, repro, run_folders, small_lock

from repro import MIME, records
from repro.driver import kernels, memory, plan, snapshot
from repro.driver import scratch as scratch_module
from repro.driver.execute import PARTIAL, attempt, settle
from repro.driver.finalize import SUMMARY_TAG, finalize
from repro.driver.folders import seal, write, write_manifest
from repro.driver.integrity import MANIFEST, check
from repro.driver.scratch import scratch
from repro.errors import DriftError, RunFailed, UserError

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


def sleeping(runs_dir: Path, stderr: Path, **env: str) -> subprocess.Popen:
    """A run whose cell sleeps, once that cell is running."""
    process = start_run("sleeping", runs_dir, stderr, **env)
    deadline = time.monotonic() + 60
    while "sleeping now" not in stderr.read_text():
        assert time.monotonic() < deadline and process.poll() is None, stderr.read_text()
        time.sleep(0.2)
    return process


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
    process = sleeping(runs_dir, stderr)
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
def test_a_killed_driver_leaves_nothing_in_tmpdir_once_repro_starts_again(tmp_path, monkeypatch):
    tmp = Path(tempfile.mkdtemp(dir=scratch_module.SHORT, prefix="t"))  # short: scratch goes here
    try:
        process = sleeping(tmp_path / "runs", tmp_path / "stderr", TMPDIR=str(tmp))
        [held] = tmp.iterdir()  # the kernel's connection file and sockets, the driver's lock
        assert {"kernel.json", "kernel-ipc-1", scratch_module.HELD} <= set(os.listdir(held))
        process.kill()  # SIGKILL: nothing of the driver's runs
        process.wait()
        monkeypatch.setattr(tempfile, "tempdir", str(tmp))
        with scratch() as mine:  # the next run, or sweep
            assert not held.exists() and mine.parent == tmp
        assert not list(tmp.iterdir())
    finally:
        shutil.rmtree(tmp)


@pytest.mark.kernel
@pytest.mark.parametrize(
    "fixture, killed",  # by another process's SIGKILL (not repro's watchdog); SIGSEGV: a C bug
    [("dying", "SIGKILL (not by repro's memory watchdog)"), ("segfaulting", "SIGSEGV")],
)
def test_a_kernel_killed_mid_cell_is_reported_as_dead(fixture, killed, tmp_path):
    runs_dir = tmp_path / "runs"
    folder = finished_run(start_run(fixture, runs_dir, tmp_path / "err"), runs_dir, exit_code=1)
    metrics = read_metrics(folder)
    assert metrics["status"] == "failed"
    assert metrics["error"].startswith(f"kernel died: killed by {killed} — peak RSS ")
    assert "Run failed: kernel died" in banner(folder)
    *_, cell, after = nbformat.read(folder / "report.ipynb", as_version=4).cells
    assert cell.metadata.papermill.status == "failed"  # papermill itself says "completed"
    assert cell.outputs[-1].evalue == metrics["error"]
    assert after.metadata.papermill.status == "pending" and not after.outputs  # never ran


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


def test_a_dead_kernel_is_blamed_on_memory_only_when_the_oom_killer_struck(monkeypatch):
    kills = [7]  # the system's count of out-of-memory kills
    monkeypatch.setattr(memory, "oom_kills", lambda: kills[0])
    watchdog = memory.Watchdog()
    watchdog.total, watchdog.reserve, watchdog.peak = 24 * GiB, 1.18 * GiB, GiB
    watchdog.lowest_available = 1.99 * GiB  # short, but no process was killed for it
    assert watchdog.death(-signal.SIGKILL) == (
        "kernel died: killed by SIGKILL (not by repro's memory watchdog) — peak RSS 1.0 GiB of "
        "24.0 GiB, lowest available 2.0 GiB"
    )
    assert watchdog.death(-signal.SIGSEGV).startswith("kernel died: killed by SIGSEGV — peak")
    assert watchdog.death(3).startswith("kernel died: exit code 3 — peak RSS 1.0 GiB")
    kills[0] += 1  # the OOM killer struck between two samples
    assert watchdog.death(-signal.SIGKILL) == (
        "kernel died: out of memory, killed by the system's OOM killer — peak RSS 1.0 GiB of "
        "24.0 GiB"
    )
    assert watchdog.death(-signal.SIGSEGV).startswith("kernel died: killed by SIGSEGV")


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
    lock.write_text(small_lock("packaging"))
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


def full_disk(monkeypatch, room: int) -> None:
    """A disk with `room` bytes left for each file repro writes (folders.write: a temporary
    file, then renamed), whatever the check before the run found."""
    write_bytes = Path.write_bytes

    def full(path: Path, data: bytes) -> int:
        if len(data) > room:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return write_bytes(path, data)

    monkeypatch.setattr(Path, "write_bytes", full)


def executed(folder: Path, report: bool = True):
    """A run folder as a run leaves it to be finalised (report.ipynb: one published result),
    and finalize's other arguments."""
    request = plan.resolve("resnet-tiny", "torch", {}, unpinned_python=sys.executable)
    folder.mkdir()
    if report:
        samples = {"batch_size": 1, "first_call_s": 0.1, "warmup_s": [], "step_s": [0.1, 0.1]}
        result = {"kind": "metrics", "data": {"samples": samples}}
        cell = nbformat.v4.new_code_cell("publish()")
        cell.outputs = [
            nbformat.v4.new_output("display_data", data={MIME: result, "text/plain": "x"})
        ]
        nbformat.write(nbformat.v4.new_notebook(cells=[cell]), folder / "report.ipynb")
    context = {"run_id": folder.name, "lock": None, "git": {"commit": None, "dirty": None}}
    return request, folder, context, snapshot.take(request.template, request.code)


def test_a_disk_that_fills_up_leaves_a_failed_folder_with_what_it_must_hold(tmp_path, monkeypatch):
    folder = tmp_path / "run"
    args = executed(folder)
    full_disk(monkeypatch, room=100_000)  # the report: yes; with the code it carries, or HTML: no
    metrics = finalize(*args)
    assert metrics.status == "failed" and metrics.samples  # what was measured is kept
    assert metrics.error == "could not write the run folder: [Errno 28] No space left on device"
    assert sorted(p.name for p in folder.iterdir()) == [MANIFEST, "metrics.json", "report.ipynb"]
    assert not check(folder)  # intact, sealed
    assert f"Run failed: {metrics.error}" in banner(folder)


@pytest.mark.parametrize("report", [True, False])
def test_a_disk_with_no_room_for_a_failed_folder_keeps_what_the_run_wrote(
    report, tmp_path, monkeypatch
):
    folder = tmp_path / "run"
    args = executed(folder, report)
    ran = (folder / "report.ipynb").read_bytes() if report else None
    full_disk(monkeypatch, room=0)
    with pytest.raises(RunFailed) as failed:
        finalize(*args, error="cell 3 raised ValueError: x")
    why = "could not write the run folder: [Errno 28] No space left on device (the run itself: "
    assert str(failed.value).startswith(why + "cell 3 raised ValueError: x); ")
    if report:  # an unfinished run, as it ran: nothing half-written
        assert [p.name for p in folder.iterdir()] == ["report.ipynb"]
        assert (folder / "report.ipynb").read_bytes() == ran
        assert str(failed.value).endswith(
            f"{folder} keeps what the run wrote (its report as the run left it)"
        )
    else:  # nothing that looks like a run
        assert not folder.exists() and str(failed.value).endswith(f"({folder} removed)")


def test_a_run_folder_that_cannot_be_written_before_the_notebook_runs_is_a_failed_run():
    with attempt() as outcome:  # `repro rerun` writes the original's results there first
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    assert outcome.error == "execution stopped: OSError: [Errno 28] No space left on device"


def test_a_report_that_cannot_be_written_again_is_kept_as_papermill_saved_it(tmp_path, monkeypatch):
    cell = nbformat.v4.new_code_cell("x")
    (tmp_path / PARTIAL).write_text(nbformat.writes(nbformat.v4.new_notebook(cells=[cell])))
    saved = (tmp_path / PARTIAL).read_bytes()
    full_disk(monkeypatch, room=0)
    settle(tmp_path, "kernel died")
    assert [p.name for p in tmp_path.iterdir()] == ["report.ipynb"]
    assert (tmp_path / "report.ipynb").read_bytes() == saved


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
    assert records.survey([runs])[0] == [runs / "1_ok", runs / "2_ok"]  # a folder of runs
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


def test_a_scratch_folder_goes_when_done_or_at_the_next_start_after_its_holder_was_killed(
    tmp_path, monkeypatch
):
    long = tmp_path / ("t" * 80)  # a TMPDIR too long for sockets: not used
    long.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(long))
    hold = "from repro.driver.scratch import scratch\nwith scratch() as s: print(s); input()"
    holder = subprocess.Popen(
        [sys.executable, "-u", "-c", hold],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env={**os.environ, "TMPDIR": str(long)},
    )
    held = Path(holder.stdout.readline().decode().strip())
    with scratch() as mine:
        assert len(str(mine)) <= scratch_module.MAX and mine.stat().st_mode & 0o777 == 0o700
        assert held.is_dir() and mine.parent == held.parent  # in use: kept
    assert not mine.exists()
    holder.kill()  # SIGKILL: its folder stays, until the next start
    holder.wait()
    assert held.is_dir()
    with scratch():
        assert not held.exists()
    assert not list(long.iterdir())
