"""Resolve what the user asked for into a validated, immutable RunPlan (driver side).

Bad input stops here, before anything is created: every error is one line that names the
valid choices.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from repro.bounds import check_environment, number, read_yaml, text
from repro.driver import accuracy, kernels, sources
from repro.driver.accuracy import TRAIN_TO_ACCURACY
from repro.errors import UserError, brief, option, quoted, unknown
from repro.kernel import generation, models, runtimes
from repro.kernel.frameworks import (
    COMPILE_MODES,
    DATA_PARALLEL_COMPILE_MODES,
    FRAMEWORKS,
    parallel_batches,
)
from repro.kernel.loadgen import APPLIES, SCENARIOS
from repro.kernel.models.source import is_source, normalise
from repro.kernel.runtimes import RUNTIMES
from repro.paths import KERNELSPECS, ROOT, RUNS, WORKLOADS

if TYPE_CHECKING:
    from repro.driver.templates import Template

DEFAULT_WORKLOAD, DEFAULT_FRAMEWORK = "resnet-50", "torch"


@dataclass(frozen=True)
class Param:
    name: str
    type: type
    help: str
    default: Any = None  # None: taken from the workload spec
    choices: tuple = ()
    minimum: float | None = None
    maximum: float | None = None  # bounds a typo (steps=2000000) before it runs for days
    form: tuple[str, str] = ()  # text: an ASCII regular expression and what it says in words
    length: int = 256  # text: the most characters

    @property
    def valid(self) -> str:
        """The valid values, as help shows them: [a|b], (1..100), (>= 0) or nothing."""
        if self.choices:
            return f"[{'|'.join(self.choices)}]"
        if self.maximum is not None:
            return f"({self.minimum}..{self.maximum})"
        return f"(>= {self.minimum})" if self.minimum is not None else ""

    def parse(self, raw: str) -> Any:
        """Convert a command-line string to this parameter's type, or raise UserError."""
        if self.type is bool:
            if raw.lower() not in BOOLEANS:
                raise UserError(f"{self.name} must be true or false, got {quoted(raw)}")
            return BOOLEANS[raw.lower()]
        return self.check(raw)

    def check(self, value: Any) -> Any:
        """`value` (text, or a typed value from a spec) as this parameter's type, within its
        bounds (repro.bounds), or UserError."""
        if value is None or self.type is bool:
            return value
        if self.type is not str:
            return number(value, self.name, self.type, self.minimum, self.maximum)
        text(value, self.name, self.length, *self.form)
        if self.choices and value not in self.choices:
            choices = ", ".join(self.choices)
            raise UserError(f"{self.name}={quoted(value)} is not valid; choose one of: {choices}")
        return value


BOOLEANS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}
TASK_TEMPLATES = {  # one template per family of tasks: its cells in templates/tasks/
    "image-classification": "image-classification.ipynb",
    "sequence-classification": "language-model.ipynb",
    "causal-lm": "language-model.ipynb",
}

