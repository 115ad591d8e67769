"""The records repro writes and reads back: a run's metrics.json and environment.json, the rerun
record a report carries, and a comparison's comparison.json. Each is one frozen class whose
`to_json` is the file on disk and whose `from_json` reads one back as untrusted data: it checks
the schema string first (a file of another major version, or of none, is refused in one line),
then the fields readers use, so a missing or mistyped key is named at the boundary instead of
emptying a table cell later; a number is finite. `load` reads a finished run folder for a
comparison, `expand` finds the finished runs among paths given on the command line, and `gather`
loads them, each run once, passing over (with a line) what cannot be read."""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, ClassVar

import numpy as np

from repro import stats
from repro.errors import UserError, brief

METRICS_SCHEMA = "repro.metrics/1"
ENVIRONMENT_SCHEMA = "repro.environment/1"
RERUN_SCHEMA = "repro.rerun/1"
COMPARISON_SCHEMA = "repro.comparison/1"
NUMBER = (int, float)
NONE = type(None)
EMPTY: Mapping = MappingProxyType({})  # what a reader gets for a section not recorded


class RecordError(UserError):
    """A record from another version of repro, or without what it must hold (exit 2)."""


def check_schema(data: Any, source: str, schema: str) -> dict:
    """`data` as a JSON object of `schema`'s kind and major version, or RecordError naming
    `source`, what it holds and the version this repro reads."""
    kind, major = schema.split("/")
    if not isinstance(data, dict):
        raise RecordError(f"{source} is not a {kind} record: it holds {type(data).__name__}")
    found = data.get("schema")
    if not isinstance(found, str) or found.split("/")[0] != kind:
        holds = "no schema" if found is None else f"schema {str(found)[:40]!r}"
        raise RecordError(f"{source} has {holds}: it is not a {kind} record this repro reads")
    if found.partition("/")[2].split(".")[0] != major:
        raise RecordError(
            f"{source} is a {found} record, from another version of repro; this repro reads "
            f"{schema}: read it with the repro that wrote it"
        )
    return data


def typed(data: dict, key: str, kind: type | tuple, source: str, absent: Any = ...) -> Any:
    """`data[key]` if it is of `kind` (bool is no number), else RecordError naming the key;
    `absent` (when given) stands in for a key an older file lacks."""
    if key not in data:
        if absent is not ...:
            return absent
        raise RecordError(f"{source} has no {key!r}")
    value = data[key]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        names = " or ".join("null" if k is NONE else k.__name__ for k in kinds)
        raise RecordError(f"{source}: {key!r} is {type(value).__name__}, not {names}")
    return finite(value, key, source)


def finite(value: Any, key: str, source: str) -> Any:
    """`value`, or RecordError where it is or holds NaN or infinity (JSON has neither; Python's
    json module reads both): a number in a record is a measurement, never a placeholder."""
    many = isinstance(value, list)
    bad = [v for v in (value if many else [value]) if isinstance(v, float) and not math.isfinite(v)]
    if bad:
        raise RecordError(f"{source}: {key!r} {'holds' if many else 'is'} {bad[0]}, not a number")
    return value


def figures(data: dict, key: str, source: str) -> dict:
    """`data[key]`, a JSON object whose numbers (and lists of numbers) are finite."""
    found = typed(data, key, dict, source)
    for name, value in found.items():
        finite(value, name, f"{source} {key}")
    return found


def section(data: Any, key: str) -> Mapping:
    """`data[key]` where it is a JSON object, else an empty one (not recorded, or null)."""
    value = data.get(key) if isinstance(data, Mapping) else None
    return value if isinstance(value, Mapping) else EMPTY


def positive(values: Any) -> bool:
    return isinstance(values, list) and all(
        isinstance(v, NUMBER) and not isinstance(v, bool) and 0 < v < math.inf for v in values
    )


def nonempty(values: Any) -> bool:
    """At least one value, each positive: a process's step times."""
    return positive(values) and len(values) > 0


