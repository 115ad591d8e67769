"""Exported runtimes (`runtime=onnxruntime`, repro.kernel.runtimes): a runtime that cannot serve
a run is refused before any work; torch models exported, checked against the native model and
served by ONNX Runtime in real runs; an export that changed the model fails its run."""

from __future__ import annotations

import nbformat
import pytest
from conftest import read_metrics, repro, run_folders
from test_run import run_ok, summary_cell

from repro import records
from repro.driver import plan, templates
from repro.errors import UserError

ORT = ["-p", "runtime=onnxruntime", "-p", "batch_size=2", "-p", "steps=5", "-p", "warmup=3"]


@pytest.mark.parametrize(
    ("framework", "params", "message"),
    [
        ("jax", {}, "exports models from torch only, not jax (jax2onnx would export it"),
        ("tensorflow", {}, "not tensorflow (tf2onnx would export it; not built in repro yet)"),
        ("torch", {"precision": "bf16"}, "serves the fp32 model on the CPU"),
        ("torch", {"compile": "compile"}, "leave compile at eager"),
        ("torch", {"mode": "training"}, "runtime applies to mode=inference only"),
    ],
)
def test_a_runtime_that_cannot_serve_the_run_is_refused(framework, params, message):
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)")):
        plan.resolve("resnet-tiny", framework, params={"runtime": "onnxruntime", **params})
    assert (
        plan.resolve("resnet-tiny", "torch", params={"mode": "training"}).params["runtime"] is None
    )


@pytest.mark.kernel
@pytest.mark.parametrize(("workload", "repeats"), [("resnet-tiny", 1), ("bert-mini", 2)])
def test_a_torch_model_is_exported_checked_and_served_by_onnx_runtime(workload, repeats, runs_dir):
    folder = run_ok(runs_dir, workload, "-f", "torch", *ORT, "-p", f"repeats={repeats}")
    metrics = read_metrics(folder)
    served, summary = metrics["summary"]["runtime"], metrics["summary"]
    check = served["equivalence"]
    assert served["runtime"] == "onnxruntime" and served["providers"] == ["CPUExecutionProvider"]
    assert check["same"] and check["max_abs_diff"] <= check["tolerance"] and check["samples"] == 2
    assert served["session"]["intra_op_threads"] == metrics["params"]["threads"]
    assert served["exporter"]["exporter"].startswith("torch.onnx.export")
    assert served["opsets"]["ai.onnx"] >= 17 and served["export_s"] > 0
    [(name, file)] = served["files"].items()
    assert name == "model.onnx" and len(file["sha256"]) == 64 and file["bytes"] == served["bytes"]
    assert summary["processes"]["n"] == repeats  # each process exported and checked its own
    run = records.load(folder)
    assert run.summary.runtime["runtime"] == "onnxruntime"
    assert run.label.startswith(f"torch→onnxruntime {workload} bs2")
    notebook = nbformat.read(folder / "report.ipynb", as_version=4)
    assert "exported to onnxruntime" in summary_cell(notebook).source
    assert any("exported − native" in str(c.get("outputs")) for c in notebook.cells)


PLANTED = """# A planted exporter bug: every weight of the largest tensor 1% off after the export
export = fw.export_onnx


def broken(net, inputs, path):
    import numpy as np
    import onnx
    from onnx import numpy_helper

    info = export(net, inputs, path)
    graph = onnx.load(str(path))
    weights = max(graph.graph.initializer, key=lambda t: int(np.prod(t.dims)))
    weights.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(weights) * 1.01, weights.name))
    onnx.save(graph, str(path))
    return info


fw.export_onnx = broken
"""


@pytest.mark.kernel
def test_an_export_that_changed_the_model_fails_the_run(runs_dir, tmp_path):
    notebook = nbformat.read(templates.BODY, as_version=4)
    [cell] = [c for c in notebook.cells if "runtimes.serve(" in c.source]
    cell.source = PLANTED + cell.source
    template = tmp_path / "broken-export.ipynb"
    nbformat.write(notebook, template)
    done = repro(
        "run", "resnet-tiny", "--template", str(template), *ORT, "--runs-dir", str(runs_dir)
    )
    assert done.returncode == 1
    [folder] = run_folders(runs_dir)
    metrics = read_metrics(folder)
    assert metrics["status"] == "failed"
    assert "the onnxruntime export is not the native model: max |difference|" in metrics["error"]
    assert "exceeds the tolerance" in done.stderr.strip().splitlines()[-1]
    report = nbformat.read(folder / "report.ipynb", as_version=4)
    assert "An Exception was encountered" in report.cells[0].source  # the reason, on top