PARAMS = {
    p.name: p
    for p in [
        Param("batch_size", int, "samples per step", minimum=1, maximum=65536),
        Param(
            "sequence_length",
            int,
            "tokens per sample (sequence workloads only)",
            minimum=1,
            maximum=1048576,
        ),
        Param(
            "steps",
            int,
            "measured steps, each one timed and kept (the fewest: see min_time)",
            20,
            minimum=1,
            maximum=100000,  # repro.kernel.measure.MAX_STEPS
        ),
        Param(
            "min_time",
            float,
            "shortest measured time per process in seconds: measured steps go on past `steps` "
            "until they add up to it (at most 100000 steps); 0 = exactly `steps`",
            1.0,
            minimum=0,
            maximum=3600,
        ),
        Param(
            "warmup",
            int,
            "most warm-up steps; warm-up ends early once step times settle",
            50,
            minimum=0,
            maximum=10000,
        ),
        Param(
            "warmup_time",
            float,
            "most warm-up seconds (the step that crosses it ends warm-up)",
            10.0,
            minimum=0,
            maximum=86400,
        ),
        Param(
            "mode",
            str,
            "what is measured; train-to-accuracy: time to a held-out accuracy on data=PATH; "
            "generate: greedy decoding with a KV cache (causal LMs), one request per step",
            choices=("inference", "training", TRAIN_TO_ACCURACY, "generate"),
        ),
        Param(
            "prompt_length",
            int,
            "mode=generate: prompt tokens prefilled per sequence",
            128,
            minimum=1,
            maximum=1048576,
        ),
        Param(
            "new_tokens",
            int,
            "mode=generate: tokens generated per request (the first from the prefill)",
            128,
            minimum=2,
            maximum=1048576,
        ),
        Param(
            "compile",
            str,
            "how the step runs: auto is the framework's usual default "
            "(torch eager|compile, tensorflow function|xla|eager, jax jit|eager, "
            "mxnet hybridize|imperative)",
            "auto",
        ),
        Param(
            "precision",
            str,
            "set explicitly in every framework; bf16/fp16 are mixed precision "
            "with fp32 weights (fp16: inference only)",
            choices=("fp32", "tf32", "bf16", "fp16"),
        ),
        Param(
            "attention",
            str,
            "ViT, BERT, GPT: the framework's fused attention or the written-out reference "
            "(the same model); other families ignore it",
            "fused",
            choices=("fused", "explicit"),
        ),
        Param(
            "runtime",
            str,
            "inference: native (the framework), onnxruntime (the model exported to ONNX, "
            "checked against the native one, served by ONNX Runtime), litert (a Keras model "
            "converted to TFLite, served by the LiteRT interpreter) or openvino (a torch model "
            "converted by OpenVINO, served by its CPU plugin)",
            "native",
            choices=RUNTIMES,
        ),
        Param(
            "repeats",
            int,
            "processes measuring the same steps: the notebook kernel's, then fresh ones (the "
            "model rebuilt); with 2 or more fresh ones the figures and verdicts rest on theirs; "
            "0 = 4 for inference or generate on a CPU, else 1",
            0,
            minimum=0,
            maximum=100,
        ),
        Param("deterministic", bool, "deterministic algorithms in every framework", False),
        Param(
            "lr",
            float,
            "peak learning rate of AdamW's warm-up + cosine schedule (training)",
            1e-3,
            minimum=0,
            maximum=10,
        ),
        Param(
            "seed",
            int,
            "seed for Python, NumPy, the framework and the inputs",
            0,
            minimum=0,
            maximum=2**32 - 1,  # numpy's legacy seed is 32-bit
        ),
        Param(
            "threads",
            int,
            "CPU threads for the framework; 0 = every core available",
            0,
            minimum=0,
            maximum=4096,
        ),
        Param(
            "omp_wait_policy",
            str,
            "OMP_WAIT_POLICY of the run's processes: idle OpenMP threads sleep (passive) or spin "
            "(active); unset: as the environment has it (torch and MXNet use OpenMP)",
            "passive",
            choices=("passive", "active", "unset"),
        ),
        Param("device", str, "where the model runs", "auto", choices=("auto", "cpu", "gpu")),
        Param(
            "devices",
            int,
            "data-parallel devices (training), one global batch (see scaling); "
            "CPU devices share its cores, so they test correctness only",
            1,
            minimum=1,
            maximum=64,
        ),
        Param(
            "scaling",
            str,
            "with devices > 1: weak = batch_size samples on each device; strong = batch_size "
            "is the global batch, split evenly (recorded as null with one device)",
            "weak",
            choices=("weak", "strong"),
        ),
        Param(
            "price_per_hour",
            float,
            "machine price per hour for cost per 1,000 samples (and to target); 0 = not given",
            0.0,
            minimum=0,
            maximum=1e6,
        ),
        Param(
            "country",
            str,
            "ISO 3166 alpha-3 code for codecarbon's CO2 estimate",
            "USA",
            form=("[A-Za-z]{3}", "a 3-letter ISO 3166 code such as USA or FRA"),
        ),
        Param(
            "scenario",
            str,
            "an MLPerf LoadGen scenario run after repro's protocol (inference); none: only "
            "repro's protocol",
            "none",
            choices=("none", *SCENARIOS),
        ),
        Param(
            "min_duration_ms",
            int,
            "LoadGen's shortest run; short, so not an MLPerf submission (LoadGen's default, "
            "which a submission runs: 600000, 10 minutes)",
            1000,
            minimum=1,
            maximum=3_600_000,
        ),
        Param(
            "min_query_count",
            int,
            "LoadGen's fewest queries (single-stream, server)",
            64,
            minimum=1,
            maximum=10_000_000,
        ),
        Param(
            "target_qps",
            float,
            "LoadGen's expected QPS (offline) or target QPS (server); 0 = from warm calls",
            0.0,
            minimum=0,
            maximum=1e7,
        ),
        Param(
            "target_latency_ms",
            float,
            "LoadGen's expected latency (single-stream) or p99 bound (server); 0 = from warm calls",
            0.0,
            minimum=0,
            maximum=3_600_000,
        ),
        # mode=train-to-accuracy (repro.driver.accuracy): the data, the target and the caps
        Param(
            "data", str, "train-to-accuracy: an image-folder tree or a token file", "", length=4096
        ),
        Param(
            "target_accuracy",
            float,
            "held-out accuracy that ends training (train-to-accuracy)",
            0.9,
            minimum=0.01,
            maximum=1,
        ),
        Param(
            "eval_every",
            int,
            "steps between held-out evaluations (train-to-accuracy); 0 = once per epoch",
            0,
            minimum=0,
            maximum=10**7,
        ),
        Param(
            "max_steps",
            int,
            "step cap, and the learning-rate schedule's length (train-to-accuracy)",
            1000,
            minimum=1,
            maximum=10**7,
        ),
        Param(
            "max_seconds",
            float,
            "wall-time cap in seconds (train-to-accuracy)",
            600.0,
            minimum=1,
            maximum=7 * 86400,
        ),
    ]
}

