"""repro verify names whatever was edited after a run; repro bundle packs a run to share."""

from __future__ import annotations

import json
import shutil
import tarfile

import nbformat
import pytest
from conftest import repro

pytestmark = pytest.mark.kernel


def copy(folder, tmp_path):
    return shutil.copytree(folder, tmp_path / folder.name)


def test_an_untouched_run_folder_bundle_and_report_are_intact(small_runs, tmp_path):
    folder = small_runs["a"]
    assert repro("verify", str(folder)).returncode == 0
    alone = tmp_path / "shared.ipynb"
    shutil.copyfile(folder / "report.ipynb", alone)  # a report sent on its own
    assert repro("verify", str(alone)).returncode == 0
    bundled = repro("bundle", str(folder), "-o", str(tmp_path / "run.tar.gz"))
    assert bundled.returncode == 0, bundled.stderr
    done = repro("verify", str(tmp_path / "run.tar.gz"))
    assert done.returncode == 0 and "intact" in done.stdout
    again = repro("bundle", str(folder), "-o", str(tmp_path / "run.tar.gz"))
    assert again.returncode == 2 and "exists already" in again.stderr


def test_an_edited_number_in_metrics_json_is_named(small_runs, tmp_path):
    folder = copy(small_runs["a"], tmp_path)
    metrics = json.loads((folder / "metrics.json").read_text())
    metrics["summary"]["throughput"]["samples_per_s"] *= 2
    (folder / "metrics.json").write_text(json.dumps(metrics))
    done = repro("verify", str(folder))
    assert done.returncode == 1
    assert "CHANGED: metrics.json was modified" in done.stdout


def test_an_edited_output_in_the_report_is_named_even_in_the_notebook_alone(small_runs, tmp_path):
    folder = copy(small_runs["a"], tmp_path)
    report = folder / "report.ipynb"
    notebook = nbformat.read(report, as_version=4)
    index = next(i for i, c in enumerate(notebook.cells) if "report.results(" in c.source)
    output = notebook.cells[index].outputs[0]
    output.data["text/markdown"] = output.data["text/markdown"].replace("|", "| 9", 3)
    nbformat.write(notebook, report)
    for target in (folder, report):
        done = repro("verify", str(target))
        assert done.returncode == 1
        assert f"cell {index} changed: metrics = report.results(" in done.stdout
    assert "report.ipynb was modified" in repro("verify", str(folder)).stdout


def test_a_swapped_plot_and_an_added_file_are_named(small_runs, tmp_path):
    folder = copy(small_runs["a"], tmp_path)
    shutil.copyfile(
        folder / "plots" / "latency_distribution.png", folder / "plots" / "step_times.png"
    )
    (folder / "notes.txt").write_text("added later")
    done = repro("verify", str(folder))
    assert done.returncode == 1
    assert "plots/step_times.png was modified" in done.stdout
    assert "notes.txt is not in the manifest" in done.stdout


def test_checkpoints_another_jupyter_left_are_no_part_of_the_run(small_runs, tmp_path):
    folder = copy(small_runs["a"], tmp_path)
    left = folder / ".ipynb_checkpoints"  # what Jupyter writes beside a notebook it saves
    left.mkdir()
    (left / "report-checkpoint.ipynb").write_text("{}")
    (folder / "plots" / ".ipynb_checkpoints").mkdir()
    done = repro("verify", str(folder))
    assert done.returncode == 0 and "intact" in done.stdout, done.stdout
    bundle = tmp_path / "run.tar.gz"
    assert repro("bundle", str(folder), "-o", str(bundle)).returncode == 0
    with tarfile.open(bundle) as tar:
        names = tar.getnames()
    assert "report.ipynb" in {n.rsplit("/", 1)[-1] for n in names}
    assert not [n for n in names if ".ipynb_checkpoints" in n]
    # a bundle that carries them (packed by hand, or by an older repro) verifies, so a
    # colleague's rerun, which verifies first, accepts it
    carried = tmp_path / "carried.tar.gz"
    with tarfile.open(carried, "w:gz") as tar:
        tar.add(folder, arcname=folder.name)
    done = repro("verify", str(carried))
    assert done.returncode == 0 and "intact" in done.stdout, done.stdout


def test_cells_run_again_are_named_in_one_line(small_runs, tmp_path):
    folder = copy(small_runs["a"], tmp_path)
    report = folder / "report.ipynb"
    notebook = nbformat.read(report, as_version=4)
    code = [i for i, c in enumerate(notebook.cells) if c.cell_type == "code" and c.outputs]
    for i in code[-3:]:  # run again: new outputs
        notebook.cells[i].outputs = [nbformat.v4.new_output("stream", text="again\n")]
    nbformat.write(notebook, report)
    done = repro("verify", str(report))
    assert done.returncode == 1
    lines = [line for line in done.stdout.splitlines() if "cells changed" in line]
    assert lines == [
        f"CHANGED: 3 cells changed since the run (edited, or run again): "
        f"{', '.join(map(str, code[-3:]))}; cell {code[-3]} changed: "
        + notebook.cells[code[-3]].source.strip().splitlines()[0][:60]
    ]
