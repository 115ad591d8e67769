"""The records repro writes and reads back (repro.records), without a kernel: real files of a
run and of a comparison (tests/fixtures/records/, written by an earlier repro) read back and
written again unchanged; a file of another schema version, or without one, refused in one line
through `repro compare` and `repro rerun`; a missing or mistyped key named at the boundary."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nbformat
import numpy as np
import pytest
from conftest import FIXTURES, repro
from papermill.translators import PythonTranslator

from repro import records, stats
from repro.driver import integrity, snapshot, templates, untrusted
from repro.errors import UserError
from repro.paths import TEMPLATES

RECORDS = FIXTURES / "records"
CLASSES = {
    "metrics.json": records.Metrics,
    "environment.json": records.Environment,
    "rerun.json": records.RerunRecord,  # a report's rerun record, its lock and code cut short
    "comparison.json": records.Comparison,
}


def fixture(name: str) -> dict:
    return json.loads((RECORDS / name).read_text())


@pytest.mark.parametrize("name", CLASSES)
def test_real_records_read_back_and_write_the_same_file(name):
    data = fixture(name)
    record = CLASSES[name].from_json(data, name)
    assert record.to_json() == data
    assert json.loads(json.dumps(record.to_json())) == data  # plain JSON, as on disk


def test_what_readers_read_has_a_name():
    metrics = records.Metrics.from_json(fixture("metrics.json"), "metrics.json")
    summary = metrics.step_summary
    assert summary.process_count == 2 and summary.latency_ms["median"] > 0
    assert summary.kwh_per_1000_samples == summary.energy["codecarbon"]["kwh_per_1000_samples"]
    assert summary.gpu_joules_per_1000_samples is None  # no GPU: not measured
    assert summary.energy_method == "estimated" and summary.reference_before
    assert metrics.model_config == metrics.model["config"] and metrics.verdict is None
    environment = records.Environment.from_json(fixture("environment.json"), "environment.json")
    facts = environment.facts()
    assert facts["hardware"]["CPU"] == environment.cpu["model"]
    assert facts["code"]["lock sha256"] == environment.run["lock"]["lock_sha256"]
    comparison = records.Comparison.from_json(fixture("comparison.json"), "comparison.json")
    assert comparison.differences == {} and comparison.baseline == comparison.pairs[0]["base"]


def test_a_rerun_names_every_context_difference_affinity_included():
    """The original ran 2 threads on cores 0-1; the rerun, under `taskset -c 0`, on core 0."""
    original = fixture("environment.json")
    original["cpu"]["affinity"] = original["settings"]["affinity"] = [0, 1]
    pinned = json.loads(json.dumps(original))
    pinned["cpu"]["affinity"] = pinned["settings"]["affinity"] = [0]
    pinned["env_vars"]["OMP_WAIT_POLICY"] = "ACTIVE"
    pinned["system"]["hostname"] = "elsewhere"
    before, after = (records.Environment.from_json(e, "e") for e in (original, pinned))
    assert records.environment_differences(before, after) == {
        "hardware": {"host": [original["system"]["hostname"], "elsewhere"], "usable cores": [2, 1]},
        "driver": {},
        "packages": {},
        "code": {},
        "settings": {"affinity": [[0, 1], [0]]},
        "variables": {"OMP_WAIT_POLICY": [original["env_vars"].get("OMP_WAIT_POLICY"), "ACTIVE"]},
    }
    assert not any(records.environment_differences(before, before).values())


@pytest.mark.parametrize("name", CLASSES)
def test_another_version_or_no_schema_is_refused_in_one_line(name):
    kind = CLASSES[name].schema.split("/")[0]
    with pytest.raises(records.RecordError) as raised:
        CLASSES[name].from_json({**fixture(name), "schema": f"{kind}/2"}, f"runs/x/{name}")
    assert str(raised.value) == (
        f"runs/x/{name} is a {kind}/2 record, from another version of repro; this repro reads "
        f"{kind}/1: read it with the repro that wrote it"
    )
    records_of_1_1 = {**fixture(name), "schema": f"{kind}/1.1"}  # a minor version reads
    assert CLASSES[name].from_json(records_of_1_1, name)
    with pytest.raises(records.RecordError, match=f"^{name} is a {kind} record, from another"):
        CLASSES[name].from_json({**fixture(name), "schema": kind}, name)  # no version at all
    unschemed = {k: v for k, v in fixture(name).items() if k != "schema"}
    with pytest.raises(records.RecordError, match=f"^{name} has no schema: it is not a {kind} "):
        CLASSES[name].from_json(unschemed, name)
    other = "repro.environment/1" if kind == "repro.metrics" else "repro.metrics/1"
    with pytest.raises(records.RecordError, match=f"schema '{other}': it is not a {kind} record"):
        CLASSES[name].from_json({**fixture(name), "schema": other}, name)


@pytest.mark.parametrize(
    ("name", "change", "message"),
    [
        ("metrics.json", {"workload": None}, "'workload' is NoneType, not str"),
        ("metrics.json", {"params": [2]}, "'params' is list, not dict"),
        ("metrics.json", {"pinned": "yes"}, "'pinned' is str, not bool or null"),
        ("metrics.json", {"samples": None}, "is an ok run without samples"),
        ("environment.json", {"packages": ["torch==2", 3]}, "'packages' is not a list of names"),
        ("rerun.json", {"lock": 1}, "'lock' is int, not str or null"),
        ("comparison.json", {"comparison": {"baseline": "a"}}, "has no 'pairs'"),
    ],
)
def test_a_wrong_key_is_named_at_the_boundary(name, change, message):
    with pytest.raises(records.RecordError, match=message):
        CLASSES[name].from_json({**fixture(name), **change}, name)
    if name == "metrics.json":
        for key in ("status", "run_id", "workload", "framework", "kernel", "params"):
            data = {k: v for k, v in fixture(name).items() if k != key}
            with pytest.raises(records.RecordError, match=f"^metrics.json has no '{key}'$"):
                records.Metrics.from_json(data, name)


def test_older_files_lack_fields_added_since():
    data = fixture("metrics.json")
    old = {k: v for k, v in data.items() if k not in ("kernel_reason", "lock_ok", "rerun")}
    metrics = records.Metrics.from_json(old, "metrics.json")
    assert metrics.kernel_reason is None and metrics.rerun is None


def run_copy(tmp_path: Path, name: str, metrics=None, environment=None) -> str:
    folder = tmp_path / name
    folder.mkdir()
    metrics = {**(metrics or fixture("metrics.json")), "run_id": name}  # a run of its own
    (folder / "metrics.json").write_text(json.dumps(metrics))
    (folder / "environment.json").write_text(json.dumps(environment or fixture("environment.json")))
    return str(folder)


def refused(done) -> str:
    assert done.returncode == 2, done.stdout + done.stderr
    [line] = done.stderr.strip().splitlines()
    assert line.startswith("repro: ") and "Traceback" not in done.stderr
    return line


def test_compare_skips_a_run_of_another_version_in_one_line(tmp_path):
    base = run_copy(tmp_path, "base")
    newer = run_copy(tmp_path, "newer", {**fixture("metrics.json"), "schema": "repro.metrics/2"})
    assert refused(repro("compare", base, newer, "--no-report")) == (
        f"repro: compare needs at least two finished runs, got 1; skipping 1: {newer}: "
        f"{newer}/metrics.json is a repro.metrics/2 record, from another version of "
        "repro; this repro reads repro.metrics/1: read it with the repro that wrote it"
    )
    lacking = {k: v for k, v in fixture("metrics.json").items() if k != "framework"}
    line = refused(repro("compare", base, run_copy(tmp_path, "lacking", lacking), "--no-report"))
    assert line.endswith("lacking/metrics.json has no 'framework'")


def test_loading_a_run_names_what_its_records_lack(tmp_path):
    assert records.load(run_copy(tmp_path, "base")).summary.process_count == 2
    environment = {**fixture("environment.json"), "schema": "repro.environment/3"}
    with pytest.raises(records.RecordError, match="environment.json is a repro.environment/3 "):
        records.load(run_copy(tmp_path, "other", environment=environment))
    summary = {**fixture("metrics.json")["summary"], "latency_ms": {"mean": 2.0}}
    renamed = run_copy(tmp_path, "renamed", {**fixture("metrics.json"), "summary": summary})
    with pytest.raises(records.RecordError, match="summary latency_ms has no 'median'$"):
        records.load(renamed)
    params = {**fixture("metrics.json")["params"], "mode": None}
    moded = run_copy(tmp_path, "moded", {**fixture("metrics.json"), "params": params})
    with pytest.raises(records.RecordError, match="params: 'mode' is NoneType, not str or int"):
        records.load(moded)


def spoiled(change) -> dict:
    """The fixture's metrics.json with `change(metrics)` applied."""
    metrics = fixture("metrics.json")
    change(metrics)
    return metrics


