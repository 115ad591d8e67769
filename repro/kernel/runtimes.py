"""Exported runtimes (in-kernel side): `runtime=onnxruntime`, `litert` or `openvino` serves the
run's model, exported from its framework, with ONNX Runtime, the LiteRT interpreter or OpenVINO
instead of the framework itself.

The export lives in the source framework's kernel: exporting needs the framework, and the
equivalence check needs the native model's outputs in the same process. ONNX Runtime, LiteRT and
OpenVINO are inference runtimes, not training frameworks, so a kernel still holds one of those.
The model is exported in eval mode with a dynamic batch dimension (LoadGen's queries come in any
size), loaded with its threads set as the framework's are, and checked: its outputs on the run's
own batch against the native model's, within EXPORT_ATOL + EXPORT_RTOL x max|native output|.
Beyond that the run fails (ExportMismatch), its reason at the top of the report. The step repro
times and LoadGen's system under test then call the exported model (`Adapter.serving_function`);
everything else (FLOPs, the parameter count) is the same model's.
"""

from __future__ import annotations

import hashlib
import math
import tempfile
from pathlib import Path

RUNTIMES = ("native", "onnxruntime", "litert", "openvino")
EXPORTERS = {  # runtime: {framework: the exporter repro uses}; the driver refuses the others
    "onnxruntime": {
        "torch": "torch.onnx.export (dynamo=True, through onnxscript)",
        "tensorflow": "tf2onnx",
        "jax": "jax2onnx",
    },
    "litert": {"tensorflow": "the TFLite converter, from a frozen tf.function"},
    "openvino": {"torch": "openvino.convert_model, from the torch module"},
}
NOT_YET = {  # (runtime, framework): what would export it, not built in repro yet
    ("litert", "torch"): "ai-edge-torch",
    ("litert", "jax"): "jax2tf, then the TFLite converter",
    ("onnxruntime", "mxnet"): "mxnet.onnx.export_model",
    ("openvino", "tensorflow"): "openvino.convert_model from a SavedModel",
    ("openvino", "jax"): "openvino.convert_model from a jax2onnx export",
}
GELU_ERFC = (  # measured with tf2onnx 1.17.0, TensorFlow 2.21, ONNX Runtime 1.32
    "tf2onnx writes Keras' exact GELU as an Erfc node, which ONNX does not define (ONNX Runtime "
    "refuses the graph)"
)
MAX_POOL = (  # measured with jax2onnx 0.17.1, flax 0.12.8, ONNX Runtime 1.32
    "jax2onnx's conversion of Flax's max_pool raises a TypeError on it, and with the call "
    "rewritten its export's outputs were 0.077 off (of 0.48) on resnet-tiny"
)
SAVED_KERAS = "no exporter has been checked on a saved Keras model in repro yet"
UNSUPPORTED = {  # (runtime, framework): {family: why its exporter cannot export it}
    ("onnxruntime", "tensorflow"): {
        **dict.fromkeys(("vit", "convnext", "bert", "gpt"), GELU_ERFC),
        "keras": SAVED_KERAS,
    },
    ("onnxruntime", "jax"): {"resnet": MAX_POOL, "keras": SAVED_KERAS},
    ("onnxruntime", "torch"): {"keras": SAVED_KERAS},
    ("litert", "tensorflow"): {"keras": SAVED_KERAS},
    ("openvino", "torch"): {"keras": SAVED_KERAS},
}
# The export runs other kernels (ONNX Runtime's MLAS, LiteRT's XNNPACK, not oneDNN or Eigen) in
# another order, so it is held to a looser bound than two frameworks' own implementations
EXPORT_ATOL, EXPORT_RTOL = 1e-5, 1e-4
GRAPH_OPTIMIZATION = "ORT_ENABLE_ALL"
# OpenVINO's CPU plugin computes in bf16 where the CPU has bf16 units unless told f32: the run's
# precision (fp32) is set explicitly, as in every framework
OPENVINO_CONFIG = {
    "INFERENCE_PRECISION_HINT": "f32",
    "PERFORMANCE_HINT": "LATENCY",
    "NUM_STREAMS": 1,
}