# A report made before a parameter existed ran what its code did then, recorded as this value.
FORMERLY = {  # attention was written out before it was a choice; one process measured; each
    "attention": "explicit",  # device took batch_size samples; exactly `steps` were measured,
    "repeats": 1,  # after a warm-up bounded by steps alone
    "scaling": "weak",
    "min_time": 0.0,
    "warmup_time": 86400.0,
    "omp_wait_policy": "unset",  # OpenMP's own default: spin, then sleep
}
# repeats=0: 4 processes for inference on a CPU, the kernel's and 3 fresh ones, which the figures
# rest on (repro.stats.processes); 1 for training (each process compiles again) and on a GPU (each
# process would hold GPU memory while the next one runs; JAX preallocates 75%)
REPEATS = {
    "inference": 4,
    "training": 1,
    TRAIN_TO_ACCURACY: 3,
    "generate": 4,
}  # time to accuracy: its spread
MEASURED = ("inference", "training", "generate")  # the modes repro.kernel.measure's protocol times
# Parameters of one mode or one scenario, and where each applies. One rule for all of them
# (check_applies): elsewhere, a value other than the default is refused, and the parameter is
# recorded as null, so run.sh, a rerun and a comparison leave it out.
ONLY_IN = {
    "runtime": ("mode", ("inference",)),
    "prompt_length": ("mode", ("generate",)),
    "new_tokens": ("mode", ("generate",)),
    **{name: ("mode", MEASURED) for name in ("min_time", "warmup_time")},
    **{name: ("mode", (TRAIN_TO_ACCURACY,)) for name in accuracy.ONLY_HERE},
    **{name: ("scenario", scenarios) for name, scenarios in APPLIES.items()},
}


def workloads() -> dict[str, dict]:
    """Every workload spec in repro/workloads/, by name, each checked (`load_workload`)."""
    specs, files = {}, {}
    for path in sorted(WORKLOADS.glob("*.yaml")):
        spec = load_workload(path)
        if spec["name"] in files:
            raise UserError(
                f"workload {spec['name']!r} is defined twice, in {files[spec['name']]} and "
                f"{path}; rename one"
            )
        specs[spec["name"]], files[spec["name"]] = spec, path
    return specs


SPEC_KEYS = (
    "name",
    "task",
    "preset",
    "model",
    "batch_size",
    "sequence_length",
    "precision",
    "mode",
)


def load_workload(path: Path) -> dict:
    """One workload spec, or UserError naming the file and what to fix in it."""
    return check_spec(read_yaml(path, "workload file"), f"workload file {path}")


