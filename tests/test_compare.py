"""repro compare: step-time ratios with their CI (from processes where runs measured several,
else from steps), context checks, the --fail-if-slower regression gate, and the comparison report
(a notebook with tables and plots). The time-to-accuracy and LoadGen sections (repro.kernel.suites)
are checked without a kernel on records planted in a real run's (tests/fixtures/records/), then
in a real report."""

from __future__ import annotations

import json
import re
import shutil
import statistics

import nbformat
import pytest
from conftest import FIXTURES, in_kernel, repro, run_folders
from test_accuracy import Stand, loop, section
from test_loadgen import summary

from repro import records
from repro.kernel import suites

RECORDS = FIXTURES / "records"


def ticking():
    """A clock that moves one second per reading: times to target that do not depend on the
    machine."""
    ticks = iter(range(10**6))
    return lambda: float(next(ticks))


def trained(*learn: float, **settings) -> list[dict]:
    """One stand-in process per `learn` (its speed), as repro.kernel.accuracy's loop ends; no
    time cap unless `settings` give one (the ticking clock reads several times a step)."""
    settings = {"max_seconds": 10**6, **settings}
    return [loop(Stand(learn=k), clock=ticking(), **settings) for k in learn]


def planted(folder, framework: str = "torch", **sections) -> records.Run:
    """The fixture run's records in `folder`, in `framework`, with `sections` (time_to_accuracy,
    loadgen) planted in its summary, read back as a comparison reads them."""
    folder.mkdir(parents=True)
    metrics = json.loads((RECORDS / "metrics.json").read_text())
    metrics["framework"] = framework
    metrics["summary"].update(sections)
    (folder / "metrics.json").write_text(json.dumps(metrics))
    shutil.copy(RECORDS / "environment.json", folder)
    return records.load(folder)


def scenario(name: str, batch_size: int = 1) -> dict:
    """A LoadGen result as metrics.json keeps it, from LoadGen's real summary of `name`."""
    settings = {"min_duration_ms": 300, "batch_size": batch_size}
    return {**summary(name), "scenario": name, "settings": settings}


def test_time_to_accuracy_rows_ratios_and_curves_come_from_the_records(tmp_path):
    fast, slow = trained(10, 5), trained(4, 3)
    capped = trained(1, 1, max_steps=12)  # 12% held-out accuracy at the cap
    runs = [
        planted(tmp_path / "plain"),  # no time to accuracy: not in the section
        planted(tmp_path / "fast", time_to_accuracy=section(fast, price_per_hour=2.0)),
        planted(tmp_path / "slow", "jax", time_to_accuracy=section(slow)),
        planted(tmp_path / "capped", time_to_accuracy=section(capped)),
    ]
    entries = suites.with_accuracy(runs)
    assert [r.name for r, _ in entries] == ["fast", "slow", "capped"]
    rows = [suites.accuracy_row(r, t) for r, t in entries]
    times = [[o["time_to_target_s"] for o in outcomes] for outcomes in (fast, slow)]
    assert rows[0]["result"] == "reached by 2 of 2 process(es)" and rows[1]["framework"] == "jax"
    assert rows[0]["median time to target (s)"] == f"{statistics.median(times[0]):.2f}"
    assert rows[0]["range (s)"] == f"{min(times[0]):.2f}–{max(times[0]):.2f}"
    assert rows[0]["median steps"] == f"{statistics.median(o['steps'] for o in fast):,.0f}"
    assert rows[0]["cost to target (first process)"] == (
        f"{2.0 * fast[0]['wall_s'] / 3600:.4g} (at 2/hour)"
    )
    assert rows[1]["cost to target (first process)"] == "no price_per_hour"
    assert rows[0]["energy to target (first process)"] == "unavailable (unavailable)"
    # a run that did not reach the target says so, and which cap, where its numbers would be
    assert (
        rows[2]["result"] == "**NOT reached**: stopped by max_steps ×2 (2 process(es)), best 12.0%"
    )
    assert {rows[2][k] for k in ("median time to target (s)", "median steps")} == {"not reached"}
    assert rows[2]["cost to target (first process)"] == "not reached"

    pairs = suites.accuracy_ratios(entries)
    assert [p["new"] for p in pairs] == ["slow", "capped"]
    ratio = statistics.median(times[1]) / statistics.median(times[0])
    assert pairs[0]["ratio"] == pytest.approx(ratio) and ratio > 1
    low, high = pairs[0]["ci95"]
    assert low < high
    assert pairs[1] == {"base": "fast", "new": "capped", "ratio": None, "ci95": None}
    assert suites.ratio_cells(pairs[1], entries[0][1]) == ["not reached", "—", "—"]
    assert suites.ratio_cells(pairs[0], entries[0][1])[0] == f"{ratio:.3f}"
    reversed_ = suites.accuracy_ratios([entries[2], entries[0]])  # a baseline that did not
    assert suites.ratio_cells(reversed_[0], entries[2][1])[0] == "baseline not reached"

    curves = suites.accuracy_curves(entries)
    assert [c["colour"] for c in curves] == ["C0", "C1", "C2"]  # one colour per run
    assert [len(c["curves"]) for c in curves] == [2, 2, 2]  # a line per process
    assert curves[0]["curves"][1] == (
        [p["seconds"] for p in fast[1]["curve"]],
        [p["accuracy"] for p in fast[1]["curve"]],
    )
    assert curves[2]["median_s"] is None and curves[0]["target"] == 0.9
    # ordinary runs: no section at all
    assert suites.time_to_accuracy(runs[:1]) is None and suites.loadgen(runs[:1]) is None