class ExportMismatch(RuntimeError):
    """The exported model's outputs are not the native model's: the run fails."""


def refusal(runtime: str, framework: str, family: str) -> str | None:
    """Why `framework`'s `family` model cannot be served by `runtime` here, or None where it
    can."""
    if runtime in (None, "native"):
        return None
    if framework not in EXPORTERS[runtime]:
        built = ", ".join(EXPORTERS[runtime])
        later = NOT_YET.get((runtime, framework))
        later = f" ({later} would export it; not built in repro yet)" if later else ""
        return f"runtime={runtime} exports models from {built} only, not {framework}{later}"
    why = UNSUPPORTED.get((runtime, framework), {}).get(family)
    if why:
        served = ", ".join(models_of(runtime, framework))
        return f"runtime={runtime} serves {framework}'s {served} only, not {family}: {why}"
    return None


def models_of(runtime: str, framework: str) -> list[str]:
    """The families `framework`'s exporter for `runtime` handles."""
    from repro.kernel.models import ARCHS

    unsupported = UNSUPPORTED.get((runtime, framework), {})
    return [f for f in ARCHS if f not in unsupported]


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


def onnxruntime(path: Path, threads: int):
    """An ONNX Runtime session on the CPU with its threads and graph optimisation set
    explicitly (intra-op threads as the framework's, one inter-op thread, ops in sequence): its
    infer(array) -> array and what the report records of it."""
    import onnx
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, GRAPH_OPTIMIZATION)
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    graph = onnx.load(str(path), load_external_data=False)

    def infer(x):
        return session.run(None, {name: x})[0]

    return infer, {
        "runtime_version": ort.__version__,
        "providers": session.get_providers(),
        "onnx": onnx.__version__,
        "opsets": {o.domain or "ai.onnx": o.version for o in graph.opset_import},
        "ir_version": graph.ir_version,
        "session": {
            "intra_op_threads": threads,
            "inter_op_threads": 1,
            "execution_mode": "ORT_SEQUENTIAL",
            "graph_optimization_level": GRAPH_OPTIMIZATION,
        },
    }


def litert(path: Path, threads: int):
    """A LiteRT interpreter with `threads` threads and its default CPU delegate (XNNPACK): its
    infer(array) -> array, which resizes the input to each new batch size, and its record."""
    import ai_edge_litert
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path), num_threads=threads)
    [given], [out] = interpreter.get_input_details(), interpreter.get_output_details()
    shape = None

    def infer(x):
        nonlocal shape
        if x.shape != shape:  # a new batch size: the tensors are planned again
            interpreter.resize_tensor_input(given["index"], list(x.shape))
            interpreter.allocate_tensors()
            shape = x.shape
        interpreter.set_tensor(given["index"], x)
        interpreter.invoke()
        return interpreter.get_tensor(out["index"])

    return infer, {
        "runtime_version": ai_edge_litert.__version__,
        "delegate": "XNNPACK (the interpreter's default for float models)",
        "interpreter": {"num_threads": threads},
        "input": {"shape": [int(d) for d in given["shape_signature"]]},  # -1: dynamic
    }


def openvino(path: Path, threads: int):
    """The model compiled by OpenVINO's CPU plugin with `threads` threads, fp32 and one stream
    (OPENVINO_CONFIG): its infer(array) -> array and what the report records of it."""
    import openvino as ov

    config = {"INFERENCE_NUM_THREADS": threads, **OPENVINO_CONFIG}
    compiled = ov.Core().compile_model(str(path), "CPU", config)
    request = compiled.create_infer_request()

    def infer(x):
        return request.infer([x])[0]

    return infer, {
        "runtime_version": ov.__version__,
        "device": "CPU",
        "config": {
            k: shown(compiled.get_property(k)) for k in ("INFERENCE_NUM_THREADS", *OPENVINO_CONFIG)
        },
        "input": {"shape": str(compiled.input(0).get_partial_shape())},  # ?: dynamic
    }


