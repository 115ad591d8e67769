"""runs/index.html (repro.driver.index): every run, lesson, comparison, sweep and history under
the runs folder with its headline, from real records (tests/fixtures/records/); whatever a folder
holds is escaped, and a record that does not read is said, not raised."""

from __future__ import annotations

import html
import json
import shutil
from pathlib import Path

from conftest import FIXTURES, repro

from repro import records
from repro.driver import index

RECORDS = FIXTURES / "records"


def metrics(**change) -> dict:
    data = json.loads((RECORDS / "metrics.json").read_text())
    data.update(change)
    return data


def folder(runs: Path, name: str, files: dict) -> Path:
    path = runs / name
    path.mkdir(parents=True)
    for file, content in files.items():
        text = content if isinstance(content, str) else json.dumps(content)
        (path / file).write_text(text)
    return path


def test_the_index_lists_every_kind_with_its_headline_escaped(tmp_path):
    runs = tmp_path / "runs"
    ok = folder(runs, "20260101T000000Z_resnet-tiny_torch_a", {"metrics.json": metrics()})
    (ok / "report.html").write_text("<html></html>")
    folder(
        runs,
        "lessons/20260102T000000Z_lesson-warmup_torch_b",
        {"metrics.json": metrics(summary={"lesson": {"claims": [{"held": True}, {"held": 0}]}})},
    )
    folder(
        runs,
        "20260103T000000Z_resnet-tiny_torch_c",
        {"metrics.json": metrics(status="failed", error="cell 7 raised <b>ValueError</b>")},
    )
    folder(runs, "20260104T000000Z_resnet-tiny_torch_d", {"report.partial.ipynb": "{}"})
    folder(runs, "20260105T000000Z_x_torch_e", {"metrics.json": "{not json"})
    folder(
        runs,
        "20260106T000000Z_compare_2-runs_f",
        {"comparison.json": (RECORDS / "comparison.json").read_text()},
    )
    history = {"schema": "repro.history/1", "status": "ok", "error": None}
    history["history"] = {"series": {"a": [{}, {}], "b": [{}]}, "regressions": [{}]}
    folder(runs, "20260107T000000Z_history_3-runs_g", {"history.json": history})
    cells = {"c0": {"status": "done"}, "c1": {"status": "failed"}}
    sweep = folder(runs, "sweep_small", {"state.json": {"cells": cells}})
    folder(
        sweep / "cells" / "c0", "20260108T000000Z_resnet-tiny_jax_h", {"metrics.json": metrics()}
    )
    (runs / "x.tar.gz").write_text("a bundle is a file: passed over")

    done = repro("index", "--runs-dir", str(runs))
    assert done.returncode == 0, done.stderr
    page = (runs / "index.html").read_text()
    figure = records.Metrics.from_json(metrics(), "fixture").headline.quote()
    assert html.escape(f"resnet-tiny / torch: {figure}") in page  # the run's one headline
    for heading in ("Runs (5)", "Lessons (1)", "Comparisons (1)", "Sweeps (1)", "Histories (1)"):
        assert heading in page
    assert f'href="{ok.name}/report.html"' in page
    assert "1 of 2 claims held on this machine" in page
    assert "failed: cell 7 raised &lt;b&gt;ValueError&lt;/b&gt;" in page and "<b>" not in page
    assert "unfinished (no metrics.json" in page and "unreadable: " in page
    assert "against 20261123T062953Z_resnet-tiny_torch_f608fd: " in page
    assert "3 runs in 2 series; 1 regressions" in page
    assert "1 of 2 cells done, 1 failed" in page
    assert "sweep_small/cells/c0/20260108T000000Z_resnet-tiny_jax_h" in page


def test_a_run_named_as_markup_stays_text(tmp_path):
    runs = tmp_path / "runs"
    hostile = '"><script>alert(1)</script>'
    folder(runs, f"run{hostile.replace('/', '')}", {"metrics.json": metrics(workload=hostile)})
    assert repro("index", "--runs-dir", str(runs)).returncode == 0
    page = (runs / "index.html").read_text()
    assert "<script>" not in page and "&lt;script&gt;" in page


def test_no_runs_folder_is_one_line(tmp_path):
    done = repro("index", "--runs-dir", str(tmp_path / "none"))
    assert done.returncode == 2
    assert (
        done.stderr
        == f"repro: {tmp_path / 'none'} is not a folder of runs; make a run first (`make run`)\n"
    )


def test_a_copy_keeps_its_links(tmp_path):
    runs = tmp_path / "runs"
    folder(runs, "20260101T000000Z_resnet-tiny_torch_a", {"metrics.json": metrics()})
    assert repro("index", "--runs-dir", str(runs)).returncode == 0
    moved = shutil.copytree(runs, tmp_path / "elsewhere")
    assert 'href="20260101T000000Z_resnet-tiny_torch_a"' in (moved / "index.html").read_text()


def test_a_command_keeps_an_index_current_where_one_was_asked_for(tmp_path):
    runs = tmp_path / "runs"
    folder(runs, "20260101T000000Z_resnet-tiny_torch_a", {"metrics.json": metrics()})
    index.refresh(runs)  # what run and compare call when they finish
    assert not (runs / "index.html").exists()  # a folder of one's own: only once asked for
    assert repro("index", "--runs-dir", str(runs)).returncode == 0
    folder(runs, "20260102T000000Z_resnet-tiny_jax_b", {"metrics.json": metrics()})
    index.refresh(runs)
    assert "20260102T000000Z_resnet-tiny_jax_b" in (runs / "index.html").read_text()