def read(path: Path) -> Any:
    """A JSON file's content, or RecordError saying why it cannot be read."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise RecordError(f"{path} cannot be read: {brief(error)}") from None


UNMEASURED = ("seed", "country", "price_per_hour")  # params that set no measured work
SECTIONS = (
    "processes",
    "compute",
    "memory",
    "energy",
    "machine",
    "loss",
    "generation",
    "lesson",
    "runtime",
)


@dataclass(frozen=True)
class Scenario:
    """An MLPerf LoadGen scenario's result (repro.kernel.loadgen.run: LoadGen's summary parsed,
    with the settings it ran): summary.loadgen in metrics.json, absent before `scenario`."""

    scenario: str  # single-stream, offline or server
    result: str  # VALID or INVALID, as LoadGen says
    failed: tuple[str, ...]  # the constraints LoadGen found not satisfied
    metric: Mapping  # the scenario's own figure: name, value (90th percentile, samples/s)
    samples_per_s: float | None
    samples_per_query: int | None  # LoadGen's test parameter (offline: its one query's size)
    latency_ns: Mapping  # min, max, mean, p50, p90, p95, p97, p99, p99.9
    settings: Mapping  # min_duration_ms, min_query_count, target_qps, target_latency_ms, ...
    accuracy: Mapping | None  # the accuracy run's check (samples, logged, agree, top1, passed)

    @classmethod
    def from_json(cls, data: Any, source: str) -> Scenario:
        if not isinstance(data, dict):
            raise RecordError(f"{source} is not a LoadGen result: {type(data).__name__}")
        metric = typed(data, "metric", dict, source)
        typed(metric, "name", str, f"{source} metric")
        typed(metric, "value", NUMBER, f"{source} metric")
        failed = typed(data, "failed", list, source)
        latency = typed(data, "latency_ns", dict, source)
        if not all(isinstance(v, NUMBER) for v in latency.values()):
            raise RecordError(f"{source}: 'latency_ns' holds a value that is not a number")
        return cls(
            scenario=typed(data, "scenario", str, source),
            result=typed(data, "result", str, source),
            failed=tuple(str(f) for f in failed),
            metric=metric,
            samples_per_s=typed(data, "samples_per_s", (*NUMBER, NONE), source, None),
            samples_per_query=typed(
                section(data, "parameters"), "samples_per_query", (int, NONE), source, None
            ),
            latency_ns=latency,
            settings=typed(data, "settings", dict, source),
            accuracy=accuracy_check(data, source),
        )

    @property
    def valid(self) -> bool:
        return self.result == "VALID"

    @property
    def percentile(self) -> str | None:
        """The latency percentile LoadGen's metric is (single-stream's: p90), as the keys of
        `latency_ns` name it; None where its metric is a rate (samples per second)."""
        found = re.fullmatch(r"(\d+(?:\.\d+)?)th percentile latency \(ns\)", self.metric["name"])
        return f"p{float(found.group(1)):g}" if found else None


def accuracy_check(data: dict, source: str) -> Mapping | None:
    """A LoadGen accuracy run's check, None for a report from before it was run."""
    found = typed(data, "accuracy", (dict, NONE), source, None)
    if found is not None:
        for key in ("samples", "logged", "agree"):
            typed(found, key, int, f"{source} accuracy")
        typed(found, "passed", bool, f"{source} accuracy")
        number(found, "top1", f"{source} accuracy")
    return found


def number(data: Mapping, key: str, source: str, absent: Any = ...) -> float | None:
    """`data[key]`, a number or null (`absent` for a key an older file lacks)."""
    return typed(data, key, (*NUMBER, NONE), source, absent)


def points(curve: Any, source: str) -> tuple[Mapping, ...]:
    """An accuracy curve: evaluations with numeric seconds and accuracy, at least one."""
    if not isinstance(curve, list) or not curve:
        raise RecordError(f"{source} is not a list of evaluations")
    for point in curve:
        if not isinstance(point, dict):
            raise RecordError(f"{source} holds {type(point).__name__}, not an evaluation")
        typed(point, "seconds", NUMBER, source)
        typed(point, "accuracy", NUMBER, source)
    return tuple(curve)