def check_spec(spec, where: str) -> dict:
    """`spec` (from a workload file, or a shared report) checked as data: its keys, the
    parameters it sets (typed and in range) and its model config (repro.kernel.models.config);
    UserError naming `where` and what to fix otherwise."""
    if not isinstance(spec, dict):
        raise UserError(f"{where} must be a mapping of keys ({', '.join(SPEC_KEYS)})")
    missing = [key for key in SPEC_KEYS if key not in spec]
    if missing:
        raise UserError(f"{where} lacks {', '.join(missing)}")
    try:
        spec = {**spec, "model": normalise(spec["model"])}  # a source: {arch, config} too
    except ValueError as error:
        raise UserError(f"{where}: model: {brief(error)}") from None
    arch = spec["model"].get("arch") if isinstance(spec["model"], dict) else None
    source = is_source(arch)
    if spec["task"] == "auto" and arch in models.SAVED:  # the task the saved model's file says
        try:
            spec["task"] = models.config(spec["model"]).task
        except (ValueError, TypeError, KeyError, AttributeError) as error:
            raise UserError(f"{where}: model: {brief(error)}") from None
    if spec["task"] not in TASK_TEMPLATES and not (source and spec["task"] == "auto"):
        raise UserError(
            f"{where}: unknown task {spec['task']!r}; choose one of: {', '.join(TASK_TEMPLATES)}"
            + (" (or auto: the model's own)" if source else "")
        )
    if source and spec["task"] != "auto":  # the model's config carries the task it runs
        config = spec["model"].get("config", {})
        if config.get("task", spec["task"]) != spec["task"]:
            raise UserError(f"{where}: task is {spec['task']}, but model's is {config['task']}")
        spec["model"] = {**spec["model"], "config": {**config, "task": spec["task"]}}
    for name, param in PARAMS.items():
        if param.default is not None or (name == "sequence_length" and spec[name] is None):
            continue  # not set by workloads; null: not a sequence workload
        if type(spec[name]) is not param.type:
            raise UserError(f"{where}: {name} must be a {param.type.__name__}")
        try:
            param.check(spec[name])
        except UserError as error:
            raise UserError(f"{where}: {error}") from None
    try:
        task = models.config(spec["model"]).task
    except (ValueError, TypeError, KeyError, AttributeError) as error:
        raise UserError(f"{where}: model: {brief(error)}") from None
    if not source and task != spec["task"]:  # a source's own task: known once resolved
        raise UserError(f"{where}: task is {spec['task']}, but its model is for {task}: set task")
    return spec


EQUIVALENCE_TEST = "tests/test_models.py::test_torch_weights_give_the_same_outputs"
KERAS_EQUIVALENCE_TEST = "tests/test_keras.py::test_one_saved_model_runs_the_same_on_three_backends"
MXNET_EQUIVALENCE_TEST = "tests/test_models.py::test_torch_weights_give_the_same_outputs_in_mxnet"


def equivalence(spec: dict) -> dict | None:
    """How sameness across frameworks is proven for this workload's architecture (None for a
    source's model, which runs in one framework)."""
    arch = spec["model"]["arch"]
    if is_source(arch):
        return None
    if arch in models.SAVED:  # one file on every backend: the same weights by construction
        return {
            "arch": arch,
            "test": KERAS_EQUIVALENCE_TEST,
            "preset": None,
            "frameworks": ["torch", "tensorflow", "jax"],
            "claim": "one saved .keras file gives the same fp32 outputs on the torch, "
            "TensorFlow and JAX backends (checked on a tiny saved model); each run of this file "
            "records its outputs on one seeded input, and `repro compare` of its runs checks them",
        }
    both = ", with fused and explicit attention alike" if models.has_attention(arch) else ""
    small = [
        n for n, s in workloads().items() if s["model"]["arch"] == arch and s["preset"] == "small"
    ]
    gluon = arch in MXNET_FAMILIES  # MXNet's Gluon model too (hybridized and not)
    return {
        "arch": arch,
        "test": EQUIVALENCE_TEST + (f" and {MXNET_EQUIVALENCE_TEST}" if gluon else ""),
        "preset": small[0] if small else None,
        "frameworks": ["torch", "tensorflow", "jax", *(["mxnet"] if gluon else [])],
        "claim": "PyTorch weights transferred into the Keras"
        + (", Flax and Gluon" if gluon else " and Flax")
        + " models give the same fp32 "
        f"outputs (|diff| <= {models.EQUIVALENCE_ATOL:g} + {models.EQUIVALENCE_RTOL:g} * "
        f"max|output|){both}, and all {'four' if gluon else 'three'} count the same parameters",
    }