SPOILED = {  # a run whose records hold no measurement to read: refused where records are read
    "no steps": lambda m: m["samples"].update(step_s=[]),
    "a process without steps": lambda m: m["samples"]["processes"][1].update(step_s=[]),
    "a NaN step": lambda m: m["samples"]["processes"][0]["step_s"].insert(2, float("nan")),
    "an infinite step": lambda m: m["samples"]["step_s"].append(float("inf")),
    "a NaN throughput": lambda m: m["summary"]["throughput"].update(samples_per_s=float("nan")),
    "an infinite CI": lambda m: m["summary"]["throughput"].update(ci95=[1.0, float("inf")]),
    "a NaN p90": lambda m: m["summary"]["latency_ms"].update(p90=float("nan")),
}


@pytest.mark.parametrize("spoil", SPOILED)
def test_a_run_without_valid_measurements_is_refused_in_one_line_naming_it(spoil, tmp_path):
    folder = run_copy(tmp_path, "bad", spoiled(SPOILED[spoil]))
    with pytest.raises(records.RecordError, match=f"^{folder}/metrics.json") as refusal:
        records.load(folder)
    assert "\n" not in str(refusal.value) and len(str(refusal.value)) < 200


def test_compare_and_history_skip_a_bad_run_with_one_line_and_go_on(tmp_path):
    good = [run_copy(tmp_path, name) for name in ("a", "b")]
    bad = [run_copy(tmp_path, f"bad{i}", spoiled(f)) for i, f in enumerate(SPOILED.values())]
    done = repro("compare", good[0], bad[0], bad[4], good[1], "--no-report")
    assert done.returncode == 0, done.stderr
    assert "b vs a: " in done.stdout and "bad" not in done.stdout
    assert done.stderr.splitlines() == [
        f"skipping {bad[0]}: {bad[0]}/metrics.json has no valid step times (samples.step_s)",
        f"skipping {bad[4]}: {bad[4]}/metrics.json summary throughput: 'samples_per_s' is nan, "
        "not a number",
    ]
    line = refused(repro("compare", good[0], *bad, "--no-report"))  # one good run: nothing said
    assert line.startswith(
        f"repro: compare needs at least two finished runs, got 1; skipping {len(bad)}: "
    )
    runs, passed = records.gather([tmp_path], depth=4)
    assert [r.name for r in runs] == ["a", "b"] and len(passed) == len(bad)