@dataclass(frozen=True)
class TimeToAccuracy:
    """mode=train-to-accuracy's result (repro.kernel.accuracy.results): summary.time_to_accuracy
    in metrics.json, null in the other modes. The figures of one process are the kernel's (the
    first); `times_s` to `median_steps` are over the processes that reached the target."""

    target: float  # held-out accuracy
    reached: bool  # by the kernel's process
    stopped_by: str | None  # target, max_steps or max_seconds
    time_to_target_s: float | None
    wall_s: float  # to the target, or to the cap
    steps: int
    best_accuracy: float
    cost: float | None  # price_per_hour x wall_s (None: no price given)
    price_per_hour: float | None
    energy_kwh: float | None  # codecarbon's, over the same window
    energy_status: str | None
    gpu_joules: float | None
    data_sha256: str | None  # the data's own hash (repro.kernel.accuracy.show_data)
    processes: int
    times_s: tuple[float, ...]
    median_s: float | None
    min_s: float | None
    max_s: float | None
    cv: float | None  # None with fewer than two processes that reached it
    median_steps: float | None
    stopped: tuple[str | None, ...]  # each process's stopped_by; the kernel's alone before them
    curves: tuple[tuple[Mapping, ...], ...]  # each process's; the kernel's alone before them

    @classmethod
    def from_json(cls, data: Any, source: str) -> TimeToAccuracy:
        if not isinstance(data, dict):
            raise RecordError(f"{source} is not a time to accuracy: {type(data).__name__}")
        spread = typed(data, "processes", dict, source)
        where = f"{source} processes"
        times = typed(spread, "times_s", list, where)
        if not positive(times):
            raise RecordError(f"{where}: 'times_s' is not a list of positive numbers")
        curve = typed(data, "curve", list, source)
        points(curve, f"{source} curve")
        stopped_by = typed(data, "stopped_by", (str, NONE), source, None)
        stopped = typed(spread, "stopped_by", list, where, [stopped_by])
        curves = typed(spread, "curves", list, where, [curve])
        return cls(
            target=typed(data, "target", NUMBER, source),
            reached=typed(data, "reached", bool, source),
            stopped_by=stopped_by,
            time_to_target_s=number(data, "time_to_target_s", source),
            wall_s=typed(data, "wall_s", NUMBER, source),
            steps=typed(data, "steps", int, source),
            best_accuracy=typed(data, "best_accuracy", NUMBER, source),
            cost=number(data, "cost", source, None),
            price_per_hour=number(data, "price_per_hour", source, None),
            energy_kwh=number(data, "energy_kwh", source, None),
            energy_status=typed(data, "energy_status", (str, NONE), source, None),
            gpu_joules=number(data, "gpu_joules", source, None),
            data_sha256=typed(section(data, "data"), "sha256", (str, NONE), source, None),
            processes=typed(spread, "n", int, where),
            times_s=tuple(times),
            **{k: number(spread, k, where, None) for k in ("median_s", "min_s", "max_s", "cv")},
            median_steps=number(spread, "median_steps", where, None),
            stopped=tuple(str(s) if s is not None else None for s in stopped),
            curves=tuple(points(c, f"{where} curves") for c in curves),
        )

    @property
    def reached_by(self) -> int:
        """How many processes reached the target."""
        return len(self.times_s)

    @property
    def caps(self) -> tuple[str, ...]:
        """What stopped the processes that did not reach the target (max_steps, max_seconds);
        for a record from before each process's was kept, the kernel's only."""
        return tuple(s for s in self.stopped if s and s != "target")


@dataclass(frozen=True)
class Generation:
    """mode=generate's figures (repro.kernel.generation.summarize): summary.generation in
    metrics.json, null in the other modes. A step is one request: the batch's whole greedy
    generation (prefill, then every decode step), so its step time is the end-to-end time."""

    prompt_length: int
    new_tokens: int
    batch_size: int
    requests: int  # the measured ones (the kernel's process)
    ttft_ms: Mapping  # n, mean, p50, p90, p99: over the requests
    tpot_ms: Mapping  # the same, over every decoded token
    e2e_ms: Mapping  # the same, over the requests (their step times)
    tokens_per_s: float  # every output token of the batch, over the requests' whole time

    @classmethod
    def from_json(cls, data: Any, source: str) -> Generation:
        if not isinstance(data, dict):
            raise RecordError(f"{source} is not a generation's figures: {type(data).__name__}")
        latencies = {}
        for key in ("ttft_ms", "tpot_ms", "e2e_ms"):
            latencies[key] = typed(data, key, dict, source)
            for q in ("p50", "p90", "p99"):
                typed(latencies[key], q, NUMBER, f"{source} {key}")
        return cls(
            **{k: typed(data, k, int, source) for k in GENERATED},
            **latencies,
            tokens_per_s=typed(data, "tokens_per_s", NUMBER, source),
        )


GENERATED = ("prompt_length", "new_tokens", "batch_size", "requests")