def parse_assignments(items: list[str]) -> dict[str, str]:
    """`["batch_size=4", "steps=20"]` -> `{"batch_size": "4", "steps": "20"}`."""
    pairs = {}
    for item in items:
        name, sep, value = item.partition("=")
        name, value = name.strip(), value.strip()
        if not sep or not name:
            raise UserError(f"parameters are name=value, got {item!r}")
        if re.search(r",\s*\w+=", value):
            spaced = re.sub(r",\s*(?=\w+=)", " ", item)
            raise UserError(
                f"parameters are separated by spaces, not commas: {option('--params', spaced)}"
            )
        if name in pairs:
            raise UserError(
                f"{name} is given twice ({name}={pairs[name]} and {name}={value}); give it once"
            )
        pairs[name] = value
    return pairs


def has_nvidia_gpu() -> bool:
    return nvidia_gpus() > 0


def nvidia_gpus() -> int:
    """How many GPUs the NVIDIA driver sees: its /proc entries, else `nvidia-smi -L` (no CUDA)."""
    gpus = Path("/proc/driver/nvidia/gpus")
    if gpus.is_dir() and any(gpus.iterdir()):
        return len(list(gpus.iterdir()))
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return 0
    try:
        listed = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return 0
    lines = listed.stdout.splitlines() if listed.returncode == 0 else []
    return sum(line.startswith("GPU ") for line in lines)


def auto_kernel(framework: str, device: str) -> tuple[str, str]:
    """`--kernel auto`: the kernel for this machine, and why."""
    if framework in CPU_ONLY:
        return f"{framework}-cpu", f"auto: {framework} runs on the CPU only"
    if device == "cpu":
        return f"{framework}-cpu", "auto: device=cpu"
    if has_nvidia_gpu():
        return f"{framework}-cuda", "auto: nvidia-smi lists an NVIDIA GPU"
    return f"{framework}-cpu", "auto: no NVIDIA GPU seen (no nvidia-smi, or it lists none)"


def effective_model(spec: dict, sequence_length: int | None) -> dict:
    """The workload's `model` entry; a sequence workload's `sequence_length` parameter sets its
    config's input length."""
    model = spec["model"]
    if sequence_length is None:
        return model
    return {**model, "config": {**model.get("config", {}), "sequence_length": sequence_length}}


@dataclass(frozen=True)
class RunPlan:
    workload: dict  # the spec, as read from repro/workloads/<name>.yaml
    framework: str
    kernel: str  # a folder of kernelspecs/, or "unpinned"
    kernel_reason: str  # why this kernel: named, or what `auto` saw
    params: dict  # every parameter, resolved and typed
    template: Template  # the notebook to execute, as the report records it
    python: str | None = None  # the interpreter of an unpinned run
    allow_drift: bool | None = None  # None: its command has no --allow-drift (rerun, lesson)
    runs_dir: Path = RUNS
    lock: Path | None = None  # the lock to build the kernel from; None: kernelspecs/<kernel>/
    code: Path = ROOT  # the folder holding the `repro` package the kernel imports
    lesson: str | None = None  # the lesson this run executes (repro.driver.lessons)
    template_file: Path | None = None  # --template: the notebook of one's own, for run.sh

    @property
    def label(self) -> str:
        """What the run folder's name says ran."""
        what = f"lesson-{self.lesson}" if self.lesson else self.workload["name"]
        return f"{what}_{self.framework}"

    @property
    def lock_path(self) -> Path | None:
        if self.kernel == "unpinned":
            return None
        return self.lock or KERNELSPECS / self.kernel / "requirements.lock"

    def notebook_parameters(self, run_context: dict) -> dict:
        """What papermill injects into the template's parameters cell."""
        return {
            "workload": self.workload["name"],
            "framework": self.framework,
            "model": effective_model(self.workload, self.params["sequence_length"]),
            **self.params,
            "run_context": run_context,
        }


def kernels_for(framework: str) -> list[str]:
    return [name for name in kernels.available() if name.startswith(f"{framework}-")]


def check_data_parallel(framework: str, resolved: dict) -> None:
    """devices > 1: a data-parallel training step (repro.kernel.parallel), in the compile modes
    it is built for, measured by one process."""
    devices, modes = resolved["devices"], DATA_PARALLEL_COMPILE_MODES[framework]
    if resolved["mode"] != "training":
        raise UserError(
            f"devices={devices} is for training (mode=training); {resolved['mode']} uses one"
        )
    if resolved["compile"] not in modes:
        raise UserError(
            f"devices={devices} with {framework} runs compile={' or '.join(modes)}, "
            f"not {resolved['compile']!r}"
        )
    if resolved["repeats"] > 1:
        raise UserError(f"devices={devices} is measured by one process; use repeats=1")
    try:
        parallel_batches(resolved["batch_size"], devices, resolved["scaling"])
    except ValueError as error:
        raise UserError(f"{error}; give a batch_size divisible by {devices}") from None
    gpus = nvidia_gpus() if resolved["device"] in ("auto", "gpu") else 0
    if gpus and devices > gpus:
        raise UserError(f"devices={devices}, but nvidia-smi lists {gpus} GPU(s); use at most that")


