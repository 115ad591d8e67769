"""The head of a report, without a kernel: the summary cell from metrics.json and
environment.json, where it goes, and that tables, titles and plots render in report.html."""

from __future__ import annotations

import base64
import copy
import html
import json
import re

import nbformat
import pytest
from conftest import repro, summary_cell

from repro.driver import finalize, folders, headline, integrity
from repro.kernel import report
from repro.paths import KERNELSPECS
from repro.records import Environment, Metrics
from repro.records import load as records_of
from repro.stats import figure

PARAMS = {  # as plan.resolve records them
    "batch_size": 2,
    "sequence_length": None,
    "steps": 20,
    "warmup": 50,
    "mode": "inference",
    "compile": "eager",
    "precision": "fp32",
    "attention": "fused",
    "repeats": 4,
    "threads": 2,
}
METRICS = {
    "schema": "repro.metrics/1",
    "status": "ok",
    "error": None,
    "run_id": "20261123T025227Z_resnet-tiny_torch_1c6c22",
    "workload": "resnet-tiny",
    "framework": "torch",
    "kernel": "torch-cpu",
    "pinned": True,
    "params": PARAMS,
    "samples": {  # the kernel's process (7.1 ms), then three fresh ones: 8.0, 9.6 and 10.4 ms
        "batch_size": 2,
        "step_s": [0.0070, 0.0072],
        "processes": [
            {"step_s": s}
            for s in ([0.0070, 0.0072], [0.0079, 0.0081], [0.0095, 0.0097], [0.0105, 0.0103])
        ],
    },
    "summary": {
        "latency_ms": {"median": 7.94, "median_ci95": [7.87, 8.04]},
        "processes": {
            "n": 3,
            "centre_ms": 9.27,
            "centre_ci95_ms": [7.34, 11.7],
            "samples_per_s": 215.75,
            "samples_per_s_ci95": [170.94, 272.48],
        },
        "throughput": {"samples_per_s": 1628.52, "ci95": [1609.28, 1645.52]},
        "compute": {"mfu": None, "peak_source": "no peak figure for CPUs: MFU omitted"},
        "warmup_steps": 6,
        "warmup_steady": True,
        "warnings": ["Step times vary a lot (CV 12% > 10%) | close other programs"],
    },
}
ENVIRONMENT = {
    "schema": "repro.environment/1",
    "captured_at": "2026-11-23T02:52:27+00:00",
    "container": {"inside": False},
    "env_vars": {},
    "packages": ["torch==2.13.0+cpu"],
    "cpu": {"model": "AMD EPYC", "logical_cores": 2},
    "memory": {"total_bytes": 25276514304},
    "gpu": {"present": False, "reason": "nvidia-smi not found"},
    "system": {"os_pretty_name": "Debian GNU/Linux 12 (bookworm)", "python": {"version": "3.11.7"}},
    "framework": {"name": "torch", "version": "2.13.0+cpu"},
}


def head(metrics: dict = METRICS, environment: dict | None = ENVIRONMENT) -> str:
    """The summary cell of these records, read as repro reads them back."""
    return headline.markdown(*records(metrics, environment))


def records(metrics: dict, environment: dict | None) -> tuple:
    env = Environment.from_json(environment, "environment.json") if environment else None
    return Metrics.from_json(metrics, "metrics.json"), env


def lines(markdown: str) -> dict[str, str]:
    title, warnings, body = markdown.split("\n\n")
    found = dict(re.fullmatch(r"- \*\*(\w+)\*\*: (.*)", line).groups() for line in body.split("\n"))
    assert list(found) == ["Result", "Status", "Measured", "Environment"]
    return {"Title": title, "Warnings": warnings, **found}


def test_the_summary_gives_this_runs_figures_with_their_cis_one_line_each():
    summary = lines(head())
    assert summary["Title"] == "# resnet-tiny in torch: 216 samples/s (95% CI 154–301, 3 processes)"
    assert summary["Result"] == (
        "**216 samples/s (95% CI 154–301, 3 processes)** · median step time **9.3 ms** (95% CI "
        "6.6–13.0 ms; centre of 3 fresh processes, CI between them; the notebook kernel's own "
        "process is shown apart) · the notebook kernel's own process, left out: 281.7 samples/s "
        "(1.31x) · no MFU: no peak figure for CPUs: MFU omitted"
    )
    assert summary["Status"] == "ok"
    assert summary["Warnings"] == (
        "> **⚠ Warning**\n>\n> - Step times vary a lot (CV 12% &gt; 10%) \\| close other programs"
    )
    assert summary["Measured"] == (
        "resnet-tiny in torch, inference, batch 2, fp32, compile eager, 2 threads; "
        "2 steps × 4 processes in 0.01–0.02 s each, warm-up 6 steps (settled)"
    )
    assert summary["Environment"] == (
        "AMD EPYC (2 logical cores), 23.5 GiB, GPU none (nvidia-smi not found); Debian GNU/Linux "
        "12 (bookworm), Python 3.11.7, torch 2.13.0+cpu, kernel torch-cpu (pinned)"
    )