def test_an_older_time_to_accuracy_record_reads_and_a_bad_one_is_one_line(tmp_path):
    older = section(trained(1, max_steps=12))
    for key in ("stopped_by", "curves"):  # kept per process since the comparison shows them
        del older["processes"][key]
    run = planted(tmp_path / "older", time_to_accuracy=older)
    record = run.summary.time_to_accuracy
    assert record.curves == (tuple(older["curve"]),) and record.caps == ("max_steps",)
    assert suites.accuracy_row(run, record)["result"].startswith(
        "**NOT reached**: stopped by max_steps (1 process(es))"
    )
    bad = planted(tmp_path / "good", time_to_accuracy=section(trained(10))).folder
    metrics = json.loads((bad / "metrics.json").read_text())
    metrics["summary"]["time_to_accuracy"]["reached"] = "yes"
    (bad / "metrics.json").write_text(json.dumps(metrics))
    done = repro("compare", str(run.folder), str(bad), "--no-report")
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert "time_to_accuracy: 'reached' is str, not bool" in done.stderr


def test_loadgen_rows_give_its_verdict_and_figure_beside_repros(tmp_path):
    runs = [
        planted(tmp_path / "single", loadgen=scenario("single-stream")),
        planted(tmp_path / "plain"),
        planted(tmp_path / "offline", "jax", loadgen=scenario("offline", batch_size=2)),
        planted(tmp_path / "server", loadgen=scenario("server")),
    ]
    single, offline, server = (
        suites.loadgen_row(r, r.summary.loadgen) for r in runs if r.summary.loadgen
    )
    latency = runs[0].summary.latency_ms
    assert single["LoadGen result"] == "**VALID**"
    assert single["LoadGen figure"] == "p90 latency 1.442 ms"  # LoadGen's 1441807 ns
    assert single["repro figure"] == f"p90 step {latency['p90']:.3f} ms"
    assert offline["LoadGen result"] == "**INVALID** (not satisfied: Min duration satisfied)"
    assert offline["LoadGen figure"] == "656.83 samples/s"
    assert offline["repro figure"] == runs[2].headline.quote()  # the run's one figure
    assert offline["what is timed (LoadGen; repro)"] == (
        "one query of 55 samples, in batches of 2; steps of 2 samples"
    )
    assert server["LoadGen figure"] == "47.04 samples/s"
    assert server["p99 latency LoadGen / repro (ms)"] == f"5.291 / {latency['p99']:.3f}"
    shown = suites.loadgen(runs)
    assert [r["run"] for r in shown["rows"]] == [single["run"], offline["run"], server["run"]]


def slowed_copy(folder, tmp_path, factor, name="slow"):
    """A copy of a real run whose every measured step took `factor` times as long: a planted
    regression with the noise of a real run. Its machine is marked quiet: the test runs beside
    others, and a run measured on a busy machine is not judged (test_busy_runs_are_not_judged)."""
    slow = shutil.copytree(folder, tmp_path / f"{folder.name}-{name}")
    metrics = json.loads((slow / "metrics.json").read_text())
    samples = metrics["samples"]
    for steps in (samples, *samples["processes"]):  # the kernel's process is the first
        steps["step_s"] = [t * factor for t in steps["step_s"]]
    metrics["summary"]["machine"]["busy"] = False
    metrics["run_id"] = slow.name  # another run (a copy of one run is that run: refused)
    (slow / "metrics.json").write_text(json.dumps(metrics))
    return slow