@dataclass(frozen=True)
class Summary:
    """The step-time summary repro's templates publish (repro.kernel.report.results): the
    sections readers use, each a JSON object ({} where not recorded), with named accessors."""

    latency_ms: Mapping  # median, median_ci95, p90, p95, p99, mean, std, cv, min, max, n
    throughput: Mapping  # samples_per_s, ci95; tokens_per_s, tokens_ci95 for sequences
    processes: Mapping  # repro.stats.spread: n, centre_ms, centre_ci95_ms, samples_per_s, ...
    compute: Mapping  # achieved_tflops, mfu, peak_source, ...
    memory: Mapping  # host_peak_rss_bytes, device_peak_bytes
    energy: Mapping  # gpu {joules_per_1000_samples, status}, codecarbon {kwh_per_1000_samples}
    machine: Mapping  # repro.kernel.machine.Check's result: busy, reference, warnings
    loss: Mapping  # first, last, curve (training only)
    generation: Mapping  # mode=generate: ttft_ms, tpot_ms, e2e_ms (n, mean, p50, p90, p99), ...
    lesson: Mapping  # a lesson's claims (repro.kernel.lesson.summary): name, claims, held
    runtime: Mapping  # runtime=onnxruntime: the export (repro.kernel.runtimes.serve)
    warnings: tuple[str, ...]
    warmup_steps: int | None
    warmup_steady: bool | None
    first_call_s: float | None
    loadgen: Scenario | None = None  # a LoadGen scenario's result (scenario=...)
    time_to_accuracy: TimeToAccuracy | None = None  # mode=train-to-accuracy's result
    generated: Generation | None = None  # mode=generate's figures, checked (`generation`)

    @classmethod
    def from_json(cls, data: Any, source: str) -> Summary:
        if not isinstance(data, dict):
            raise RecordError(f"{source} is not a step-time summary: {type(data).__name__}")
        latency = figures(data, "latency_ms", source)
        throughput = figures(data, "throughput", source)
        typed(latency, "median", NUMBER, f"{source} latency_ms")
        typed(throughput, "samples_per_s", NUMBER, f"{source} throughput")
        for key in SECTIONS:  # null where not measured; processes absent before repeats
            typed(data, key, (dict, NONE), source, None)
        warnings = typed(data, "warnings", (list, NONE), source, None) or []
        return cls(
            latency_ms=latency,
            throughput=throughput,
            **{k: section(data, k) for k in SECTIONS},
            warnings=tuple(str(w) for w in warnings),
            warmup_steps=typed(data, "warmup_steps", (int, NONE), source, None),
            warmup_steady=typed(data, "warmup_steady", (bool, NONE), source, None),
            first_call_s=typed(data, "first_call_s", (*NUMBER, NONE), source, None),
            loadgen=None
            if data.get("loadgen") is None
            else Scenario.from_json(data["loadgen"], f"{source} loadgen"),
            time_to_accuracy=None
            if data.get("time_to_accuracy") is None
            else TimeToAccuracy.from_json(data["time_to_accuracy"], f"{source} time_to_accuracy"),
            generated=None
            if data.get("generation") is None
            else Generation.from_json(data["generation"], f"{source} generation"),
        )

    @property
    def kind(self) -> str:
        """What the run's own headline is: a time to accuracy, a generation's figures, a LoadGen
        scenario's result, or (every other run) its step times."""
        if self.time_to_accuracy:
            return "time to accuracy"
        if self.generated:
            return "generation"
        return "loadgen" if self.loadgen else "step time"

    @property
    def process_count(self) -> int:
        return self.processes.get("n", 1)

    @property
    def mfu(self) -> float | None:
        return self.compute.get("mfu")

    @property
    def gpu_joules_per_1000_samples(self) -> float | None:
        return section(self.energy, "gpu").get("joules_per_1000_samples")

    @property
    def kwh_per_1000_samples(self) -> float | None:
        return section(self.energy, "codecarbon").get("kwh_per_1000_samples")

    @property
    def energy_method(self) -> str | None:
        gpu, codecarbon = section(self.energy, "gpu"), section(self.energy, "codecarbon")
        return codecarbon.get("status") or gpu.get("status")

    @property
    def busy(self) -> bool:
        """Whether the machine was busy while the run measured (a verdict's first question)."""
        return bool(self.machine.get("busy"))

    @property
    def reference_before(self) -> Mapping:
        """The machine reference's timings before the measured phase ({} in an older report)."""
        return section(section(self.machine, "reference"), "before")


OPTIONAL = {  # metrics.json's fields that may be null, or absent from a file older than them
    "error": (str, NONE),
    "kernel_reason": (str, NONE),
    "pinned": (bool, NONE),
    "lock_ok": (bool, NONE),
    "model": (dict, NONE),
    "samples": (dict, NONE),
    "started_at": (str, NONE),
    "finished_at": (str, NONE),
    "duration_s": (*NUMBER, NONE),
    "rerun": (dict, NONE),
}


