"""Lessons (lessons/*.ipynb): each runs like any run into a report of record that verifies, and
the claim at its centre held on the machine that ran it; a claim that did not hold says why.
"""

from __future__ import annotations

import re
import shutil

import nbformat
import pytest
from conftest import read_metrics, repro, run_folders

from repro.driver import lessons
from repro.errors import UserError
from repro.paths import ROOT

# lesson: the framework its test runs in, and the claims that must hold there (by index); the
# others must hold or say why not. Every lesson in lessons/ has a row (checked below).
CENTRAL = {
    "async-dispatch": ("jax", (0,)),  # unsynchronised timing < 10% of synchronised
    "cold-start": ("jax", (0, 1)),  # the first call compiles; a naive mean overstates > 2x
    "noise": ("torch", (0,)),  # a loaded machine slows the step and is flagged busy
    "threads": ("torch", (0,)),  # the thread count alone moves throughput by 1.2x or more
    "precision": ("torch", (0,)),  # bf16 and fp16 differ from fp32 beyond the tolerance
    "batch-size": ("torch", (0, 1)),  # throughput and latency both rise with the batch
    "same-model": ("torch", (0, 1, 2)),  # same parameter count; outputs and FLOPs differ
    "determinism": ("torch", (0, 2, 3)),  # seeds fix weights, not other generators or sums
}


def test_every_lesson_is_tested_listed_and_linked_from_the_readme():
    found = lessons.available()
    assert [lesson.name for lesson in found] and {lesson.name for lesson in found} == set(CENTRAL)
    assert [lesson.order for lesson in found] == sorted({lesson.order for lesson in found})
    readme = (ROOT / "README.md").read_text()
    listing = repro("lesson")
    assert listing.returncode == 0
    for lesson in found:
        assert f"lessons/{lesson.name}.ipynb" in readme, f"README does not link {lesson.name}"
        assert f"{lesson.name} (" in listing.stdout
        notebook = nbformat.read(lesson.path, as_version=4)
        tags = [c.metadata.get("tags", []) for c in notebook.cells]
        assert ["parameters"] in tags, f"{lesson.name} has no parameters cell"
        outputs = [c for c in notebook.cells if c.cell_type == "code" and c.outputs]
        assert not outputs, f"{lesson.name} is committed with outputs"


def test_a_lesson_asked_for_wrongly_gets_one_line():
    unknown = repro("lesson", "no-such-lesson")
    assert unknown.returncode == 2
    said = r"repro: unknown lesson 'no-such-lesson'; choose one of: .+\n"
    assert re.fullmatch(said, unknown.stderr)
    wrong = repro("lesson", "async-dispatch", "-f", "mxnet")
    assert wrong.returncode == 2 and "use --framework jax" in wrong.stderr
    bad = repro("lesson", "async-dispatch", "-p", "batch_size=0")
    assert bad.returncode == 2 and len(bad.stderr.splitlines()) == 1, bad.stderr


@pytest.mark.parametrize(
    "metadata",
    [
        {},
        {"lesson": "threads"},
        {"lesson": {"order": 9, "teaches": "x", "workload": "resnet-tiny"}},
    ],
)
def test_a_notebook_in_lessons_that_is_no_lesson_breaks_no_other(metadata, tmp_path, monkeypatch):
    shutil.copy(lessons.LESSONS / "threads.ipynb", tmp_path)
    nbformat.write(nbformat.v4.new_notebook(metadata=metadata), tmp_path / "notes.ipynb")
    monkeypatch.setattr(lessons, "LESSONS", tmp_path)
    assert [lesson.name for lesson in lessons.available()] == ["threads"]
    assert lessons.find("threads").workload == "resnet-tiny"
    assert "skipped: notes.ipynb in " in lessons.listing()
    with pytest.raises(UserError, match=r"notes.ipynb in .+ is not a lesson: .+ needs "):
        lessons.find("notes")


@pytest.mark.kernel
@pytest.mark.parametrize("name", sorted(CENTRAL))
def test_each_lesson_runs_into_a_report_and_its_central_claim_holds_here(name, runs_dir):
    framework, central = CENTRAL[name]
    done = repro("lesson", name, "-f", framework, "--runs-dir", str(runs_dir))
    assert done.returncode == 0, done.stderr[-3000:]
    (folder,) = run_folders(runs_dir)
    assert f"lesson-{name}_{framework}" in folder.name
    record = read_metrics(folder)["summary"]["lesson"]
    assert record["name"] == name and record["claims"]
    for i in central:
        assert record["claims"][i]["held"], record["claims"][i]
    for claim in record["claims"]:
        assert claim["held"] or claim["why_not"], claim
    html = (folder / "report.html").read_text()
    plots = [p.stem for p in (folder / "plots").glob("lesson_*.png")]
    assert plots and html.count("data:image/png;base64") >= len(plots)
    assert repro("verify", str(folder)).returncode == 0
    assert (folder / "run.sh").read_text().count(f"lesson {name} --framework {framework}") == 1