@pytest.mark.kernel
def test_identical_samples_pass_even_a_zero_threshold(small_runs, tmp_path):
    base = slowed_copy(small_runs["a"], tmp_path, 1.0, "base")
    same = slowed_copy(small_runs["a"], tmp_path, 1.0)
    done = repro("compare", str(base), str(same), "--fail-if-slower", "0%", "--no-report")
    assert done.returncode == 0, done.stdout + done.stderr
    assert re.search(r"step time x1\.0\d* \(95% CI", done.stdout)  # digits as the CI allows
    assert "no significant difference" in done.stdout


@pytest.mark.kernel
def test_two_real_runs_are_compared_with_their_noise(small_runs, tmp_path):
    # Two runs of the same settings: the verdict depends on the machine's noise, so only the
    # statistics are checked here, not which way they fall.
    a, b = (slowed_copy(small_runs[k], tmp_path, 1.0, "quiet") for k in "ab")
    done = repro("compare", str(a), str(b), "--no-report")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "95% CI" in done.stdout and "p=" in done.stdout and "3 and 3 processes" in done.stdout


@pytest.mark.kernel
def test_busy_runs_are_not_judged(small_runs, tmp_path):
    base = slowed_copy(small_runs["a"], tmp_path, 1.0, "base")
    busy = slowed_copy(small_runs["a"], tmp_path, 3.0, "busy")
    metrics = json.loads((busy / "metrics.json").read_text())
    metrics["summary"]["machine"]["busy"] = True  # 3x slower, and measured on a busy machine
    (busy / "metrics.json").write_text(json.dumps(metrics))
    done = repro("compare", str(base), str(busy), "--fail-if-slower", "5%", "--no-report")
    assert done.returncode == 0, done.stdout + done.stderr  # nothing judged, nothing failed
    assert f"{busy.name}: " in done.stdout and "[busy machine]" in done.stdout
    assert "not judged: torch eager resnet-tiny bs2" in done.stdout
    assert "measured on a busy machine; rerun on a quiet machine" in done.stdout


def with_sections(folder, tmp_path, **sections):
    """A copy of a real run with `sections` (time_to_accuracy, loadgen) planted in its summary:
    the comparison report's own sections, executed on real run folders."""
    copy = shutil.copytree(folder, tmp_path / folder.name)
    metrics = json.loads((copy / "metrics.json").read_text())
    metrics["summary"].update(sections)
    (copy / "metrics.json").write_text(json.dumps(metrics))
    return copy