@dataclass(frozen=True)
class Metrics:
    """metrics.json (repro.metrics/1): how a run ended, what it ran, and what it measured."""

    schema: ClassVar[str] = METRICS_SCHEMA
    status: str  # ok, failed or interrupted
    error: str | None  # why it stopped
    run_id: str
    workload: str
    framework: str
    kernel: str
    kernel_reason: str | None
    pinned: bool | None
    lock_ok: bool | None
    params: Mapping[str, Any]  # every parameter, seeds included (repro.driver.plan)
    model: Mapping | None  # what repro.kernel.report.model_summary published
    summary: Any  # what the template published: repro's is a Summary (`step_summary`)
    samples: Mapping | None  # batch_size, first_call_s, warmup_s, step_s, processes
    started_at: str | None
    finished_at: str | None
    duration_s: float | None
    rerun: Mapping | None  # a rerun's verdict (repro.kernel.verdict.show)

    def to_json(self) -> dict:
        return {"schema": self.schema, **dataclasses.asdict(self)}

    @classmethod
    def from_json(cls, data: Any, source: str) -> Metrics:
        data = check_schema(data, source, cls.schema)
        values = {
            k: typed(data, k, str, source)
            for k in ("status", "run_id", "workload", "framework", "kernel")
        }
        values["params"] = typed(data, "params", dict, source)
        values |= {k: typed(data, k, kind, source, None) for k, kind in OPTIONAL.items()}
        metrics = cls(summary=data.get("summary"), **values)
        if metrics.status == "ok":
            metrics.check_samples(source)
        if metrics.rerun is not None:
            typed(metrics.rerun, "verdict", str, f"{source} rerun")
        return metrics

    def check_samples(self, source: str) -> None:
        """What an ok run must hold: its measured step times, positive numbers."""
        if self.samples is None:
            raise RecordError(f"{source} is an ok run without samples")
        if typed(self.samples, "batch_size", int, f"{source} samples") < 1:
            raise RecordError(f"{source} has a batch_size below 1 (samples.batch_size)")
        if not nonempty(typed(self.samples, "step_s", list, f"{source} samples")):
            raise RecordError(f"{source} has no valid step times (samples.step_s)")
        each = typed(self.samples, "processes", (list, NONE), f"{source} samples", None) or []
        if not all(isinstance(p, dict) and nonempty(p.get("step_s")) for p in each):
            raise RecordError(f"{source} has a process without valid step times")

    @functools.cached_property  # read by every view; a one-process CI is a 2,000-fold bootstrap
    def headline(self) -> stats.Headline | None:
        """The run's one figure (repro.stats.headline), or None where nothing was measured."""
        return stats.headline(dict(self.samples)) if self.status == "ok" and self.samples else None

    @property
    def step_summary(self) -> Summary | None:
        """repro's step-time summary, or None (not measured, or a template of one's own
        published something else)."""
        try:
            return Summary.from_json(self.summary, "summary")
        except RecordError:
            return None

    @property
    def step_s(self) -> np.ndarray:
        """Every measured step of every process, pooled (the distribution the percentiles
        describe; the headline is the processes' centre)."""
        if not self.samples or not self.samples.get("step_s"):
            return np.asarray([], dtype=float)
        return stats.pooled(self.samples)

    @property
    def verdict(self) -> str | None:
        """A rerun's verdict in words, or None for a run that reran nothing."""
        return self.rerun["verdict"] if self.rerun else None

    @property
    def model_config(self) -> Mapping | None:
        return self.model.get("config") if self.model else None


@dataclass(frozen=True)
class Environment:
    """environment.json (repro.environment/1): the machine, software and settings a run had,
    captured in its kernel (repro.kernel.capture, repro.kernel.report.environment)."""

    schema: ClassVar[str] = ENVIRONMENT_SCHEMA
    captured_at: str
    system: Mapping  # os_pretty_name, platform, kernel, hostname, python {version, ...}
    cpu: Mapping  # model, logical_cores, physical_cores, affinity, governor, lscpu
    memory: Mapping  # total_bytes, available_bytes
    gpu: Mapping  # present, reason, nvidia_smi {query: [...]}, nvml {driver_version, ...}
    container: Mapping
    env_vars: Mapping[str, str]  # the result-changing variables that were set
    packages: tuple[str, ...]  # name==version, sorted
    lscpu_text: str | None
    framework: Mapping = field(default_factory=dict)  # name, version, cuda, ... (the kernel's)
    settings: Mapping = field(default_factory=dict)  # the framework's process settings
    run: Mapping = field(default_factory=dict)  # the run context: run_id, kernel, lock, git...

    def to_json(self) -> dict:
        data = {"schema": self.schema, **dataclasses.asdict(self)}
        data["packages"] = list(self.packages)
        return data

    @classmethod
    def from_json(cls, data: Any, source: str) -> Environment:
        data = check_schema(data, source, cls.schema)
        values = {
            k: typed(data, k, dict, source)
            for k in ("system", "cpu", "memory", "gpu", "container", "env_vars")
        }
        values |= {k: typed(data, k, dict, source, {}) for k in ("framework", "settings", "run")}
        packages = typed(data, "packages", list, source)
        if not all(isinstance(p, str) for p in packages):
            raise RecordError(f"{source}: 'packages' is not a list of names")
        return cls(
            captured_at=typed(data, "captured_at", str, source),
            packages=tuple(packages),
            lscpu_text=typed(data, "lscpu_text", (str, NONE), source, None),
            **values,
        )

    @property
    def gpu_names(self) -> list[str]:
        return [str(g.get("name")) for g in self.gpu_query]

    @property
    def gpu_query(self) -> list[Mapping]:
        query = section(self.gpu, "nvidia_smi").get("query")
        return [g for g in query if isinstance(g, Mapping)] if isinstance(query, list) else []

    @property
    def driver_version(self) -> str | None:
        return section(self.gpu, "nvml").get("driver_version")

    @property
    def lock_sha256(self) -> str | None:
        return section(self.run, "lock").get("lock_sha256")

    def facts(self) -> dict[str, dict]:
        """What a run ran on and with, grouped as a rerun verdict reports it: every fact of its
        context the records hold (the CPU affinity, as usable cores and as the cores used)."""
        run, affinity = self.run, self.cpu.get("affinity")
        return {
            "hardware": {
                "host": self.system.get("hostname"),
                "CPU": self.cpu.get("model"),
                "logical cores": self.cpu.get("logical_cores"),
                "physical cores": self.cpu.get("physical_cores"),
                "usable cores": len(affinity) if isinstance(affinity, list) else None,
                "CPU governor": self.cpu.get("governor"),
                "memory (GiB)": round((self.memory.get("total_bytes") or 0) / 2**30, 1),
                "GPU": self.gpu_names or None,
            },
            "driver": {
                "NVIDIA driver": self.driver_version,
                "CUDA (framework)": self.framework.get("cuda"),
                "OS kernel": self.system.get("kernel"),
                "OS": self.system.get("os_pretty_name"),
                "container image": self.container.get("image"),
            },
            "packages": dict(p.split("==", 1) for p in self.packages if "==" in p),
            "code": {
                "repro library sha256": section(run, "code").get("library_sha256"),
                "template sha256": section(run, "template").get("sha256"),
                "lock sha256": self.lock_sha256,
                "git commit": section(run, "git").get("commit"),
            },
            "settings": dict(self.settings),  # the framework's: threads, the cores it used, ...
            "variables": dict(self.env_vars),  # the result-changing environment variables set
        }