def test_a_run_is_compared_with_itself_never_and_counted_once(tmp_path):
    a, b = run_copy(tmp_path, "a"), run_copy(tmp_path, "b")
    copy = shutil.copytree(a, tmp_path / "copy")  # another folder, the same run
    for twice, why in [
        ([a, a], f"{a} is the same folder as {a}"),
        ([a, b, f"{a}/."], f"{a} is the same folder as {a}"),
        ([a, copy], f"{copy} is the same run (id a) as {a}"),
    ]:
        assert refused(repro("compare", *twice, "--no-report")) == (
            f"repro: {why}: a run compared with itself says nothing"
        )
    (tmp_path / "loop").symlink_to(tmp_path)  # runs/loop -> runs: every run found again below
    runs, passed = records.gather([tmp_path], depth=4)
    assert [r.name for r in runs] == ["a", "b"]
    assert f"{copy} is the same run (id a) as {a}" in passed
    assert f"{tmp_path}/loop/b is the same folder as {b}" in passed


def report_of_another_version(tmp_path: Path) -> Path:
    """A sealed report, intact for `verify`, whose rerun record is of schema repro.rerun/2."""
    code = snapshot.take(templates.from_file(TEMPLATES / "compare.ipynb"))
    record = {**fixture("rerun.json"), "schema": "repro.rerun/2", "lock": None, "code": code}
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# a report")])
    meta = {"status": "ok", "rerun": record, "run": {"run_id": "r", **snapshot.hashes(code)}}
    notebook.metadata["repro"] = {**meta, "integrity": integrity.seal(meta, notebook)}
    nbformat.write(notebook, tmp_path / "report.ipynb")
    return tmp_path / "report.ipynb"


def test_rerun_refuses_a_report_of_another_version_in_one_line(tmp_path):
    report = report_of_another_version(tmp_path)
    assert repro("verify", str(report)).returncode == 0  # intact: only its version differs
    assert refused(repro("rerun", str(report), "--runs-dir", str(tmp_path / "runs"))) == (
        "repro: the report's rerun record is a repro.rerun/2 record, from another version of "
        "repro; this repro reads repro.rerun/1: read it with the repro that wrote it"
    )
    assert not (tmp_path / "runs").exists()


def ran(record: records.RerunRecord, **changes):
    """A notebook whose injected-parameters cell is what papermill writes for `record`'s run."""
    parameters = {"workload": record.workload["name"], "framework": record.framework}
    parameters |= {"model": record.workload["model"], **record.params, **changes}
    source = PythonTranslator.codify({**parameters, "run_context": {"run_id": "r"}})
    cell = nbformat.v4.new_code_cell(source, metadata={"tags": ["injected-parameters"]})
    return nbformat.v4.new_notebook(cells=[cell])


