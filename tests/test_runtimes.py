"""Exported runtimes (`runtime=onnxruntime`, repro.kernel.runtimes): a runtime that cannot serve
a run is refused before any work; torch models exported, checked against the native model and
served by ONNX Runtime in real runs; an export that changed the model fails its run."""

from __future__ import annotations

import nbformat
import pytest
from conftest import read_metrics, repro, run_folders, summary_cell
from test_loadgen import check_scenario_run, scenario_params
from test_run import run_ok

from repro import records
from repro.driver import plan, templates
from repro.errors import UserError

SMALL = ["-p", "batch_size=2", "-p", "steps=5", "-p", "warmup=3"]


@pytest.mark.parametrize(
    ("workload", "framework", "params", "message"),
    [
        ("resnet-tiny", "jax", {}, "serves jax's vit, convnext, bert, gpt only, not resnet"),
        ("bert-mini", "tensorflow", {}, "serves tensorflow's resnet only, not bert: tf2onnx"),
        ("resnet-tiny", "torch", {"runtime": "litert"}, "litert exports models from tensorflow"),
        ("resnet-tiny", "jax", {"runtime": "openvino"}, "openvino exports models from torch only"),
        ("resnet-tiny", "torch", {"precision": "bf16"}, "serves the fp32 model on the CPU"),
        ("resnet-tiny", "torch", {"compile": "compile"}, "leave compile at eager"),
        ("resnet-tiny", "tensorflow", {"compile": "xla"}, "leave compile at function"),
        ("resnet-tiny", "torch", {"mode": "training"}, "runtime applies to mode=inference only"),
    ],
)
def test_a_runtime_that_cannot_serve_the_run_is_refused(workload, framework, params, message):
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)")):
        plan.resolve(workload, framework, params={"runtime": "onnxruntime", **params})
    assert (
        plan.resolve("resnet-tiny", "torch", params={"mode": "training"}).params["runtime"] is None
    )


EXPORTED = {  # runtime: (the file its exporter writes, its threads as the record holds them)
    "onnxruntime": ("model.onnx", lambda r: r["session"]["intra_op_threads"]),
    "litert": ("model.tflite", lambda r: r["interpreter"]["num_threads"]),
    "openvino": ("model.xml", lambda r: int(r["config"]["INFERENCE_NUM_THREADS"])),
}


@pytest.mark.kernel
@pytest.mark.parametrize(
    ("workload", "framework", "runtime", "repeats", "exporter", "scenario"),
    [
        ("resnet-tiny", "torch", "onnxruntime", 1, "torch.onnx.export", "offline"),
        ("bert-mini", "torch", "onnxruntime", 2, "torch.onnx.export", None),
        ("resnet-tiny", "tensorflow", "onnxruntime", 1, "tf2onnx", None),
        ("bert-mini", "jax", "onnxruntime", 1, "jax2onnx", None),
        ("resnet-tiny", "torch", "openvino", 1, "openvino.convert_model", None),
        # LoadGen's single-sample queries: the interpreter replans for a new batch size
        ("bert-mini", "tensorflow", "litert", 1, "tf.lite.TFLiteConverter", "single-stream"),
    ],
)
def test_a_model_is_exported_checked_and_served_by_another_runtime(
    workload, framework, runtime, repeats, exporter, scenario, runs_dir
):
    folder = run_ok(
        runs_dir, workload, "-f", framework, *SMALL, "-p", f"runtime={runtime}",
        "-p", f"repeats={repeats}", *(a for p in scenario_params(scenario) for a in ("-p", p)),
    )  # fmt: skip
    if scenario:  # LoadGen's SUT is the exported runtime too
        check_scenario_run(folder, scenario)
    metrics = read_metrics(folder)
    served, summary = metrics["summary"]["runtime"], metrics["summary"]
    check = served["equivalence"]
    assert served["runtime"] == runtime and served["exporter"]["exporter"].startswith(exporter)
    assert check["same"] and check["max_abs_diff"] <= check["tolerance"] and check["samples"] == 2
    filename, threads = EXPORTED[runtime]
    assert threads(served) == metrics["params"]["threads"] and served["export_s"] > 0
    if runtime == "onnxruntime":
        assert served["providers"] == ["CPUExecutionProvider"] and served["opsets"]["ai.onnx"] >= 17
    elif runtime == "openvino":  # fp32 asked for explicitly, the batch dynamic
        assert served["config"]["INFERENCE_PRECISION_HINT"] == "f32"
        assert served["input"]["shape"] == "[?,3,64,64]"
    else:  # the batch stays dynamic, as LoadGen's queries need
        assert served["input"]["shape"] == [-1, 32] and "XNNPACK" in served["delegate"]
    written = served["files"]  # OpenVINO's weights go beside its graph, in model.bin
    assert filename in written and all(len(f["sha256"]) == 64 for f in written.values())
    assert sum(f["bytes"] for f in written.values()) == served["bytes"]
    assert summary["processes"]["n"] == repeats  # each process exported and checked its own
    run = records.load(folder)
    assert run.summary.runtime["runtime"] == runtime
    assert run.label.startswith(f"{framework}→{runtime} {workload} bs2")
    notebook = nbformat.read(folder / "report.ipynb", as_version=4)
    assert f"exported to {runtime}" in summary_cell(notebook).source
    assert any("exported − native" in str(c.get("outputs")) for c in notebook.cells)


PLANTED = {  # runtime: (framework, a planted exporter bug: the largest weight 1% off in the file)
    "onnxruntime": (
        "torch",
        """export = fw.export_onnx


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
""",
    ),
    "litert": (  # off while the converter freezes the weights, restored in the native model
        "tensorflow",
        """export = fw.export_tflite


def broken(net, inputs, path):
    import numpy as np

    weights = max(net.weights, key=lambda w: int(np.prod(w.shape)))
    kept = weights.numpy()
    weights.assign(kept * 1.01)
    try:
        return export(net, inputs, path)
    finally:
        weights.assign(kept)


fw.export_tflite = broken
""",
    ),
}


@pytest.mark.kernel
@pytest.mark.parametrize("runtime", sorted(PLANTED))
def test_an_export_that_changed_the_model_fails_the_run(runtime, runs_dir, tmp_path):
    framework, planted = PLANTED[runtime]
    notebook = nbformat.read(templates.BODY, as_version=4)
    [cell] = [c for c in notebook.cells if "runtimes.serve(" in c.source]
    cell.source = planted + cell.source
    template = tmp_path / "broken-export.ipynb"
    nbformat.write(notebook, template)
    done = repro(
        "run", "resnet-tiny", "--template", str(template), "-f", framework,
        "-p", f"runtime={runtime}", *SMALL, "--runs-dir", str(runs_dir),
    )  # fmt: skip
    assert done.returncode == 1
    [folder] = run_folders(runs_dir)
    metrics = read_metrics(folder)
    assert metrics["status"] == "failed"
    assert f"the {runtime} export is not the native model: max |difference|" in metrics["error"]
    assert "exceeds the tolerance" in done.stderr.strip().splitlines()[-1]
    report = nbformat.read(folder / "report.ipynb", as_version=4)
    assert "An Exception was encountered" in report.cells[1].source  # under the title, on top
    script = (folder / "run.sh").read_text()  # reruns with the same notebook of one's own
    assert f"--template {template.resolve()}" in script and script.count("\nexec ") == 1