@pytest.mark.kernel
def test_the_comparison_report_of_two_frameworks(small_runs, runs_dir, tmp_path):
    capped = trained(1, 1, max_steps=12)
    runs = [  # torch, torch, jax: one context (the planted data's hash too)
        with_sections(small_runs["a"], tmp_path, time_to_accuracy=section(trained(10, 5))),
        with_sections(small_runs["b"], tmp_path, time_to_accuracy=section(capped)),
        with_sections(  # no real run has both; each section reads its own record
            small_runs["jax"],
            tmp_path,
            time_to_accuracy=section(trained(4, 3)),
            loadgen=scenario("single-stream"),
        ),
    ]
    done = repro("compare", *map(str, runs), "--runs-dir", str(runs_dir))
    assert done.returncode == 0, done.stdout + done.stderr
    [folder] = run_folders(runs_dir)
    assert f"comparison report: {folder / 'report.html'}" in done.stdout
    assert sorted(p.name for p in (folder / "plots").iterdir()) == [
        "accuracy.png",
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
    tta = next(v for k, v in outputs.items() if "suites.time_to_accuracy" in k)
    assert "## Time to accuracy" in tta and "time-to-target ratio" in tta
    assert "NOT reached" in tta  # the second run's processes stopped at max_steps
    lg = next(v for k, v in outputs.items() if "suites.loadgen" in k)
    assert "## MLPerf LoadGen scenarios" in lg and "single-stream" in lg
    html = (folder / "report.html").read_text()
    assert '<script src="http' not in html and "data:image/png;base64" in html
    assert repro("verify", str(folder)).returncode == 0


@pytest.mark.kernel
def test_a_planted_slowdown_fails_the_gate(small_runs, tmp_path):
    base = slowed_copy(small_runs["a"], tmp_path, 1.0, "base")
    slow = slowed_copy(small_runs["a"], tmp_path, 3.0)  # unmistakable even on a noisy machine
    done = repro("compare", str(base), str(slow), "--fail-if-slower", "5%", "--no-report")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "slower by 200.0%" in done.stdout and "REGRESSION" in done.stdout
    # the same slowdown under a threshold it does not exceed passes
    assert (
        repro("compare", str(base), str(slow), "--fail-if-slower", "250%", "--no-report").returncode
        == 0
    )


@pytest.mark.kernel
def test_the_gate_for_ci_prints_one_json_object(small_runs, tmp_path):
    slow = slowed_copy(small_runs["a"], tmp_path, 3.0)
    done = repro(
        "compare",
        str(small_runs["a"]),
        str(slow),
        "--fail-if-slower",
        "5%",
        "--no-report",
        "--json",
    )
    answer = json.loads(done.stdout)  # the lines for people are on stderr
    assert f"{slow.name} vs {small_runs['a'].name}: " in done.stderr
    assert [r["folder"] for r in answer["runs"]] == [str(small_runs["a"]), str(slow)]
    assert [r["headline"]["processes"] for r in answer["runs"]] == [3, 3]
    assert answer["report_html"] is None
    [pair] = answer["pairs"]
    assert done.returncode == (1 if pair["regression"] else 0)
    assert pair["regression"] == pair["judged"]  # judged (not busy), 3x slower fails the gate


@pytest.mark.kernel
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
    assert allowed.returncode == 0, allowed.stderr  # no ratio of steps of different work:
    assert "not judged: the runs' steps do different work (batch_size 2 vs 4)" in allowed.stdout
    [folder] = run_folders(runs_dir)
    notebook = nbformat.read(folder / "report.ipynb", as_version=4)
    assert "MIXED CONTEXT" in notebook.cells[0].source  # flagged at the top
    assert "batch_size differs (2, 4, 2)" in notebook.cells[0].source
    html = (folder / "report.html").read_text()
    assert "<img src=x" not in html and "&lt;img src=x" in html  # shown, escaped
    heatmap = next(c for c in notebook.cells if "plot_heatmap" in c.source)
    assert "Columns: **batch size**" in heatmap.outputs[0]["data"]["text/markdown"]


@pytest.mark.kernel
def test_a_folder_of_runs_is_expanded(small_runs, tmp_path):
    folder = tmp_path / "many"
    for k in ("a", "b"):
        shutil.copytree(small_runs[k], folder / small_runs[k].name)
    (folder / "not-a-run").mkdir()
    done = repro("compare", str(folder), "--no-report")
    assert done.returncode == 0, done.stderr
    assert f"{small_runs['b'].name} vs {small_runs['a'].name}" in done.stdout


@pytest.mark.kernel
def test_bad_arguments_exit_2_with_one_line(small_runs, tmp_path):
    done = repro("compare", str(small_runs["a"]), str(tmp_path), "--fail-if-slower", "5%")
    assert done.returncode == 2 and "holds no finished run folders" in done.stderr
    done = repro("compare", str(small_runs["a"]))
    assert done.returncode == 2 and "at least two finished runs, got 1" in done.stderr
    done = repro("compare", str(small_runs["a"]), str(small_runs["b"]), "--fail-if-slower", "lots")
    assert done.returncode == 2 and "takes a percentage" in done.stderr


HEATMAP = """
import json
import pandas as pd
from repro.kernel.comparison import heatmap_columns

served = [  # torch eager vs torch→ORT vs Keras→LiteRT vs JAX jit, on one workload
    ("torch", "eager", "native"),
    ("torch", "eager", "onnxruntime"),
    ("tensorflow", "function", "native"),
    ("tensorflow", "function", "litert"),
    ("jax", "jit", "native"),
]
frame = pd.DataFrame(
    {"framework": f, "workload": "resnet-50", "compile": c, "runtime": r, "samples/s": 1.0}
    for f, c, r in served
)
print(json.dumps(heatmap_columns(frame)))
"""


@pytest.mark.kernel
def test_runs_served_by_other_runtimes_make_a_framework_by_runtime_heatmap(tmp_path):
    script = tmp_path / "heatmap.py"
    script.write_text(HEATMAP)
    assert in_kernel("analysis", script) == ["runtime"]  # compile is tied to the framework