@dataclass(frozen=True)
class RerunRecord:
    """The rerun record a report carries in its metadata (repro.rerun/1): what `repro rerun`
    needs from the report alone. The rerun's trust gate (repro.driver.untrusted) checks its
    content further: names, the spec, the lock's pins and the code's hashes."""

    schema: ClassVar[str] = RERUN_SCHEMA
    workload: Mapping  # the workload spec it ran
    framework: str
    kernel: str
    params: Mapping[str, Any]  # every parameter, seeds included
    lock: str | None  # the kernel's requirements.lock (None: unpinned)
    code: Mapping  # repro.driver.snapshot.take: template {name, sha256, text}, library

    def to_json(self) -> dict:
        return {"schema": self.schema, **dataclasses.asdict(self)}

    @classmethod
    def from_json(cls, data: Any, source: str) -> RerunRecord:
        data = check_schema(data, source, cls.schema)
        return cls(
            workload=typed(data, "workload", dict, source),
            framework=typed(data, "framework", str, source),
            kernel=typed(data, "kernel", str, source),
            params=typed(data, "params", dict, source),
            lock=typed(data, "lock", (str, NONE), source),
            code=typed(data, "code", dict, source),
        )


@dataclass(frozen=True)
class Comparison:
    """comparison.json (repro.comparison/1): how a comparison ended and what its report
    published, by kind: `context` (the fields that differ) and `comparison` (each run against
    the baseline: repro.kernel.comparison.against_baseline)."""

    schema: ClassVar[str] = COMPARISON_SCHEMA
    status: str
    error: str | None
    results: Mapping[str, Any]  # every published result by kind

    def to_json(self) -> dict:
        return {"schema": self.schema, "status": self.status, "error": self.error, **self.results}

    @classmethod
    def from_json(cls, data: Any, source: str) -> Comparison:
        data = check_schema(data, source, cls.schema)
        status = typed(data, "status", str, source)
        error = typed(data, "error", (str, NONE), source)
        results = {k: v for k, v in data.items() if k not in ("schema", "status", "error")}
        if status == "ok":
            pairs = typed(typed(data, "comparison", dict, source), "pairs", list, source)
            typed(typed(data, "context", dict, source), "differences", dict, source)
            if not all(isinstance(p, dict) for p in pairs):
                raise RecordError(f"{source}: 'pairs' is not a list of objects")
        return cls(status, error, results)

    @property
    def differences(self) -> Mapping:
        return section(self.results.get("context"), "differences")

    @property
    def baseline(self) -> str | None:
        return section(self.results, "comparison").get("baseline")

    @property
    def pairs(self) -> list[Mapping]:
        return list(section(self.results, "comparison").get("pairs") or [])