CPU_ONLY = ("mxnet",)  # frameworks with a -cpu kernel only
MXNET_FAMILIES = ("resnet",)
MXNET_WHY = (
    "MXNet 1.9.1 is the last release (the project is retired); repro has one native Gluon model, "
    "ResNet, checked against torch's weights"
)


def check_mxnet(workload: str, spec: dict, resolved: dict) -> None:
    """What repro's MXNet does: the ResNet family, in fp32, on the CPU, one device (served
    natively: check_runtime); anything else is refused here, before any work."""
    family = spec["model"]["arch"]
    if family not in MXNET_FAMILIES:
        raise UserError(
            f"mxnet runs the resnet family only in repro: {MXNET_WHY}; {workload} is a {family}"
        )
    if resolved["device"] == "gpu":
        raise UserError(
            "mxnet runs on the CPU only in repro (its one kernel, mxnet-cpu, holds MXNet's CPU "
            "build): use device=cpu or device=auto"
        )
    if resolved["precision"] != "fp32":
        raise UserError(
            f"mxnet runs fp32 only in repro, not precision={resolved['precision']}: MXNet's "
            "mixed precision (its contrib AMP) is not part of repro's MXNet adapter; use "
            "precision=fp32"
        )
    if resolved["devices"] > 1:
        raise UserError(
            "mxnet runs on one device only in repro (no data parallelism through its kvstore): "
            "use devices=1"
        )
    if resolved["mode"] not in ("inference", "training"):
        raise UserError(
            f"mode={resolved['mode']} is not run with mxnet in repro (only inference and "
            "training are checked there): use mode=inference or mode=training"
        )


def check_applies(resolved: dict) -> None:
    """ONLY_IN's rule: a parameter set away from its default where it does not apply is
    refused; where it does not apply it is recorded as null. (A default given by hand, as a
    rerun of an older report gives every recorded value, is accepted, and so is FORMERLY's
    value, which a rerun gives for a parameter its report predates.)"""
    for name, (key, where) in ONLY_IN.items():
        if resolved[key] in where:
            continue
        if resolved[name] not in (PARAMS[name].default, FORMERLY.get(name)):
            raise UserError(
                f"{name} applies to {key}={'|'.join(where)} only, not {key}={resolved[key]}"
            )
        resolved[name] = None


def check_runtime(framework: str, family: str, resolved: dict) -> None:
    """An exported runtime serves the fp32 model on the CPU, exported from a framework (and
    family) that repro has an exporter for; the framework's compile mode does not apply to it."""
    runtime = resolved["runtime"]
    if runtime in (None, "native"):
        return
    why = runtimes.refusal(runtime, framework, family)
    if why:
        raise UserError(f"{why}; use runtime=native")
    gpu = resolved["device"] == "gpu" or (resolved["device"] == "auto" and has_nvidia_gpu())
    if resolved["precision"] != "fp32" or gpu:
        raise UserError(
            f"runtime={runtime} serves the fp32 model on the CPU: use precision=fp32 device=cpu"
        )
    if resolved["compile"] != COMPILE_MODES[framework][0]:
        raise UserError(
            f"compile={resolved['compile']} compiles the native model, which runtime={runtime} "
            f"does not run: leave compile at {COMPILE_MODES[framework][0]}"
        )


LOADGEN_SECONDS = 3600  # the longest LoadGen run a plan may ask for (min_duration_ms's maximum)


