"""repro compare: step-time ratios with their CI (from processes where runs measured several,
else from steps), context checks, the --fail-if-slower regression gate, and the comparison report
(a notebook with tables and plots)."""

from __future__ import annotations

import json
import shutil

import nbformat
import pytest
from conftest import repro, run_folders

pytestmark = pytest.mark.kernel


def slowed_copy(folder, tmp_path, factor):
    """A copy of a real run whose every measured step took `factor` times as long: a planted
    regression with the noise of a real run."""
    slow = shutil.copytree(folder, tmp_path / f"{folder.name}-slow")
    metrics = json.loads((slow / "metrics.json").read_text())
    samples = metrics["samples"]
    for steps in (samples, *samples["processes"]):  # the kernel's process is the first
        steps["step_s"] = [t * factor for t in steps["step_s"]]
    (slow / "metrics.json").write_text(json.dumps(metrics))
    return slow


def test_identical_samples_pass_even_a_zero_threshold(small_runs, tmp_path):
    same = slowed_copy(small_runs["a"], tmp_path, 1.0)
    done = repro(
        "compare", str(small_runs["a"]), str(same), "--fail-if-slower", "0%", "--no-report"
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "step time x1.000" in done.stdout and "no significant difference" in done.stdout


def test_two_real_runs_are_compared_with_their_noise(small_runs):
    # Two runs of the same settings: the verdict depends on the machine's noise, so only the
    # statistics are checked here, not which way they fall.
    done = repro("compare", str(small_runs["a"]), str(small_runs["b"]), "--no-report")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "95% CI" in done.stdout and "p=" in done.stdout and "3 and 3 processes" in done.stdout


def test_the_comparison_report_of_two_frameworks(small_runs, runs_dir):
    runs = [small_runs[k] for k in ("a", "b", "jax")]  # torch, torch, jax: one context
    done = repro("compare", *map(str, runs), "--runs-dir", str(runs_dir))
    assert done.returncode == 0, done.stdout + done.stderr
    [folder] = run_folders(runs_dir)
    assert f"comparison report: {folder / 'report.html'}" in done.stdout
    assert sorted(p.name for p in (folder / "plots").iterdir()) == [
        "heatmap.png",
        "latency.png",
        "radar.png",
        "throughput.png",
    ]
    result = json.loads((folder / "comparison.json").read_text())
    assert result["status"] == "ok" and result["context"]["differences"] == {}
    assert result["comparison"]["baseline"] == runs[0].name
    pairs = result["comparison"]["pairs"]
    assert [p["new"] for p in pairs] == [runs[1].name, runs[2].name]
    assert all(p["ci95"][0] <= p["time_ratio"] <= p["ci95"][1] for p in pairs)
    notebook = nbformat.read(folder / "report.ipynb", as_version=4)
    outputs = {c.source: json.dumps(c.outputs) for c in notebook.cells if c.cell_type == "code"}
    assert "share their checked context" in next(v for k, v in outputs.items() if "context(" in k)
    side = next(v for k, v in outputs.items() if "side_by_side" in k)
    assert "throughput (samples/s)" in side and "framework version" in side
    html = (folder / "report.html").read_text()
    assert '<script src="http' not in html and "data:image/png;base64" in html
    assert repro("verify", str(folder)).returncode == 0


def test_a_planted_slowdown_fails_the_gate(small_runs, tmp_path):
    slow = slowed_copy(small_runs["a"], tmp_path, 3.0)  # unmistakable even on a noisy machine
    done = repro(
        "compare", str(small_runs["a"]), str(slow), "--fail-if-slower", "5%", "--no-report"
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "slower by 200.0%" in done.stdout and "REGRESSION" in done.stdout
    # the same slowdown under a threshold it does not exceed passes
    assert (
        repro(
            "compare", str(small_runs["a"]), str(slow), "--fail-if-slower", "250%", "--no-report"
        ).returncode
        == 0
    )


def test_runs_of_another_context_need_an_explicit_opt_in(small_runs, runs_dir):
    mixed = repro("compare", str(small_runs["a"]), str(small_runs["c"]))
    assert mixed.returncode == 2
    assert "context differs: batch_size: [2, 4]" in mixed.stdout
    assert "--allow-mixed" in mixed.stderr
    assert run_folders(runs_dir) == []  # refused before writing anything
    jax = shutil.copytree(small_runs["jax"], runs_dir.parent / "elsewhere" / "jax")
    environment = json.loads((jax / "environment.json").read_text())
    environment["cpu"]["model"] = "<img src=x onerror=alert(1)>"  # a hostile run folder
    (jax / "environment.json").write_text(json.dumps(environment))
    allowed = repro(
        "compare",
        str(small_runs["a"]),
        str(small_runs["c"]),
        str(jax),
        "--allow-mixed",
        "--runs-dir",
        str(runs_dir),
    )
    assert allowed.returncode == 0 and "step time x" in allowed.stdout
    [folder] = run_folders(runs_dir)
    notebook = nbformat.read(folder / "report.ipynb", as_version=4)
    assert "MIXED CONTEXT" in notebook.cells[0].source  # flagged at the top
    assert "batch_size differs (2, 4, 2)" in notebook.cells[0].source
    html = (folder / "report.html").read_text()
    assert "<img src=x" not in html and "&lt;img src=x" in html  # shown, escaped
    heatmap = next(c for c in notebook.cells if "plot_heatmap" in c.source)
    assert "Columns: **batch size**" in heatmap.outputs[0]["data"]["text/markdown"]


def test_a_folder_of_runs_is_expanded(small_runs, tmp_path):
    folder = tmp_path / "many"
    for k in ("a", "b"):
        shutil.copytree(small_runs[k], folder / small_runs[k].name)
    (folder / "not-a-run").mkdir()
    done = repro("compare", str(folder), "--no-report")
    assert done.returncode == 0, done.stderr
    assert f"{small_runs['b'].name} vs {small_runs['a'].name}" in done.stdout


def test_bad_arguments_exit_2_with_one_line(small_runs, tmp_path):
    done = repro("compare", str(small_runs["a"]), str(tmp_path), "--fail-if-slower", "5%")
    assert done.returncode == 2 and "holds no finished run folders" in done.stderr
    done = repro("compare", str(small_runs["a"]))
    assert done.returncode == 2 and "at least two finished runs, got 1" in done.stderr
    done = repro("compare", str(small_runs["a"]), str(small_runs["b"]), "--fail-if-slower", "lots")
    assert done.returncode == 2 and "takes a percentage" in done.stderr