def test_one_process_a_sequence_an_mfu_and_a_failed_run_each_say_so():
    metrics = copy.deepcopy(METRICS)
    metrics["samples"].pop("processes")  # the kernel's alone: 7.1 ms
    metrics["summary"]["processes"] = {"n": 1}
    metrics["summary"]["throughput"]["tokens_per_s"] = 52111.3
    metrics["summary"]["compute"] = {"mfu": 0.4123, "peak_source": "H100 SXM bf16 dense"}
    metrics["params"] = {**PARAMS, "sequence_length": 32, "repeats": 1}
    result = lines(head(metrics))["Result"]
    assert "**281.7 samples/s (95% CI 277.8–285.7, 1 process)**" in result
    assert "**7.10 ms** (95% CI 7.00–7.20 ms; one process: CI over its steps" in result
    assert "52,110 tokens/s" in result and "MFU **41.2%** of H100 SXM bf16 dense" in result
    assert "batch 2 × 32 tokens" in lines(head(metrics))["Measured"]
    for scaling, said in [
        ("weak", "batch 2 on each of 2 devices (weak scaling) × 32 tokens"),
        ("strong", "a global batch of 2 over 2 devices (strong scaling) × 32 tokens"),
    ]:
        metrics["params"] = {**metrics["params"], "devices": 2, "scaling": scaling}
        assert said in lines(head(metrics))["Measured"]
    failed = {
        **METRICS,
        "status": "failed",
        "error": "cell 7 raised ValueError: <x>",
        "summary": None,
    }
    summary = lines(head(failed, None))
    assert summary["Result"] == "not measured" and summary["Environment"] == "not recorded"
    assert summary["Title"] == "# resnet-tiny in torch: run failed"
    assert "Run failed: cell 7 raised ValueError: &lt;x&gt;" in summary["Warnings"]
    for own in ({"tokens": 10, "processes": 3}, ["a list"], "text"):  # a template of one's own
        theirs = lines(head({**METRICS, "summary": own}))
        assert theirs["Result"].startswith("this template published no step-time summary")
        assert (
            theirs["Warnings"] == "No warnings." and "2 steps × 4 processes" in theirs["Measured"]
        )
    assert summary["Status"] == "failed: cell 7 raised ValueError: &lt;x&gt;"
    assert "warm-up up to 50 steps" in summary["Measured"]


def template_cells() -> list:
    """What an executed report holds: the banner, then the template's cells and outputs."""
    banner = nbformat.v4.new_markdown_cell("**repro run**: banner")
    banner.metadata["tags"] = [finalize.BANNER_TAG]
    title = nbformat.v4.new_markdown_cell("# Image classification benchmark")
    defaults = nbformat.v4.new_code_cell('workload = "resnet-tiny"')
    defaults.metadata["tags"] = ["parameters"]
    injected = nbformat.v4.new_code_cell('workload = "gpt-mini"')
    injected.metadata["tags"] = ["injected-parameters"]
    claim = {"same model": "outputs agree (|diff| <= 1e-4)", "parameters": "511,514"}
    model = nbformat.v4.new_code_cell("model_info = report.model_summary(...)")
    model.outputs = [
        nbformat.v4.new_output(
            "display_data", data={"text/markdown": report.table(claim, ("model", ""))}
        )
    ]
    plot = nbformat.v4.new_code_cell("metrics = report.results(...)")
    png = base64.b64encode((KERNELSPECS / "logo-32x32.png").read_bytes()).decode()
    alt = "Histogram of the 20 measured step times, from 7.62 to 8.62 ms"
    plot.outputs = [
        nbformat.v4.new_output(
            "display_data",
            data={"image/png": png},
            metadata={"image/png": {"alt": alt}, "repro": {"plot": "latency_distribution"}},
        )
    ]
    return [banner, title, defaults, injected, model, plot]


def test_the_report_leads_with_its_summary_and_renders_in_a_browser(tmp_path):
    notebook = nbformat.v4.new_notebook(cells=template_cells())
    finalize.head(notebook, *records(METRICS, ENVIRONMENT))
    assert [c.metadata.get("tags", [None])[0] for c in notebook.cells[:2]] == [
        finalize.SUMMARY_TAG,
        finalize.BANNER_TAG,
    ]
    assert notebook.cells[0].source == head()
    assert notebook.cells[2].source.startswith("# Image classification")  # then the template
    folders.seal(notebook, tmp_path, status="ok")
    html = (tmp_path / "report.html").read_text()
    hidden = [c.metadata.get("jupyter", {}).get("source_hidden") for c in notebook.cells]
    assert hidden == [None, None, None, True, None, None, None]  # the template's defaults
    folded = re.search(
        r"<details[^>]*><summary>The template's default parameters.*?</details>", html, re.S
    )
    assert folded and "resnet-tiny" in folded.group(0) and "gpt-mini" not in folded.group(0)
    assert "gpt-mini" in html  # this run's values, in view
    title = "resnet-tiny in torch (ok): repro run 20261123T025227Z_resnet-tiny_torch_1c6c22"
    assert f"<title>{title}</title>" in html
    assert re.search(r"<td>outputs agree \(\|diff\| &lt;= 1e-4\)</td>", html)  # one cell
    assert '<img alt="Histogram of the 20 measured step times, from 7.62 to 8.62 ms"' in html
    assert integrity.check(tmp_path / "report.ipynb") == []  # what finalize seals verifies
    sealed = nbformat.read(tmp_path / "report.ipynb", as_version=4)
    sealed.cells[0].source = sealed.cells[0].source.replace("216 samples/s", "316 samples/s")
    nbformat.write(sealed, tmp_path / "report.ipynb")
    [problem] = integrity.check(tmp_path / "report.ipynb")  # a figure typed over: named
    assert problem.startswith("cell 0 changed: # resnet-tiny in torch: 316 samples/s")