@dataclass(frozen=True)
class Run:
    """A finished run folder, read back for a comparison."""

    folder: Path
    metrics: Metrics
    environment: Environment
    summary: Summary  # checked on load: what a comparison reads

    @property
    def name(self) -> str:
        return self.folder.name

    @property
    def label(self) -> str:
        """Short and unique: framework and compile mode (or the exported runtime that served
        it), workload, batch size, explicit attention where it ran, and the run id's suffix."""
        m, p = self.metrics, self.metrics.params
        explicit = " explicit-attn" if p.get("attention") == "explicit" else ""
        spread = f" ×{self.devices} {self.scaling}" if self.scaling else ""
        runtime = p.get("runtime")
        how = f"→{runtime}" if runtime not in (None, "native") else f" {p.get('compile', '')}"
        return (
            f"{m.framework}{how} {m.workload} bs{p['batch_size']}"
            f"{spread}{explicit} #{self.name.rsplit('_', 1)[-1]}"
        )

    @property
    def samples(self) -> Mapping:
        return self.metrics.samples or EMPTY

    @property
    def devices(self) -> int:
        """Data-parallel devices (runs from before `devices` ran on one)."""
        return self.metrics.params.get("devices") or 1

    @property
    def scaling(self) -> str | None:
        """How a data-parallel run spread its batch_size (weak: on each device; strong: over all
        of them); None on one device, the twin of either (runs from before `scaling`: weak)."""
        return (self.metrics.params.get("scaling") or "weak") if self.devices > 1 else None

    def setting(self) -> str:
        """Everything that decides what was measured, but how many devices and how the batch is
        spread over them: a data-parallel run and its one-device twin share it (`twins`). The
        twin runs batch_size samples on one device, which is each device's batch under weak
        scaling and the global batch under strong scaling. A null parameter (one that does not
        apply) counts as absent, as in a run from before it existed."""
        spread = ("devices", "scaling")
        params = {
            k: v
            for k, v in self.metrics.params.items()
            if k not in (*UNMEASURED, *spread) and v is not None
        }
        context = {k: v for k, v in self.context().items() if k not in spread}
        return json.dumps([self.metrics.framework, context, params], sort_keys=True, default=str)

    @property
    def step_s(self) -> np.ndarray:
        return self.metrics.step_s

    @property
    def headline(self) -> stats.Headline | None:
        return self.metrics.headline

    def context(self) -> dict:
        """What must match for two runs' numbers to be compared as like for like."""
        env, params = self.environment, self.metrics.params
        accuracy = self.summary.time_to_accuracy
        return {
            "cpu": env.cpu.get("model"),
            "gpu": env.gpu_names or None,
            "driver": env.driver_version,
            "precision": params["precision"],
            "mode": params["mode"],
            "batch_size": params["batch_size"],
            "devices": self.devices,
            "scaling": self.scaling,
            "sequence_length": params.get("sequence_length"),
            "new_tokens": params.get("new_tokens"),  # mode=generate (null otherwise)
            "target_accuracy": params.get("target_accuracy"),  # mode=train-to-accuracy
            "data": accuracy.data_sha256 if accuracy else None,  # its data, by their hash
            "workload": self.metrics.workload,
            "model": self.metrics.model_config,
        }


def load(folder: str | Path) -> Run:
    """A finished run folder, or UserError saying why it cannot be compared."""
    folder = Path(folder)
    metrics = Metrics.from_json(read(folder / "metrics.json"), f"{folder}/metrics.json")
    if metrics.status != "ok":
        raise UserError(f"{folder} is a {metrics.status} run: it has no measurements")
    environment = Environment.from_json(
        read(folder / "environment.json"), f"{folder}/environment.json"
    )
    summary = Summary.from_json(metrics.summary, f"{folder}/metrics.json summary")
    for key in ("precision", "mode", "batch_size"):  # what the context and the label read
        typed(metrics.params, key, (str, int), f"{folder}/metrics.json params")
    return Run(folder, metrics, environment, summary)


RUN_FILES = (
    "metrics.json",
    "report.ipynb",
    "report.partial.ipynb",
    "comparison.json",
    "history.json",
)


def not_finished(path: Path) -> str | None:
    """Why `path` is not a finished run folder that can be compared, or None if it is one.
    (Whether its records are of this version is `load`'s to say, in one line.)"""
    if not path.is_dir():
        bundle = " (a bundle: unpack it first)" if ".tar" in path.name else ""
        return f"a file, not a run folder{bundle}"
    if (path / "comparison.json").is_file():
        return "a comparison, not a run"
    if (path / "history.json").is_file():
        return "a history, not a run"
    if not (path / "metrics.json").is_file():
        if (path / "report.ipynb").is_file() or (path / "report.partial.ipynb").is_file():
            return "an unfinished run (no metrics.json: its driver was killed)"
        return "not a run folder"
    try:
        metrics = json.loads((path / "metrics.json").read_text())
    except (OSError, ValueError) as error:
        return f"an unreadable metrics.json ({brief(error)})"
    if not isinstance(metrics, dict) or "status" not in metrics:
        return "a metrics.json that is not a repro run's (no status)"
    status = metrics["status"]
    if status == "ok":
        return None
    return f"{'an' if str(status)[:1] in 'aeiou' else 'a'} {status} run"


def survey(paths: list[str | Path], depth: int = 1) -> tuple[list[Path], list[str]]:
    """Finished run folders from `paths`: each a run folder, or a folder of them (in name order),
    looked for `depth` folders down (a sweep's runs are in <sweep>/cells/<cell>/); and a line for
    each thing skipped (unfinished, failed or interrupted runs, comparisons, bundles, stray
    files given). The caller decides whether enough runs remain."""
    folders, skipped = [], []
    for path in map(Path, paths):
        if not path.exists():
            raise UserError(f"{path} does not exist")
        candidates = found(path, depth)
        if candidates != [path] and not any(not_finished(c) is None for c in candidates):
            skipped.append(f"{path}: holds no finished run folders")
        for candidate in candidates:
            why = not_finished(candidate)
            if why:
                skipped.append(f"{candidate}: {why}")
            else:
                folders.append(candidate)
    return folders, skipped


