"""Exported runtimes (in-kernel side): `runtime=onnxruntime` serves the run's model, exported
from its framework, with ONNX Runtime instead of the framework itself.

The export lives in the source framework's kernel: exporting needs the framework, and the
equivalence check needs the native model's outputs in the same process. ONNX Runtime is an
inference runtime, not a training framework, so a kernel still holds one of those. The model
is exported in eval mode with a dynamic batch dimension (LoadGen's queries come in any size),
loaded into an InferenceSession with its threads set as the framework's are, and checked: its
outputs on the run's own batch against the native model's, within EXPORT_ATOL + EXPORT_RTOL x
max|native output|. Beyond that the run fails (ExportMismatch), its reason at the top of the
report. The step repro times and LoadGen's system under test then call the session
(`Adapter.serving_function`); everything else (FLOPs, the parameter count) is the same model's.
"""

from __future__ import annotations

import hashlib
import math
import tempfile
from pathlib import Path

RUNTIMES = ("native", "onnxruntime")
EXPORTERS = {  # runtime: {framework: the exporter repro uses}; the driver refuses the others
    "onnxruntime": {"torch": "torch.onnx.export (dynamo=True, through onnxscript)"},
}
NOT_YET = {  # framework: what would export it, not built in repro yet
    "tensorflow": "tf2onnx",
    "jax": "jax2onnx",
}
# The export runs other kernels (ONNX Runtime's MLAS, not oneDNN or Eigen) in another order, so
# it is held to a looser bound than two frameworks' own implementations (models.EQUIVALENCE_*)
EXPORT_ATOL, EXPORT_RTOL = 1e-5, 1e-4
GRAPH_OPTIMIZATION = "ORT_ENABLE_ALL"


class ExportMismatch(RuntimeError):
    """The exported model's outputs are not the native model's: the run fails."""


def refusal(runtime: str, framework: str) -> str | None:
    """Why `framework` cannot be served by `runtime` here, or None where it can."""
    if runtime in (None, "native") or framework in EXPORTERS[runtime]:
        return None
    built = ", ".join(EXPORTERS[runtime])
    later = f" ({NOT_YET[framework]} would export it; not built in repro yet)"
    return f"runtime={runtime} exports models from {built} only, not {framework}{later}"


def files(folder: Path) -> dict[str, dict]:
    """Each file the exporter wrote (a large model's weights go beside the graph), its size
    and sha256."""
    found = {}
    for path in sorted(p for p in folder.iterdir() if p.is_file()):
        found[path.name] = {
            "bytes": path.stat().st_size,
            "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
        }
    return found


def session(path: Path, threads: int):
    """An ONNX Runtime session on the CPU with its threads and graph optimisation set
    explicitly: intra-op threads as the framework's, one inter-op thread, ops in sequence."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, GRAPH_OPTIMIZATION)
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def serve(fw, net, runtime: str, batch) -> dict | None:
    """Export `net` for `runtime`, check it on `batch` (the run's own inputs, as arrays) and make
    it what `fw` serves inference with; the record of the export, or None for runtime=native
    (or null: a mode other than inference)."""
    if runtime in (None, "native"):
        return None
    import numpy as np
    import onnx
    import onnxruntime as ort

    from repro.kernel import measure
    from repro.kernel.frameworks import COMPILE_MODES

    why = refusal(runtime, fw.name)
    if why:
        raise ValueError(why)
    if fw.device != "cpu" or fw.precision != "fp32":
        raise ValueError(
            f"runtime={runtime} serves the fp32 model on the CPU (this kernel holds ONNX "
            f"Runtime's CPU build): run with device=cpu precision=fp32, not device={fw.device} "
            f"precision={fw.precision}"
        )
    inputs = fw.to_native(batch)
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "model.onnx"
        exporter, export_s = measure.clock(fw.export_onnx, net, inputs, path)
        written = files(Path(scratch))
        graph = onnx.load(str(path), load_external_data=False)
        served, load_s = measure.clock(session, path, fw.threads)
    name = served.get_inputs()[0].name

    def infer(x):
        return served.run(None, {name: fw.to_numpy(x)})[0]

    native = fw.to_numpy(fw.inference_function(net, COMPILE_MODES[fw.name][0])(inputs))
    exported = infer(inputs)
    if exported.shape != native.shape:
        raise ExportMismatch(
            f"the {runtime} export is not the native model: it returns an output of shape "
            f"{exported.shape}, the native model {native.shape}"
        )
    diff = float(np.max(np.abs(exported.astype(np.float64) - native))) if native.size else 0.0
    scale = float(np.max(np.abs(native))) if native.size else 0.0
    tolerance = EXPORT_ATOL + EXPORT_RTOL * scale
    record = {
        "runtime": runtime,
        "runtime_version": ort.__version__,
        "providers": served.get_providers(),
        "exporter": {**exporter, "onnx": onnx.__version__},
        "opsets": {o.domain or "ai.onnx": o.version for o in graph.opset_import},
        "ir_version": graph.ir_version,
        "export_s": export_s,
        "session_load_s": load_s,
        "files": written,
        "bytes": sum(f["bytes"] for f in written.values()),
        "kept": False,  # exported again by a rerun; the hashes say whether it came out the same
        "session": {
            "intra_op_threads": fw.threads,
            "inter_op_threads": 1,
            "execution_mode": "ORT_SEQUENTIAL",
            "graph_optimization_level": GRAPH_OPTIMIZATION,
        },
        "equivalence": {
            "max_abs_diff": diff,
            "max_abs_native": scale,
            "tolerance": tolerance,
            "atol": EXPORT_ATOL,
            "rtol": EXPORT_RTOL,
            "samples": int(native.shape[0]),
            "same": math.isfinite(diff) and diff <= tolerance,
        },
    }
    if not record["equivalence"]["same"]:
        raise ExportMismatch(
            f"the {runtime} export is not the native model: max |difference| {diff:.3g} on the "
            f"run's batch exceeds the tolerance {tolerance:.3g} ({EXPORT_ATOL:g} + {EXPORT_RTOL:g}"
            f" x max|output| {scale:.3g}); the exporter ({exporter['exporter']}) changed the model"
        )
    fw.served = infer
    return record


def show(record: dict | None) -> dict | None:
    """Publish the export's record (report.results keeps it in metrics.json)."""
    if record is None:
        return None
    from repro.kernel import report

    check = record["equivalence"]
    rows = {
        "runtime": f"{record['runtime']} {record['runtime_version']} "
        f"({', '.join(record['providers'])})",
        "exporter": f"{record['exporter']['exporter']}; onnx {record['exporter']['onnx']}",
        "opsets": ", ".join(f"{d} {v}" for d, v in record["opsets"].items()),
        "export time (s)": f"{record['export_s']:.2f}",
        "session load (s)": f"{record['session_load_s']:.2f}",
        "exported size": f"{record['bytes'] / 2**20:,.2f} MiB",
        **{f"sha256 of {n}": f"`{f['sha256']}`" for n, f in record["files"].items()},
        "threads (intra-op, inter-op)": f"{record['session']['intra_op_threads']}, "
        f"{record['session']['inter_op_threads']}",
        "graph optimisation": record["session"]["graph_optimization_level"],
        "max |exported − native|": f"{check['max_abs_diff']:.3g} on {check['samples']} samples "
        f"(tolerance {check['tolerance']:.3g}): the same model",
    }
    return report.publish("runtime", record, report.table(rows, ("export", "")))