@pytest.mark.parametrize("error", ["cell 7 raised ValueError: planted", None])
def test_why_a_run_stopped_or_a_busy_machine_is_said_once_under_the_title(error):
    notebook = nbformat.v4.new_notebook(cells=template_cells())
    busy = "Busy: 1.2 cores"
    summary = {**METRICS["summary"], "machine": {"busy": True, "warnings": [busy]}}
    summary["warnings"] = [busy, busy, *summary["warnings"]]  # said twice by the kernel
    metrics = {**METRICS, "status": "failed" if error else "ok", "error": error, "summary": summary}
    finalize.head(notebook, *records(metrics, ENVIRONMENT))
    assert [c.metadata.get("tags", [None])[0] for c in notebook.cells[:2]] == [
        finalize.SUMMARY_TAG,
        finalize.BANNER_TAG,
    ]
    title, block, _ = notebook.cells[0].source.split("\n\n")
    assert title.endswith("run failed" if error else "3 processes)")
    said = [line for line in block.split("\n") if line.startswith("> - ")]
    assert said == [f"> - Run failed: {error}"] * bool(error) + [
        f"> - {busy}",
        "> - Step times vary a lot (CV 12% &gt; 10%) \\| close other programs",
    ]


@pytest.mark.kernel
def test_one_figure_in_the_terminal_the_report_the_record_a_comparison_and_a_history(
    small_runs, tmp_path
):
    a, b = small_runs["a"], small_runs["b"]  # three processes each
    head = records_of(a).headline
    quote = head.quote()  # "216 samples/s (95% CI 154–301, 3 processes)"
    assert head.processes == 3 and quote in (a.parent / "terminal.txt").read_text()
    first_screen = summary_cell(nbformat.read(a / "report.ipynb", as_version=4)).source
    assert first_screen.startswith(f"# resnet-tiny in torch: {quote}")
    assert quote in html.unescape((a / "report.html").read_text())
    summary = json.loads((a / "metrics.json").read_text())["summary"]
    assert summary["throughput"]["samples_per_s"] == pytest.approx(head.samples_per_s, rel=1e-12)
    assert summary["headline"]["samples_per_s"] == pytest.approx(head.samples_per_s, rel=1e-12)
    out = tmp_path / "out"
    done = repro("compare", str(a), str(b), "--runs-dir", str(out))
    assert done.returncode == 0, done.stderr
    assert f"{a.name}: {quote}" in done.stdout
    [comparison] = out.iterdir()
    assert quote in html.unescape((comparison / "report.html").read_text())
    done = repro("history", str(a), str(b), "--runs-dir", str(out))
    assert done.returncode == 0, done.stderr
    [history] = (p for p in out.iterdir() if p != comparison)
    row = html.unescape(re.sub(r"<[^>]+>", " ", (history / "report.html").read_text()))
    ci = head.samples_per_s_ci95
    said = f"{figure(head.samples_per_s, ci)}\\s+{figure(ci[0], ci)}–{figure(ci[1], ci)}"
    assert re.search(said, row), said  # the history's throughput and CI columns


def test_measured_says_the_steps_and_time_each_process_measured():
    metrics = copy.deepcopy(METRICS)
    metrics["params"] = {**PARAMS, "min_time": 1.0}
    metrics["samples"]["processes"] = [
        {"step_s": [0.01] * 100},
        {"step_s": [0.02] * 50 + [0.0201]},
        {"step_s": [0.0125] * 80},
    ]
    assert lines(head(metrics))["Measured"].endswith(
        "; 51–100 steps × 3 processes in 1.00–1.02 s each (min_time 1 s), warm-up 6 steps (settled)"
    )
    metrics["summary"]["processes"] = {"n": 1}
    metrics["params"] = {**PARAMS, "repeats": 1}  # before min_time: exactly `steps`
    metrics["samples"] = {"batch_size": 2, "step_s": [0.0079] * 20}
    assert "; 20 steps × 1 process in 0.16 s, warm-up" in lines(head(metrics))["Measured"]