def gather(
    paths: list[str | Path], depth: int = 1, repeats: bool = True
) -> tuple[list[Run], list[str]]:
    """The finished runs under `paths` that load, each once, and a line for everything passed
    over: not a finished run (`survey`), records this repro cannot read or without valid
    measurements (`load`), or a run found before (the same folder, through a link or another
    spelling of its path, or a copy: the same run id). Where not `repeats`, a run found twice
    is UserError instead: a comparison of a run with itself says nothing."""
    folders, passed = survey(paths, depth)
    runs: list[Run] = []
    seen: dict[Path | str, Path | None] = {}  # resolved folder or run id: its first folder

    def once(key: Path | str, folder: Path, what: str) -> bool:
        if key not in seen:
            seen[key] = folder
            return True
        if seen[key] is None:
            return False
        line = f"{folder} is {what} as {seen[key]}"
        if not repeats:
            raise UserError(f"{line}: a run compared with itself says nothing")
        passed.append(line)
        return False

    for folder in folders:
        if not once(folder.resolve(), folder, "the same folder"):
            continue
        try:
            run = load(folder)
        except UserError as error:
            passed.append(f"{folder}: {error}")
            seen[folder.resolve()] = None  # said once: not again where found again
            continue
        if once(run.metrics.run_id, folder, f"the same run (id {run.metrics.run_id})"):
            runs.append(run)
    return runs, passed


def found(path: Path, depth: int) -> list[Path]:
    """`path` if it is a file or holds a run's (or a comparison's) files, else the folders under
    it to `depth` (the files beside them are no runs, and are passed over)."""
    if not path.is_dir() or any((path / name).exists() for name in RUN_FILES):
        return [path]
    children = sorted(path.iterdir())
    if depth <= 1:
        return children
    return [c for child in children if child.is_dir() for c in found(child, depth - 1)]


def twins(runs: list[Run]) -> list[tuple[Run, Run]]:
    """(one-device twin, data-parallel run) for each run on several devices whose twin (the
    same setting on one device) is among `runs` (repro.stats.efficiency)."""
    one = {r.setting(): r for r in runs if r.devices == 1}
    return [(one[r.setting()], r) for r in runs if r.devices > 1 and r.setting() in one]


def context_differences(runs: list[Run]) -> dict[str, list]:
    """The context fields whose values differ between runs (lock: only within one kernel)."""
    contexts = [r.context() for r in runs]
    diffs = {
        k: [c[k] for c in contexts]
        for k in contexts[0]
        if len({json.dumps(c[k]) for c in contexts}) > 1
    }
    by_kernel: dict[str, set] = {}
    for r in runs:
        by_kernel.setdefault(r.metrics.kernel, set()).add(r.environment.lock_sha256)
    if any(len(shas) > 1 for shas in by_kernel.values()):
        diffs["lock"] = [r.environment.lock_sha256 for r in runs]
    return diffs


WORK = ("workload", "mode", "batch_size", "sequence_length", "new_tokens")  # what a step does


def unjudged(base: Run, run: Run) -> str | None:
    """Why `run`'s step time is not judged against `base`'s, or None: steps of different work
    have no ratio to judge, and a busy machine's figures are below that machine's normal."""
    a, b = base.context(), run.context()
    differ = [k for k in WORK if a[k] != b[k]]
    if differ:
        said = "; ".join(f"{k} {a[k]} vs {b[k]}" for k in differ)
        return f"not judged: the runs' steps do different work ({said})"
    busy = [r.label for r in (base, run) if r.summary.busy]
    if busy:
        return (
            f"not judged: {' and '.join(busy)} measured on a busy machine; rerun on a quiet "
            "machine (its busy warning says what to change)"
        )
    return None


def judge(base: Run, run: Run) -> dict:
    """`run` against `base`, the first run of a comparison: repro.stats.versus on their step
    times, or its figures with `judged` False and the verdict saying why not (`unjudged`)."""
    result = {"base": base.name, "new": run.name, **stats.versus(base.samples, run.samples)}
    why = unjudged(base, run)
    return {**result, "judged": why is None, **({"verdict": why} if why else {})}


def environment_differences(before: Environment, after: Environment) -> dict[str, dict[str, list]]:
    """{group: {fact: [before, after]}} for every fact that differs between two environments."""
    a, b = before.facts(), after.facts()
    return {
        group: {
            k: [a[group].get(k), b[group].get(k)]
            for k in sorted(set(a[group]) | set(b[group]))
            if a[group].get(k) != b[group].get(k)
        }
        for group in a
    }