def shown(value) -> str:
    """An OpenVINO property as text: an element type by its short name (f32), else as printed."""
    return value.get_type_name() if hasattr(value, "get_type_name") else str(value)


RUNTIME = {  # runtime: (the file its exporter writes, the Adapter method that writes it, loader)
    "onnxruntime": ("model.onnx", "export_onnx", onnxruntime),
    "litert": ("model.tflite", "export_tflite", litert),
    "openvino": ("model.xml", "export_openvino", openvino),
}


def serve(fw, net, runtime: str, batch, family: str) -> dict | None:
    """Export `net` for `runtime`, check it on `batch` (the run's own inputs, as arrays) and make
    it what `fw` serves inference with; the record of the export, or None for runtime=native
    (or null: a mode other than inference)."""
    if runtime in (None, "native"):
        return None
    import numpy as np

    from repro.kernel import measure
    from repro.kernel.frameworks import COMPILE_MODES

    why = refusal(runtime, fw.name, family)
    if why:
        raise ValueError(why)
    if fw.device != "cpu" or fw.precision != "fp32":
        raise ValueError(
            f"runtime={runtime} serves the fp32 model on the CPU (this kernel holds its CPU "
            f"build): run with device=cpu precision=fp32, not device={fw.device} "
            f"precision={fw.precision}"
        )
    filename, method, load = RUNTIME[runtime]
    inputs = fw.to_native(batch)
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / filename
        exporter, export_s = measure.clock(getattr(fw, method), net, inputs, path)
        written = files(Path(scratch))
        (served, details), load_s = measure.clock(load, path, fw.threads)

    def infer(x):
        return served(np.ascontiguousarray(fw.to_numpy(x)))

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
        **details,
        "exporter": exporter,
        "export_s": export_s,
        "load_s": load_s,
        "files": written,
        "bytes": sum(f["bytes"] for f in written.values()),
        "kept": False,  # exported again by a rerun; the hashes say whether it came out the same
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


def settings(record: dict) -> dict[str, str]:
    """The runtime's own settings, as report rows."""
    if record["runtime"] == "onnxruntime":
        session = record["session"]
        return {
            "runtime": f"onnxruntime {record['runtime_version']} "
            f"({', '.join(record['providers'])})",
            "opsets": ", ".join(f"{d} {v}" for d, v in record["opsets"].items())
            + f"; onnx {record['onnx']}, IR {record['ir_version']}",
            "threads (intra-op, inter-op)": f"{session['intra_op_threads']}, "
            f"{session['inter_op_threads']}",
            "graph optimisation": session["graph_optimization_level"],
        }
    if record["runtime"] == "openvino":
        return {
            "runtime": f"openvino {record['runtime_version']} ({record['device']} plugin)",
            **{k.lower(): str(v) for k, v in record["config"].items()},
            "input shape": record["input"]["shape"] + " (?: dynamic)",
        }
    return {
        "runtime": f"ai-edge-litert {record['runtime_version']}, delegate {record['delegate']}",
        "threads": str(record["interpreter"]["num_threads"]),
        "input shape": str(record["input"]["shape"]) + " (-1: dynamic)",
    }


def show(record: dict | None) -> dict | None:
    """Publish the export's record (report.results keeps it in metrics.json)."""
    if record is None:
        return None
    from repro.kernel import report

    check, exporter = record["equivalence"], record["exporter"]
    versions = ", ".join(f"{k} {v}" for k, v in exporter.items() if k != "exporter")
    rows = {
        **settings(record),
        "exporter": f"{exporter['exporter']} ({versions})",
        "export time (s)": f"{record['export_s']:.2f}",
        "load time (s)": f"{record['load_s']:.2f}",
        "exported size": f"{record['bytes'] / 2**20:,.2f} MiB",
        **{f"sha256 of {n}": f"`{f['sha256']}`" for n, f in record["files"].items()},
        "max |exported − native|": f"{check['max_abs_diff']:.3g} on {check['samples']} samples "
        f"(tolerance {check['tolerance']:.3g}): the same model",
    }
    return report.publish("runtime", record, report.table(rows, ("export", "")))