def check_scenario(resolved: dict) -> None:
    """A LoadGen scenario drives inference, for at most LOADGEN_SECONDS: the server scenario's
    queries arrive at target_qps and single-stream's one per target_latency_ms (where given),
    and LoadGen runs until min_query_count have (`server target_qps=0.0001` waits hours)."""
    scenario = resolved["scenario"]
    if scenario != "none" and resolved["mode"] != "inference":
        raise UserError(
            f"scenario={scenario} drives inference, not {resolved['mode']}; use mode=inference or "
            "scenario=none"
        )
    qps, latency_ms = resolved["target_qps"], resolved["target_latency_ms"]
    given = "target_qps" if qps else "target_latency_ms" if latency_ms else None
    if scenario not in ("server", "single-stream") or given is None:
        return  # offline: one query of min_duration_ms's work; otherwise: from warm calls
    count = resolved["min_query_count"]
    seconds = max(
        resolved["min_duration_ms"] / 1e3, count / qps if qps else count * latency_ms / 1e3
    )
    if seconds > LOADGEN_SECONDS:
        fix = "raise target_qps" if qps else "lower target_latency_ms"
        raise UserError(
            f"scenario={scenario} runs until min_query_count={count:,} queries have come at "
            f"{given}={resolved[given]:g}: {seconds:,.0f} s, over the {LOADGEN_SECONDS:,} s a "
            f"LoadGen run may take; {fix} or lower min_query_count"
        )


def check_generation(workload: str, spec: dict, resolved: dict, given: dict) -> None:
    """mode=generate: a causal LM whose context holds the prompt and the new tokens; the prompt
    is the input sequence (sequence_length is set to prompt_length)."""
    if resolved["mode"] != "generate":
        return
    if spec["model"]["arch"] not in generation.ARCHS:
        causal = [n for n, s in workloads().items() if s["model"]["arch"] in generation.ARCHS]
        raise UserError(
            f"mode=generate is for causal language models ({', '.join(causal)}), not {workload}"
        )
    prompt, new = resolved["prompt_length"], resolved["new_tokens"]
    if "sequence_length" in given and resolved["sequence_length"] != prompt:
        raise UserError(
            "with mode=generate the input is the prompt: give prompt_length, not sequence_length"
        )
    context = models.config(spec["model"]).context
    if prompt + new > context:
        raise UserError(
            f"prompt_length + new_tokens = {prompt} + {new} exceed {workload}'s context of "
            f"{context} positions; lower prompt_length or new_tokens"
        )
    resolved["sequence_length"] = prompt


