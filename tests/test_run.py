"""End to end: the real template in each real pinned kernel, through the CLI, on a small preset."""

from __future__ import annotations

import csv
import hashlib
import json
import re
import shlex
from pathlib import Path

import nbformat
import pytest
from conftest import FIXTURES, ROOT, SMALL, read_metrics, repro, run_folders
from test_loadgen import check_scenario_run, scenario_params

from repro import stats
from repro.driver import headline, kernels, plan
from repro.kernel import noise
from repro.records import Metrics

pytestmark = pytest.mark.kernel

RUN_FILES = {
    "report.ipynb",
    "report.html",
    "metrics.json",
    "raw_metrics.csv",
    "environment.json",
    "hardware.md",
    "requirements.lock",
    "run.sh",
    "MANIFEST.sha256",
    "plots/step_times.png",
    "plots/latency_distribution.png",
}


def one_run(runs_dir: Path) -> Path:
    folders = run_folders(runs_dir)
    assert len(folders) == 1, folders
    return folders[0]


def run_ok(runs_dir: Path, *args: str) -> Path:
    """`repro run ARGS` into runs_dir: it must succeed and leave exactly one run folder."""
    done = repro("run", *args, "--runs-dir", str(runs_dir))
    assert done.returncode == 0, done.stderr[-3000:]
    return one_run(runs_dir)


def manifest_ok(folder: Path) -> bool:
    for line in (folder / "MANIFEST.sha256").read_text().splitlines():
        digest, name = line.split("  ", 1)
        if hashlib.sha256((folder / name).read_bytes()).hexdigest() != digest:
            return False
    return True


