"""Where repro may write (repro.paths, kernels.kernel_dir): every place a command writes to is
checked before anything is written; a refusal is one line and exit 2, and nothing outside the
places repro owns changes. No test here starts a kernel, downloads or builds anything."""

from __future__ import annotations

import io
import json
import os
import shutil
from pathlib import Path

import pytest
from conftest import FIXTURES, repro

from repro import paths
from repro.driver import cli, integrity, kernels, lessons, wheelhouse
from repro.driver import sweep as sweeps
from repro.driver.folders import write_manifest
from repro.errors import UserError
from repro.paths import KERNELSPECS, RUNS


def refused(capsys, *argv: str) -> str:
    """The one line `repro argv` refused with (exit 2, nothing on stdout)."""
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert (code, out, err.count("\n")) == (2, "", 1) and err.startswith("repro: "), err
    return err


def files(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` and its bytes: what must not change."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def finished_run(folder: Path, run_id: str) -> Path:
    """A finished run folder (the fixture records), sealed by its manifest."""
    folder.mkdir(parents=True)
    metrics = json.loads((FIXTURES / "records" / "metrics.json").read_text())
    (folder / "metrics.json").write_text(json.dumps({**metrics, "run_id": run_id}))
    shutil.copy(FIXTURES / "records" / "environment.json", folder)
    write_manifest(folder)
    return folder


@pytest.fixture
def places(tmp_path: Path) -> dict[str, Path]:
    """Two finished runs, a sweep folder, a file: the places a runs directory must not be."""
    runs = tmp_path / "runs"
    sweep = runs / "sweep_s_12345678"
    sweep.mkdir(parents=True)
    (sweep / "sweep.yaml").write_text("axes: {steps: [5]}\n")
    (tmp_path / "notes.txt").write_text("not a folder\n")
    return {
        "a": finished_run(runs / "20260101T000000Z_a", "a"),
        "b": finished_run(runs / "20260101T000001Z_b", "b"),
        "sweep": sweep,
        "file": tmp_path / "notes.txt",
    }


def test_a_kernel_is_named_never_a_path(capsys, tmp_path, monkeypatch):
    """`kernels --rebuild ../kernelspecs/torch-cpu` once deleted that kernelspec; a path or an
    unknown name is now refused before any kernel is built, and nothing anywhere changes."""
    victim = tmp_path / "somewhere"
    victim.mkdir()
    (victim / "requirements.lock").write_text("# python: 3.12\n")
    (victim / "keep.txt").write_text("mine\n")
    monkeypatch.setattr(kernels, "KERNELS", tmp_path / "kernels")
    monkeypatch.setattr(kernels, "build", lambda *a, **k: pytest.fail("a kernel was built"))
    monkeypatch.setattr(kernels, "ensure", lambda *a, **k: pytest.fail("a kernel was built"))
    before = files(victim), files(KERNELSPECS)
    for name in (os.path.relpath(victim, KERNELSPECS), "../kernelspecs/torch-cpu", "nonexistent"):
        assert f"unknown kernel {name!r}; choose one of: " in refused(
            capsys, "kernels", "--rebuild", name
        )
    assert "(did you mean torch-cpu?)" in refused(capsys, "kernels", "--rebuild", "torch")
    refused(capsys, "kernels", "--rebuild", "torch-cpu", "nonexistent")  # none built, not one
    assert "no requirements.in for kernel '../x'" in refused(capsys, "lock", "../x")
    assert (files(victim), files(KERNELSPECS)) == before
    assert not (tmp_path / "kernels").exists()
    with pytest.raises(UserError, match="a kernel is named, not given as a path"):
        kernels.kernel_dir("../somewhere")


def runs_dir_commands(places: dict[str, Path], sweep_file: Path) -> list[list]:
    """Every command that makes folders under --runs-dir (each otherwise valid enough)."""
    a, b = places["a"], places["b"]
    return [
        ["run", "resnet-tiny"],
        ["lesson", lessons.available()[0].name],
        ["rerun", a],
        ["compare", a, b],
        ["history", a],
        ["index"],
        ["sweep", sweep_file],
    ]


@pytest.mark.parametrize(
    "where, message",
    [
        ("file", "notes.txt is a file; choose another with --runs-dir"),
        ("run", "is the run folder"),
        ("in run", "is inside the run folder"),
        ("in sweep", "is inside the sweep folder"),
    ],
)
def test_a_runs_directory_is_checked_before_anything_is_written(
    where, message, capsys, tmp_path, places
):
    """--runs-dir inside an existing run folder once nested a new folder in it (breaking its
    verify), and `compare --runs-dir FILE` printed the comparison before refusing."""
    given = {
        "file": places["file"],
        "run": places["a"],
        "in run": places["a"] / "x",
        "in sweep": places["sweep"] / "cells",
    }[where]
    sweep_file = tmp_path / "s.yaml"
    sweep_file.write_text("workload: resnet-tiny\naxes: {steps: [5]}\n")
    before = files(tmp_path)
    for argv in runs_dir_commands(places, sweep_file):
        assert message in refused(capsys, *argv, "--runs-dir", given), argv
    assert files(tmp_path) == before and not (places["a"] / "x").exists()


@pytest.mark.parametrize("value", ["../../../../tmp/x", "/etc", "..", "nightly/../../x", "", ["a"]])
def test_a_sweep_files_runs_dir_stays_under_runs(value, tmp_path):
    """A sweep file is data from anyone: its runs_dir names a folder under runs/, never
    another place (`runs_dir: ../../../../tmp/x` once put the sweep there)."""
    path = tmp_path / "s.yaml"
    path.write_text(json.dumps({"axes": {"steps": [5]}, "runs_dir": value}))
    said = "must be text" if isinstance(value, list) else "must name a folder under .*--runs-dir"
    with pytest.raises(UserError, match=f"runs_dir {said}"):
        sweeps.load(path)


def test_a_sweep_files_runs_dir_under_runs_is_kept(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(json.dumps({"axes": {"steps": [5]}, "runs_dir": "nightly"}))
    assert sweeps.load(path).runs_dir == (RUNS / "nightly").resolve()
    assert sweeps.load(path, tmp_path / "mine").runs_dir == tmp_path / "mine"  # --runs-dir wins


def test_a_state_file_names_no_comparison_outside_its_sweep(tmp_path):
    """state.json is data: a comparison folder it names elsewhere (/etc) is not this sweep's,
    and is never shown as its report."""
    path = tmp_path / "s.yaml"
    path.write_text(json.dumps({"axes": {"steps": [5]}}))
    sweep = sweeps.load(path, tmp_path / "runs")
    state = {**sweeps.new_state(sweep), "comparison": {"folder": "/etc", "runs": []}}
    assert sweeps.compare(sweep, state, "no engine", io.StringIO()) is None


def test_a_bundle_never_goes_into_a_run_folder(capsys, places):
    """`repro bundle R -o R/x.tar.gz` once added a file to R, breaking its verify."""
    run = places["a"]
    before = files(run)
    for output in (run / "x.tar.gz", run / "plots" / "x.tar.gz"):
        assert "is inside the run folder" in refused(capsys, "bundle", run, "-o", output)
    assert "is inside the run folder" in refused(capsys, "data", "digits", run / "digits")
    assert files(run) == before and integrity.check(run) == []
    assert integrity.bundle(run) == run.with_name(f"{run.name}.tar.gz")  # beside it: fine


def test_a_wheelhouse_checks_out_and_have_before_any_download(
    capsys, tmp_path, places, monkeypatch
):
    """`wheelhouse --have /etc/passwd` once downloaded 285 MiB before refusing and left an empty
    wheels/; `--out FILE` was a traceback, and --out replaced whatever folder it named."""
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "keep.txt").write_text("mine\n")
    passwd = tmp_path / "passwd"
    passwd.write_text("root:x:0:0:root:/root:/bin/bash\n")
    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing\n")
    out = tmp_path / "house"
    monkeypatch.setattr(wheelhouse, "subprocess", None)  # a download: AttributeError, exit 70
    for argv, message in [
        (["--out", places["file"]], "notes.txt is a file; choose another folder with --out"),
        (["--out", folder], "exists and is not a wheelhouse, which it would replace"),
        (["--out", places["a"] / "w"], "is inside the run folder"),
        (["--out", out, "--have", passwd], "line 1 is 'root:x:0:0:root:/root:/bin/bash'"),
        (["--out", out, "--have", empty], "is not `pip list --format=freeze` output"),
        (["--out", out, "--have", tmp_path / "missing"], "cannot read --have"),
    ]:
        assert message in refused(capsys, "wheelhouse", *argv), argv
    assert files(folder) == {"keep.txt": b"mine\n"}
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["mine", "passwd", "empty.txt", "notes.txt", "runs"]
    )


def test_a_runs_directory_is_resolved_and_may_be_made_later(tmp_path):
    given = tmp_path / "a" / ".." / "new"
    assert paths.runs_dir(given) == (tmp_path / "new").resolve()
    assert not (tmp_path / "new").exists()


def test_a_wheelhouse_is_built_aside_so_a_failed_one_leaves_nothing(tmp_path, monkeypatch):
    """pip (faked) fails, then works: `out` holds no half wheelhouse, then a whole one, which a
    later build replaces."""

    def pip(fails: bool):
        def run(command, **_):
            wheels = Path(command[command.index("-d") + 1])
            (wheels / "papermill-2.7.0-py3-none-any.whl").write_bytes(b"wheel")
            return type("Done", (), {"returncode": int(fails), "stderr": "ERROR: no network"})

        return type("Subprocess", (), {"run": staticmethod(run)})

    out = tmp_path / "house"
    monkeypatch.setattr(wheelhouse, "subprocess", pip(fails=True))
    with pytest.raises(UserError, match="pip could not download the wheelhouse: ERROR: no"):
        wheelhouse.build(out, "3.12", None)
    assert list(tmp_path.iterdir()) == []
    monkeypatch.setattr(wheelhouse, "subprocess", pip(fails=False))
    for _ in range(2):  # the second replaces the first
        assert wheelhouse.build(out, "3.12", None) == out.resolve()
        assert sorted(p.name for p in out.iterdir()) == ["install.sh", "requirements.txt", "wheels"]
    assert [p.name for p in tmp_path.iterdir()] == ["house"]


def test_a_kernels_folder_that_cannot_be_made_is_one_line(tmp_path):
    """REPRO_KERNELS_DIR below a file (as this test process has it: conftest's guard) stops a
    run that passed every other check with one line, and no run folder (it was a traceback)."""
    done = repro("run", "resnet-tiny", "-p", "steps=3", "--runs-dir", str(tmp_path / "runs"))
    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines() == [
        f"repro: cannot build kernels in {os.environ['REPRO_KERNELS_DIR']}: [Errno 20] Not a "
        f"directory: '{os.environ['REPRO_KERNELS_DIR']}'; set REPRO_KERNELS_DIR to a folder you "
        "can write, or unset it (default: .kernels in the checkout)"
    ]
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())