def resolve(
    workload: str = DEFAULT_WORKLOAD,
    framework: str = DEFAULT_FRAMEWORK,
    params: dict[str, str] | None = None,
    *,
    kernel: str = "auto",
    kernel_reason: str = "named with --kernel",
    unpinned_python: str | None = None,
    allow_drift: bool | None = None,
    template: str | None = None,
    runs_dir: str | Path | None = None,
    spec: dict | None = None,
    code: Path | None = None,
) -> RunPlan:
    """Validate the request and return the plan, or raise UserError naming the valid choices.

    `workload` is a name in repro/workloads/ or the path of a workload file (.yaml); `spec` is
    a workload spec to use instead (a rerun's, or `--model`'s); `code` the library the kernel
    runs where it is not this checkout's (a rerun's)."""
    check_environment()  # a bad REPRO_* variable stops the run before its folder exists
    if spec is None and workload.endswith((".yaml", ".yml")):  # the user's own workload file
        spec = load_workload(Path(workload))
        workload = spec["name"]
    specs = workloads() if spec is None else {workload: spec}
    wrong = [  # both named in one line: `repro run resnet50 -f pytorch`
        unknown("workload", workload, list(specs)) if workload not in specs else "",
        unknown("framework", framework, FRAMEWORKS) if framework not in FRAMEWORKS else "",
        *[unknown("parameter", n, list(PARAMS)) for n in sorted(params or {}) if n not in PARAMS][
            :1
        ],
    ]
    if any(wrong):
        raise UserError("; ".join(w for w in wrong if w))
    try:  # a saved model's file: its absolute path, its sha256 pinned (or checked: a rerun)
        spec = {**specs[workload], "model": models.located(specs[workload]["model"])}
    except ValueError as error:
        raise UserError(f"{workload}: model: {brief(error)}") from None
    resolved = {}
    for name, param in PARAMS.items():
        if params and name in params:
            resolved[name] = param.parse(params[name])
        else:
            resolved[name] = param.check(spec[name] if param.default is None else param.default)
    if resolved["repeats"] == 0:  # recorded as a number too
        gpu = resolved["device"] == "gpu" or (resolved["device"] == "auto" and has_nvidia_gpu())
        gpu = gpu and framework not in CPU_ONLY  # device=auto runs mxnet on the CPU
        resolved["repeats"] = 1 if gpu else REPEATS[resolved["mode"]]
    if resolved["threads"] == 0:  # recorded as a number, so a rerun uses the same count
        resolved["threads"] = len(os.sched_getaffinity(0))
    modes = COMPILE_MODES[framework]
    if resolved["compile"] == "auto":
        resolved["compile"] = modes[0]
    elif resolved["compile"] not in modes:
        raise UserError(
            f"compile={resolved['compile']!r} is not valid for {framework}; choose one of: "
            f"auto, {', '.join(modes)}"
        )
    if resolved["mode"] != "inference" and resolved["precision"] == "fp16":
        raise UserError(
            "precision=fp16 is for inference only (training would need loss "
            "scaling); choose one of: fp32, tf32, bf16"
        )
    if framework == "mxnet":
        check_mxnet(workload, spec, resolved)
    check_applies(resolved)  # parameters of another mode or scenario: refused, or null
    accuracy.check(spec, resolved)  # data=PATH and the rest of train-to-accuracy
    if resolved["devices"] > 1:
        check_data_parallel(framework, resolved)
    else:  # one device is both kinds of scaling: the twin of a weak and of a strong run alike
        resolved["scaling"] = None
    check_scenario(resolved)
    check_runtime(framework, spec["model"]["arch"], resolved)
    check_generation(workload, spec, resolved, params or {})
    resolved["country"] = resolved["country"].upper()  # ASCII letters (its Param's form)
    if resolved["device"] == "gpu" and not has_nvidia_gpu():
        raise UserError(
            "device=gpu but this machine has no NVIDIA GPU (nvidia-smi found none); "
            "use device=auto or device=cpu"
        )

    if unpinned_python:
        kernel_name, kernel_reason = "unpinned", "--unpinned: an existing interpreter"
    else:
        choices = kernels_for(framework)
        kernel_name, kernel_reason = (
            auto_kernel(framework, resolved["device"])
            if kernel == "auto"
            else (kernel, kernel_reason)
        )
        if kernel_name not in choices:
            raise UserError(
                f"unknown kernel {kernel_name!r} for {framework}; "
                f"choose one of: {', '.join(choices)}"
            )
    source = is_source(spec["model"]["arch"])  # its sequence_length: known once resolved
    if spec["sequence_length"] is None and params and "sequence_length" in params and not source:
        raise UserError(f"sequence_length applies to sequence workloads only, not {workload!r}")
    try:
        models.config(effective_model(spec, resolved["sequence_length"]))
    except ValueError as error:  # e.g. a sequence_length beyond the model's positions
        raise UserError(f"{workload} cannot run with these parameters: {brief(error)}") from None
    if source:  # the user's model: checked here, then resolved in the kernel's interpreter
        sources.check(spec, framework, resolved, carried=code is not None)
        if code is None and spec["model"]["arch"] == "module":
            code = sources.carry(spec)  # the user's file travels with the code
        python = unpinned_python or str(kernels.ensure(kernel_name).python)
        model = effective_model(spec, resolved["sequence_length"])
        spec = sources.resolve({**spec, "model": model}, framework, python, code or ROOT)
        resolved["sequence_length"] = spec["sequence_length"]
    from repro.driver import templates  # nbformat: only once the rest is valid
    from repro.driver.integrity import read_notebook

    if template:
        if not Path(template).is_file():
            raise UserError(f"template not found: {template}")
        notebook = read_notebook(template, "template")  # not a notebook: said now, not later
        if not any(cell.cell_type == "code" and cell.source.strip() for cell in notebook.cells):
            raise UserError(f"template {template} has no code to run: add the cells to measure")
        to_run = templates.from_file(Path(template))
    elif resolved["mode"] == TRAIN_TO_ACCURACY:  # a notebook of its own: training, not steps
        to_run = templates.from_file(accuracy.TEMPLATE)
    else:
        to_run = templates.assembled(TASK_TEMPLATES[spec["task"]])
    return RunPlan(
        workload=spec,
        framework=framework,
        kernel=kernel_name,
        kernel_reason=kernel_reason,
        params=resolved,
        template=to_run,
        python=unpinned_python,
        allow_drift=allow_drift,
        runs_dir=Path(runs_dir) if runs_dir else RUNS,
        template_file=Path(template).resolve() if template else None,
        code=code or ROOT,
    )