@pytest.mark.parametrize("mode", ["inference", "training"])
@pytest.mark.parametrize("framework", ["torch", "tensorflow", "jax", "mxnet"])
def test_run_produces_a_complete_run_folder(framework, mode, runs_dir):
    args = ["resnet-tiny", "-f", framework, *SMALL, "-p", f"mode={mode}"]
    done = repro("run", *args, "-p", "price_per_hour=3.6", "--json", "--runs-dir", str(runs_dir))
    assert done.returncode == 0, done.stderr[-3000:]
    folder = one_run(runs_dir)
    assert re.fullmatch(rf"\d{{8}}T\d{{6}}Z_resnet-tiny_{framework}_[0-9a-f]{{6}}", folder.name)
    files = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}
    logged = {"kernel.log"} & files  # what the kernel process wrote to its stderr, if anything
    assert files - logged == RUN_FILES | ({"plots/loss_curve.png"} if mode == "training" else set())
    check_closing(done, folder, framework)

    metrics = read_metrics(folder)
    assert metrics["schema"] == "repro.metrics/1" and metrics["status"] == "ok"
    assert metrics["framework"] == framework and metrics["pinned"] and metrics["lock_ok"]
    assert metrics["params"]["batch_size"] == 2 and metrics["params"]["steps"] == 5
    assert len(metrics["samples"]["step_s"]) == 5 and len(metrics["samples"]["warmup_s"]) <= 3
    summary = metrics["summary"]
    assert summary["latency_ms"]["p50"] == pytest.approx(summary["latency_ms"]["median"])
    head = stats.headline(metrics["samples"])  # the run's one figure, recorded as computed
    assert summary["throughput"]["samples_per_s"] == pytest.approx(head.samples_per_s, rel=1e-12)
    assert metrics["model"]["params"] == metrics["model"]["params_analytic"] == 511_514
    assert metrics["model"]["equivalence"]["preset"] == "resnet-tiny"
    assert (
        metrics["params"]["compile"]
        == {"torch": "eager", "tensorflow": "function", "jax": "jit", "mxnet": "hybridize"}[
            framework
        ]
    )
    check_figures(summary, framework, mode)

    with (folder / "raw_metrics.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [r["phase"] for r in rows].count("measured") == 5

    env = json.loads((folder / "environment.json").read_text())
    assert env["schema"] == "repro.environment/1"
    assert env["gpu"]["present"] is False and env["gpu"]["reason"]  # "none", not an error
    assert env["framework"]["name"] == framework and env["framework"]["version"]
    assert env["settings"]["threads"] == metrics["params"]["threads"]
    assert env["run"]["lock"]["ok"] and env["run"]["git"]["commit"]
    assert any(line.startswith("numpy==") for line in env["packages"])
    assert env["cpu"]["lscpu"]

    notebook = nbformat.read(folder / "report.ipynb", as_version=4)
    assert notebook.metadata["papermill"]["parameters"]["framework"] == framework
    assert notebook.metadata["repro"]["run"]["run_id"] == folder.name
    assert "Pinned kernel: every installed file matches the lock" in banner(notebook)
    assert any("injected-parameters" in c.metadata.get("tags", []) for c in notebook.cells)
    check_head(notebook, summary, mode)
    html = (folder / "report.html").read_text()
    assert f"<title>resnet-tiny in {framework} (ok): repro run {folder.name}</title>" in html
    assert re.search(r"<td>proven on preset (?:(?!</td>).)*\(\|diff\| &lt;=", html, re.S)
    assert html.count('<img alt="') == html.count("<img ") >= 2  # every plot
    assert '<img alt="Scatter plot of the time per step (ms) at each of the ' in html
    assert html.count("data:image/png;base64,") >= 2  # self-contained: images embedded,
    assert not re.search(
        r"<script[^>]+src=|import\s+\w+\s+from\s+['\"]https?:", html
    )  # no CDN code
    assert (folder / "requirements.lock").read_bytes() == (
        ROOT / "kernelspecs" / f"{framework}-cpu" / "requirements.lock"
    ).read_bytes()
    command = shlex.split((folder / "run.sh").read_text().splitlines()[-1])
    assert command[2:6] == ["run", "resnet-tiny", "--framework", framework]
    rerun = plan.resolve("resnet-tiny", framework, plan.parse_assignments(command[9::2]))
    assert rerun.params == metrics["params"]  # run.sh reproduces every parameter
    assert manifest_ok(folder)


def check_closing(done, folder: Path, framework: str) -> None:
    """--json: one object on stdout, with the run's headline; the closing block on stderr,
    each of its lines once; TensorFlow's C++ log lines in kernel.log, not on the terminal."""
    answer = json.loads(done.stdout)
    metrics = Metrics.from_json(read_metrics(folder), "metrics.json")
    quote = metrics.headline.quote()
    assert answer["status"] == "ok" and answer["run_id"] == folder.name
    assert answer["folder"] == str(folder.absolute())
    assert answer["report_html"] == str((folder / "report.html").absolute())
    assert answer["headline"]["quote"] == quote and answer["headline"]["processes"] == 1
    assert answer["warnings"] == headline.warnings(metrics) and isinstance(answer["busy"], bool)
    block = [
        f"resnet-tiny / {framework}: {quote}",
        "  status: ok",
        *(f"  warning: {w}" for w in answer["warnings"]),
        f"  report: {folder / 'report.html'}",
        f"  folder: {folder}",
    ]
    lines = done.stderr.splitlines()
    assert all(lines.count(line) == 1 for line in block), done.stderr
    assert lines[-1] == block[-1] and str(folder) not in "".join(lines[: -len(block) - 1])
    assert not any(noise.noise(line) for line in lines)
    if framework == "tensorflow":
        assert "oneDNN custom operations" in (folder / "kernel.log").read_text()


def banner(notebook) -> str:
    """The banner cell (what ran where): first, or below a busy machine's warning."""
    return next(c.source for c in notebook.cells if "repro-banner" in c.metadata.get("tags", []))


def check_head(notebook, summary: dict, mode: str) -> None:
    """The report leads with this run's result, its parameters after; the set-up cell shows
    what applies to the mode."""
    head, banner = notebook.cells[:2]  # the headline first, then what ran where
    assert head.metadata["tags"] == ["repro-summary"] and banner.metadata["tags"] == [
        "repro-banner"
    ]
    quote = stats.Headline(**{k: v for k, v in summary["headline"].items() if k != "basis"})
    framework = notebook.metadata.papermill.parameters.framework
    assert head.source.startswith(f"# resnet-tiny in {framework}: {quote.quote()}\n")
    assert f"- **Measured**: resnet-tiny in {framework}, {mode}, batch 2, " in head.source
    assert notebook.cells[2].source.startswith("# Image classification benchmark")
    settings = next(c for c in notebook.cells if "report.settings(" in c.source)
    [shown] = [o["data"]["text/markdown"] for o in settings.outputs if "data" in o]
    assert "| setting | value |" in shown and ("optimizer" in shown) == (mode == "training")


def check_figures(summary: dict, framework: str, mode: str) -> None:
    """FLOPs, MFU, energy, cost and loss: measured where they can be, labelled where not."""
    compute = summary["compute"]
    counted = framework != "mxnet"  # MXNet has no FLOP counter: the analytic count, so labelled
    assert compute["flops_source"] == ("framework counter" if counted else "analytic FLOPs")
    assert (
        0.8 < compute["flops_per_step"] / (2 * 18_589_696 * (3 if mode == "training" else 1)) < 1.25
    )
    assert compute["achieved_tflops"] > 0
    assert compute["mfu"] is None and "CPU" in compute["peak_source"]  # no made-up CPU peak
    energy = summary["energy"]
    assert energy["gpu"]["status"] == "unavailable" and energy["gpu"]["reason"]
    assert energy["codecarbon"]["status"] == "estimated" and energy["codecarbon"]["energy_kwh"] > 0
    checked = summary["machine"]  # the reference around the measurement, the load during it
    assert checked["reference"]["before"]["sort_ms"]["median"] > 0
    assert checked["load"]["status"] == "measured" and checked["load"]["other_cores"] >= 0
    assert set(checked["warnings"]) <= set(summary["warnings"])
    # 3.6 per hour = 0.001 per second
    assert summary["cost"]["per_1000_samples"] == pytest.approx(
        1000 / summary["throughput"]["samples_per_s"] * 0.001
    )
    if mode == "training":
        losses = summary["loss"]["curve"]
        assert len(losses) == 1 + summary["warmup_steps"] + 5 and losses[-1] < losses[0]
    else:
        assert summary["loss"] is None


def test_a_failing_cell_keeps_the_report_marked_failed(runs_dir):
    done = repro(
        "run",
        "resnet-tiny",
        "--template",
        str(FIXTURES / "failing.ipynb"),
        "--runs-dir",
        str(runs_dir),
        "--json",
    )
    assert done.returncode == 1
    folder = one_run(runs_dir)
    last = done.stderr.strip().splitlines()[-1]  # one line: what failed, and where the report is
    assert last.startswith("repro: run failed: cell ") and "planted failure for the tests" in last
    assert last.endswith(f"; the partial report is in {folder}")
    assert done.stderr.count(str(folder)) == 1  # said once
    metrics = read_metrics(folder)
    assert metrics["status"] == "failed" and "planted failure" in metrics["error"]
    answer = json.loads(done.stdout)  # CI reads the failure too
    assert answer["status"] == "failed" and answer["error"] == metrics["error"]
    assert answer["folder"] == str(folder.absolute()) and answer["headline"] is None
    notebook = nbformat.read(folder / "report.ipynb", as_version=4)
    head, banner = notebook.cells[:2]  # the title says it failed, papermill's banner under it
    assert head.source.startswith("# ") and ": run failed" in head.source.splitlines()[0]
    assert "An Exception was encountered" in banner.source
    assert any("step one ran" in str(c.get("outputs")) for c in notebook.cells)
    assert (folder / "report.html").is_file() and manifest_ok(folder)


def test_unpinned_mode_runs_in_an_existing_interpreter_and_says_so(runs_dir):
    python = kernels.ensure("torch-cpu").python  # an interpreter that has torch and ipykernel
    folder = run_ok(
        runs_dir,
        "resnet-tiny",
        *SMALL,
        "--unpinned",
        "--python",
        str(python),
    )
    metrics = read_metrics(folder)
    assert metrics["pinned"] is False and metrics["kernel"] == "unpinned"
    notebook = nbformat.read(folder / "report.ipynb", as_version=4)
    assert "UNPINNED" in banner(notebook)
    env = json.loads((folder / "environment.json").read_text())
    assert any(p.startswith("torch==") for p in env["packages"])  # the versions found
    assert not (folder / "requirements.lock").exists()


@pytest.mark.changes_kernels  # a planted drift: no other run may use the kernel meanwhile
def test_drift_stops_the_run_unless_allowed(runs_dir):
    kernel = kernels.ensure("torch-cpu")
    site = next((kernel.python.parents[1] / "lib").glob("python3*/site-packages"))
    planted = site / "six.py" if (site / "six.py").exists() else next(site.glob("*/__init__.py"))
    original = planted.read_bytes()
    try:
        planted.write_bytes(original + b"\n# planted drift\n")
        refused = repro("run", "resnet-tiny", *SMALL, "--runs-dir", str(runs_dir))
        assert refused.returncode == 3
        assert "differs from kernelspecs/torch-cpu/requirements.lock" in refused.stderr
        assert planted.relative_to(site).as_posix() in refused.stderr
        assert run_folders(runs_dir) == []

        folder = run_ok(runs_dir, "resnet-tiny", *SMALL, "--allow-drift")
        notebook = nbformat.read(folder / "report.ipynb", as_version=4)
        assert "DRIFT ALLOWED" in banner(notebook)
        assert planted.relative_to(site).as_posix() in banner(notebook)
        assert read_metrics(folder)["lock_ok"] is False
    finally:
        planted.write_bytes(original)


@pytest.mark.parametrize("framework", ["torch", "tensorflow", "jax"])
def test_bf16_mixed_precision_training_learns_and_is_recorded(framework, runs_dir):
    folder = run_ok(
        runs_dir,
        "resnet-tiny",
        "-f",
        framework,
        *SMALL,
        "-p",
        "mode=training",
        "-p",
        "precision=bf16",
    )
    losses = read_metrics(folder)["summary"]["loss"]["curve"]
    assert losses[-1] < 0.5 * losses[0]
    env = json.loads((folder / "environment.json").read_text())
    assert env["settings"]["precision"] == "bf16"
    if framework == "tensorflow":
        assert env["framework"]["keras_policy"] == "mixed_bfloat16"


FAMILY_PRESETS = ["vit-tiny", "convnext-mini", "bert-mini", "gpt-mini"]  # resnet-tiny: above
FRAMEWORKS = ["torch", "tensorflow", "jax"]
MODES = ["inference", "training"]
# Every family in every framework, and every family and every framework in both modes, in 12
# runs rather than 24: a Latin square gives each (family, framework) pair one mode, alternating.
MIN_TIME = 0.2  # seconds: the fast presets measure many more steps than the 3 asked for
FAMILY_RUNS = [
    (workload, framework, MODES[(i + j) % 2])
    for i, workload in enumerate(FAMILY_PRESETS)
    for j, framework in enumerate(FRAMEWORKS)
]


# Three of the inference runs also run an MLPerf LoadGen scenario after the protocol, each
# scenario and framework once, an image and two language presets (tests/test_loadgen.py checks)
SCENARIO_RUNS = {
    ("vit-tiny", "torch"): "offline",
    ("bert-mini", "jax"): "single-stream",
    ("gpt-mini", "tensorflow"): "server",
}


@pytest.mark.parametrize(("workload", "framework", "mode"), FAMILY_RUNS)
def test_every_family_runs_in_every_framework_and_both_modes(workload, framework, mode, runs_dir):
    scenario = SCENARIO_RUNS.get((workload, framework))
    folder = run_ok(
        runs_dir,
        workload,
        "-f",
        framework,
        "-p",
        "steps=3",
        "-p",
        f"min_time={MIN_TIME}",
        "-p",
        "warmup=1",
        "-p",
        f"mode={mode}",
        "-p",
        f"repeats={2 if mode == 'inference' else 1}",  # the default (3) is checked in test_plan
        *(a for p in scenario_params(scenario) for a in ("-p", p)),
    )
    if scenario:
        check_scenario_run(folder, scenario)
    metrics = read_metrics(folder)
    summary = metrics["summary"]
    assert (
        metrics["status"] == "ok"
        and metrics["model"]["params"] == metrics["model"]["params_analytic"]
    )
    # inference in two processes (one fresh, in every framework and family), training in one
    processes = 2 if mode == "inference" else 1
    assert metrics["params"]["repeats"] == summary["processes"]["n"] == processes
    assert len(metrics["samples"]["processes"]) == processes
    # each process measured at least `steps` steps and min_time seconds, and no step more,
    # after its own warm-up (warmup=1), all kept
    for process in metrics["samples"]["processes"]:
        step_s = process["step_s"]
        assert len(step_s) >= 3 and sum(step_s) >= MIN_TIME
        assert len(step_s) == 3 or sum(step_s[:-1]) < MIN_TIME
        assert len(process["warmup_s"]) <= 1
    if processes > 1:  # throughput from the processes, its CI around it
        low, high = summary["throughput"]["ci95"]
        assert low <= summary["throughput"]["samples_per_s"] <= high
    assert metrics["model"]["equivalence"]["preset"] == workload
    sequence = metrics["params"]["sequence_length"]
    if sequence:  # sequence workloads also report tokens/s
        assert summary["throughput"]["tokens_per_s"] == pytest.approx(
            summary["throughput"]["samples_per_s"] * sequence
        )
    if mode == "training":
        assert summary["loss"]["curve"][-1] < summary["loss"]["curve"][0]
