"""MLPerf LoadGen scenarios (`scenario=`, repro.kernel.loadgen): LoadGen's summaries parsed (real
files of mlcommons-loadgen 6.0.17, tests/fixtures/loadgen/), the parameters checked before any
work, the parsed result read back through its record. The runs in real kernels are three of
tests/test_run.py's family runs, each with a short scenario (`scenario_params`), checked here
(`check_scenario_run`): each scenario and framework once, on image and language presets."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from types import SimpleNamespace

import nbformat
import numpy as np
import pytest
from conftest import FIXTURES, read_metrics, repro, summary_cell

from repro import records
from repro.driver import plan
from repro.driver.finalize import loadgen_logs
from repro.errors import UserError
from repro.kernel import loadgen
from repro.kernel.loadgen import LOG_FILES

SUMMARIES = FIXTURES / "loadgen"


def summary(scenario: str) -> dict:
    return loadgen.parse_summary((SUMMARIES / f"{scenario}.txt").read_text())


def test_loadgen_summaries_are_parsed_with_their_verdict_and_percentiles():
    offline, single, server = (summary(s) for s in ("offline", "single-stream", "server"))
    assert (offline["loadgen_scenario"], offline["result"], offline["valid"]) == (
        "Offline",
        "INVALID",
        False,
    )
    assert offline["failed"] == ["Min duration satisfied"]
    assert offline["metric"] == {"name": "Samples per second", "value": 656.834}
    assert offline["samples_per_s"] == 656.834 and offline["parameters"]["samples_per_query"] == 55
    assert (
        "* Increase expected QPS so the loadgen pre-generates a larger (coalesced) query."
        in (offline["notes"])
    )
    assert single["valid"] and single["failed"] == [] and single["mode"] == "PerformanceOnly"
    assert single["metric"] == {"name": "90.0th percentile latency (ns)", "value": 1441807}
    assert single["latency_ns"]["p90"] == 1441807 and single["latency_ns"]["p99.9"] == 7017763
    assert single["samples_per_s"] == 805.54  # QPS with LoadGen's overhead: 1 sample per query
    assert single["stats"] == {
        "QPS w/ loadgen overhead": 805.54,
        "QPS w/o loadgen overhead": 808.71,
    }
    assert server["failed"] == ["Early stopping satisfied"]
    assert server["constraints"]["Performance constraints satisfied"] is True
    assert server["metric"]["name"] == "Completed samples per second"
    assert set(server["latency_ns"]) == {"min", "max", "mean"} | {
        f"p{q}" for q in ("50", "90", "95", "97", "99", "99.9")
    }
    assert server["messages"] == [
        "No warnings encountered during test.",
        "No errors encountered during test.",
    ]


@pytest.mark.parametrize("text", ["", "Result is : VALID\n", "=====\nnot LoadGen\n====="])
def test_a_text_that_is_not_a_loadgen_summary_is_refused(text):
    with pytest.raises(ValueError, match="not a LoadGen summary"):
        loadgen.parse_summary(text)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        (
            {"target_qps": "5"},
            "target_qps applies to scenario=offline|server only, not scenario=none",
        ),
        (
            {"scenario": "offline", "min_query_count": "5"},
            "min_query_count applies to scenario=single-stream|server only, not scenario=offline",
        ),
        (
            {"scenario": "offline", "target_latency_ms": "5"},
            "target_latency_ms applies to scenario=single-stream|server only, not scenario=offline",
        ),
        (
            {"scenario": "single-stream", "target_qps": "5"},
            "target_qps applies to scenario=offline|server only, not scenario=single-stream",
        ),
        (
            {"scenario": "batch"},
            "scenario='batch' is not valid; choose one of: none, single-stream",
        ),
        ({"scenario": "server", "min_duration_ms": "0"}, "min_duration_ms must be >= 1, got 0"),
        ({"scenario": "server", "target_qps": "-1"}, "target_qps must be >= 0, got -1.0"),
    ],
)
def test_scenario_parameters_are_checked(params, message):
    with pytest.raises(UserError) as refused:
        plan.resolve("resnet-tiny", "torch", params, kernel="torch-cpu")
    assert str(refused.value).startswith(message)


def test_a_scenario_with_training_is_refused_in_one_line_before_any_work(runs_dir):
    done = repro(
        "run",
        "resnet-tiny",
        "-p",
        "scenario=offline",
        "-p",
        "mode=training",
        "--runs-dir",
        str(runs_dir),
    )
    assert done.returncode == 2 and done.stderr == (
        "repro: scenario=offline drives inference, not training; use mode=inference or "
        "scenario=none\n"
    )
    assert not runs_dir.exists()


def test_a_parameter_at_its_default_needs_no_scenario():
    """A rerun passes every recorded parameter back: defaults must not be refused (and with no
    scenario, LoadGen's parameters are recorded as null)."""
    given = {"min_duration_ms": "1000", "min_query_count": "64", "target_qps": "0"}
    resolved = plan.resolve("resnet-tiny", "torch", given, kernel="torch-cpu").params
    assert resolved["scenario"] == "none" and resolved["min_duration_ms"] is None


def test_the_parsed_result_reads_back_through_its_record_and_old_ones_still_read():
    metrics = json.loads((FIXTURES / "records" / "metrics.json").read_text())
    old = records.Metrics.from_json(metrics, "metrics.json").step_summary
    assert old is not None and old.loadgen is None  # a report from before scenario=
    parsed = {
        **summary("server"),
        "scenario": "server",
        "settings": {"min_duration_ms": 500, "target_qps": 50.0},
    }
    metrics["summary"]["loadgen"] = parsed
    scenario = records.Metrics.from_json(metrics, "metrics.json").step_summary.loadgen
    assert (scenario.scenario, scenario.result, scenario.valid) == ("server", "INVALID", False)
    assert scenario.failed == ("Early stopping satisfied",) and scenario.samples_per_s == 47.04
    assert scenario.latency_ns["p99"] == 5291208 and scenario.settings["target_qps"] == 50.0
    metrics["summary"]["loadgen"] = {**parsed, "latency_ns": {"p99": "fast"}}
    with pytest.raises(records.RecordError, match="'latency_ns' holds a value"):
        records.Summary.from_json(metrics["summary"], "summary")
    metrics["summary"]["loadgen"] = {**parsed, "result": None}
    with pytest.raises(records.RecordError, match="'result' is NoneType, not str"):
        records.Summary.from_json(metrics["summary"], "summary")


class Answering:
    """The part of a SUT that the accuracy check reads: four samples whose answers are 0..3."""

    samples, batch_size, classes = [0, 1, 2, 3], 4, 10

    def answers(self, indices):
        return np.asarray(indices, dtype=np.int32)


def accuracy_log(answers: dict[int, int]) -> str:
    """An accuracy log as LoadGen writes it: each answer an int32, little-endian, in hex."""
    entries = [
        {"seq_id": i, "qsl_idx": index, "data": np.int32(answer).tobytes().hex().upper()}
        for i, (index, answer) in enumerate(answers.items())
    ]
    return json.dumps(entries)


@pytest.mark.parametrize(
    ("logged", "passed", "agree"),
    [
        ({0: 0, 1: 1, 2: 2, 3: 3}, True, 4),
        ({0: 0, 1: 1, 2: 7, 3: 3}, False, 3),  # one answer is not the model's
        ({0: 0, 1: 1, 3: 3}, False, 3),  # one sample never answered
    ],
)
def test_the_accuracy_run_passes_only_with_every_sample_answered_by_the_model(
    logged, passed, agree
):
    labels = np.asarray([0, 1, 5, 5])
    checked = loadgen.accuracy(Answering(), "offline", accuracy_log(logged), labels)
    assert (checked["passed"], checked["agree"], checked["samples"]) == (passed, agree, 4)
    assert checked["top1"] == pytest.approx(2 / len(logged)) and checked["chance"] == 0.1
    repeated = json.loads(accuracy_log({0: 0, 1: 1, 2: 2, 3: 3})) * 2  # each answered twice
    twice = loadgen.accuracy(Answering(), "offline", json.dumps(repeated), labels)
    assert not twice["passed"] and twice["logged"] == 8


def test_only_loadgens_own_log_names_are_written_from_a_report():
    published = {
        "loadgen_logs": {
            "mlperf_log_summary.txt": "summary",
            "mlperf_log_detail.txt": ["not", "text"],
            "mlperf_log_accuracy.json": "[]",
            "../escape.txt": "outside the folder",
        }
    }
    assert loadgen_logs(published) == {
        "mlperf_log_summary.txt": "summary",
        "mlperf_log_accuracy.json": "[]",
    }
    assert loadgen_logs({"loadgen_logs": "junk"}) == {} == loadgen_logs({})


def scenario_params(scenario: str | None) -> list[str]:
    """A short LoadGen run of `scenario` (none: no parameters): at least 300 ms, 16 queries."""
    if scenario is None:
        return []
    counted = [] if scenario == "offline" else ["min_query_count=16"]
    return [f"scenario={scenario}", "min_duration_ms=300", *counted]


def check_scenario_run(folder: Path, scenario: str) -> None:
    """A finished run that ran LoadGen's `scenario` (`scenario_params`) after the protocol: its
    logs in the folder and manifest, its parsed summary in metrics.json and through its record,
    LoadGen's own summary and the table beside the protocol's in the report, and the summary
    cell's LoadGen line. tests/test_run.py runs each scenario once, in one framework each."""
    metrics = read_metrics(folder)
    result, batch = metrics["summary"]["loadgen"], metrics["params"]["batch_size"]
    logged = loadgen.parse_summary((folder / "mlperf_log_summary.txt").read_text())
    assert {k: result[k] for k in logged} == logged  # metrics.json: LoadGen's own summary, parsed
    assert result["scenario"] == scenario and result["loadgen_version"] == "6.0.17"
    assert result["loadgen_scenario"] == loadgen.SCENARIOS[scenario]
    assert result["valid"] == (result["result"] == "VALID") == (not result["failed"])
    assert result["samples_per_s"] > 0 and result["latency_ns"]["p50"] > 0
    assert result["parameters"]["min_duration (ms)"] == 300
    assert result["parameters"]["performance_sample_count"] == batch  # the QSL: the run's batch
    settings = result["settings"]
    assert settings["batch_size"] == (batch if scenario == "offline" else 1)
    if scenario != "single-stream":  # a QPS target, derived from warm calls
        assert settings["target_qps"] > 0 and settings["target_qps_source"].startswith("auto")
    detail = (folder / "mlperf_log_detail.txt").read_text()
    assert '"key": "result_validity"' in detail and detail.startswith(":::MLLOG")
    manifest = dict(
        reversed(line.split("  ", 1))
        for line in (folder / "MANIFEST.sha256").read_text().splitlines()
    )
    for name in (*loadgen.LOG_FILES, loadgen.ACCURACY_LOG):
        assert manifest[name] == hashlib.sha256((folder / name).read_bytes()).hexdigest()
    # the accuracy run: every sample of the QSL answered once, with the model's own answer
    checked = result["accuracy"]
    assert (
        checked["passed"] and checked["samples"] == checked["logged"] == checked["agree"] == batch
    )
    answers = json.loads((folder / loadgen.ACCURACY_LOG).read_text())
    assert sorted(a["qsl_idx"] for a in answers) == list(range(batch))
    assert records.load(folder).summary.loadgen.result == result["result"]

    notebook = nbformat.read(folder / "report.ipynb", as_version=4)
    head = summary_cell(notebook).source
    assert f"- **LoadGen**: {scenario} **{result['result']}**" in head
    assert f"accuracy run: {batch} of {batch} answers match the model" in head
    assert "not an MLPerf submission" in head
    shown = json.dumps([c.get("outputs", []) for c in notebook.cells])
    assert "MLPerf Results Summary" in shown and "| | LoadGen | repro" in shown
    assert "not an MLPerf submission" in json.dumps(metrics["summary"]["warnings"])


def test_loadgens_logs_are_written_in_the_runs_scratch_folder(tmp_path, monkeypatch):
    """The driver removes its scratch folder however the run ends: on Ctrl-C or SIGTERM it
    kills the kernel, which cannot clean up after itself."""
    monkeypatch.setenv(loadgen.SCRATCH_VARIABLE, str(tmp_path))
    outdirs = []

    def drive(lg, sut, scenario, test, log):
        outdirs.append(Path(log.log_output.outdir))
        (outdirs[0] / "mlperf_log_summary.txt").write_text("summary")

    monkeypatch.setattr(loadgen, "drive", drive)
    lg = SimpleNamespace(LogSettings=lambda: SimpleNamespace(log_output=SimpleNamespace()))
    done = loadgen.perform(lg, SimpleNamespace(error=None), "offline", None, LOG_FILES[:1])
    assert done[0] == {"mlperf_log_summary.txt": "summary"}
    assert outdirs[0].parent == tmp_path and not outdirs[0].exists()