def test_a_rerun_record_must_name_what_its_notebook_ran():
    record = records.RerunRecord.from_json(fixture("rerun.json"), "rerun.json")
    untrusted.as_ran(ran(record), record)
    for changes, named in [
        (
            {"workload": "vit-tiny"},
            "workload='resnet-tiny', but its notebook ran workload='vit-tiny'",
        ),
        ({"framework": "jax"}, "framework='torch', but its notebook ran framework='jax'"),
        ({"batch_size": 64}, "batch_size=2, but its notebook ran batch_size=64"),
    ]:
        with pytest.raises(UserError, match=f"its rerun record names {named}$"):
            untrusted.as_ran(ran(record, **changes), record)
    with pytest.raises(UserError, match="does not say what it ran"):
        untrusted.as_ran(nbformat.v4.new_notebook(), record)


def test_comparison_json_records_its_schema_first(tmp_path):
    comparison = records.Comparison("failed", "interrupted", {})
    assert list(comparison.to_json()) == ["schema", "status", "error"]
    assert comparison.to_json()["schema"] == "repro.comparison/1" == records.COMPARISON_SCHEMA
    shutil.copy(RECORDS / "comparison.json", tmp_path)
    assert records.not_finished(tmp_path) == "a comparison, not a run"


def with_params(steps_s: list[float], **params) -> dict:
    metrics = fixture("metrics.json")
    samples = {**metrics["samples"], "step_s": steps_s, "processes": None}  # one process
    return {**metrics, "params": {**metrics["params"], **params}, "samples": samples}


def test_a_data_parallel_run_finds_its_one_device_twin_and_its_efficiency(tmp_path):
    rng = np.random.default_rng(0)
    one = list(0.010 * (1 + 0.02 * rng.standard_normal(40)))
    two = list(0.0125 * (1 + 0.02 * rng.standard_normal(40)))  # E(2) = 0.010 / 0.0125 = 0.8
    twin, parallel, other = (
        records.load(run_copy(tmp_path, name, with_params(steps, **params)))
        for name, steps, params in [
            ("one", one, {"devices": 1}),
            ("two", two, {"devices": 2, "seed": 7}),  # a seed sets no measured work
            ("other", two, {"devices": 2, "precision": "bf16"}),
        ]
    )
    assert twin.setting() == parallel.setting() != other.setting()
    assert records.twins([twin, parallel, other]) == [(twin, parallel)]
    assert records.context_differences([twin, parallel]) == {
        "devices": [1, 2],
        "scaling": [None, "weak"],
    }
    e = stats.efficiency(twin.samples, parallel.samples)
    assert e["efficiency"] == pytest.approx(0.8, rel=0.02)
    assert e["ci95"][0] < e["efficiency"] < e["ci95"][1] and e["ci95"][1] - e["ci95"][0] < 0.05
    older = fixture("metrics.json")  # written before `devices`: one device
    assert "devices" not in older["params"]
    assert records.load(run_copy(tmp_path, "older", older)).devices == 1


def test_weak_and_strong_runs_each_find_the_one_device_twin_of_their_batch_size(tmp_path):
    """Weak: the twin runs one device's batch; strong: the global batch. Both are the one-device
    run with the same batch_size, which records no scaling, so it is the twin of either."""
    rng = np.random.default_rng(1)

    def steps(mean: float) -> list[float]:
        return list(mean * (1 + 0.02 * rng.standard_normal(40)))

    one, weak, strong, small, old = (
        records.load(run_copy(tmp_path, name, with_params(steps(mean), **params)))
        for name, mean, params in [
            ("one", 0.010, {"devices": 1, "batch_size": 4, "scaling": None}),
            ("weak", 0.0125, {"devices": 2, "batch_size": 4, "scaling": "weak"}),
            ("strong", 0.00625, {"devices": 2, "batch_size": 4, "scaling": "strong"}),
            ("small", 0.005, {"devices": 1, "batch_size": 2, "scaling": None}),
            ("old", 0.0125, {"devices": 2, "batch_size": 2}),  # before `scaling`: weak
        ]
    )
    assert records.twins([small, one, weak, strong, old]) == [
        (one, weak),
        (one, strong),
        (small, old),
    ]
    assert [r.scaling for r in (one, weak, strong, old)] == [None, "weak", "strong", "weak"]
    assert records.context_differences([weak, strong]) == {"scaling": ["weak", "strong"]}
    assert "×2 strong" in strong.label and "×" not in one.label
    e = stats.efficiency(one.samples, strong.samples, shared=2)  # 0.010 / (2 x 0.00625) = 0.8
    assert e["efficiency"] == pytest.approx(0.8, rel=0.02)
    assert e["ci95"][0] < e["efficiency"] < e["ci95"][1] < 0.9
    weak_e = stats.efficiency(one.samples, weak.samples)  # 0.010 / 0.0125 = 0.8
    assert weak_e["efficiency"] == pytest.approx(0.8, rel=0.02)
