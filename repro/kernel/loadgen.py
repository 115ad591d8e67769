"""MLPerf LoadGen scenarios (in-kernel side): `scenario=single-stream|offline|server`.

LoadGen (the `mlcommons-loadgen` package, in every framework kernel's lock) decides when queries
arrive and which samples they name, times every query, and judges the run VALID or INVALID by
its scenario's rules. repro supplies what LoadGen leaves to a participant:
- the system under test (SUT): the run's own model, through its adapter's inference function
  (`Adapter.serving_function`, the step repro's protocol timed), on each query's samples;
- the query sample library (QSL): the run's synthetic batch, already in memory (nothing to load).

How each scenario is served. Single-stream: one sample per query, the next query issued when
the last completes; served synchronously, inside LoadGen's `issue_queries`. Offline: one query
holding every sample; served synchronously too, in chunks of `batch_size` (the last chunk padded,
so no new shape is compiled while LoadGen times), each chunk completed as it finishes. With
mlcommons-loadgen 6.0.17, completing a batch of samples with one `QuerySamplesComplete` call from
a worker thread in Offline is reported to segfault (an open upstream issue): repro does not.
Server: queries of one sample arrive on LoadGen's schedule; `issue_queries` only queues them, so
the schedule is kept, and one worker thread serves them in order and completes each one.

Every shape a scenario uses is compiled and warmed before LoadGen starts. A target left at 0 is
derived from those warm calls (`targets`). LoadGen's logs are published whole: the driver
writes them into the run folder (repro.driver.finalize).

After the performance run, LoadGen's accuracy run (TestMode.AccuracyOnly, as an MLPerf
submission has beside each performance run): every QSL sample once, in the same scenario, the SUT
answering each with its predicted class (int32; per position for a language model), which
LoadGen logs in `mlperf_log_accuracy.json`. repro decodes that log and checks it (`accuracy`):
one answer per sample, each the model's own, computed directly in the scenario's query size, and
top-1 against the QSL's labels.
"""

from __future__ import annotations

import json
import os
import queue
import re
import statistics
import tempfile
import threading
import time
from importlib import metadata
from pathlib import Path

import numpy as np

SCENARIOS = {"single-stream": "SingleStream", "offline": "Offline", "server": "Server"}
# The parameters that shape a scenario's run, and the scenarios each one applies to: LoadGen's
# Offline issues one query (its size comes from target_qps and min_duration_ms), so it ignores
# min_query_count; single-stream has no QPS; offline has no latency bound.
APPLIES = {
    "min_duration_ms": tuple(SCENARIOS),
    "min_query_count": ("single-stream", "server"),
    "target_qps": ("offline", "server"),
    "target_latency_ms": ("single-stream", "server"),
}
SUBMISSION_MS = 600_000  # LoadGen's default minimum duration: what an MLPerf result runs
LOG_FILES = ("mlperf_log_summary.txt", "mlperf_log_detail.txt")  # the performance run's
ACCURACY_LOG = "mlperf_log_accuracy.json"  # the accuracy run's answers
# A folder of the driver's for the kernel's temporary files (repro.driver.scratch): removed by the
# driver however the run ends, even when it had to kill the kernel (Ctrl-C, SIGTERM)
SCRATCH_VARIABLE = "REPRO_SCRATCH"
WARM_CALLS = 3  # timed calls per shape after its first (compiling) one
# Targets left at 0. Server: half the rate one sample at a time allows, and a latency bound of 10
# single-sample latencies. Single-stream: half the warm latency, as LoadGen stops once both
# minimums are met but sizes its queries by this expectation (too high: fewer queries than
# min_duration_ms needs, INVALID). Offline: the warm rate (LoadGen adds 10%).
LATENCY_FACTOR = {"single-stream": 0.5, "server": 10}
SERVER_QPS_SHARE = 0.5
OVER_WARM_RATE = 10  # an offline target_qps above this many times the warm rate is refused


class Sut:
    """The system under test: the run's model on samples of the run's batch (the QSL)."""

    def __init__(self, fw, net, samples: np.ndarray, *, compile: str, batch_size: int) -> None:
        self.fw, self.samples, self.batch_size = fw, samples, batch_size
        self.infer = fw.serving_function(net, compile)
        self.error: BaseException | None = None  # the first error a query met, raised after
        self.answering = False  # the accuracy run: each response carries the sample's answer
        self.classes = 0  # the model's output classes (vocabulary), as `answers` last saw them

    def run(self, indices: list[int]):
        """One synchronised inference over these QSL samples; its output."""
        out = self.infer(self.fw.to_native(self.samples[indices]))
        self.fw.sync(out)
        return out

    def answers(self, indices: list[int]) -> np.ndarray:
        """The model's answers for these samples: int32 predicted classes, (n,) or (n, T)."""
        out = np.asarray(self.fw.to_numpy(self.run(indices)), dtype=np.float32)
        self.classes = out.shape[-1]
        return np.ascontiguousarray(out.argmax(-1).astype(np.int32))

    def warm(self, size: int) -> float:
        """Compile and warm the shape of `size` samples; the median seconds of its warm calls."""
        indices = [i % len(self.samples) for i in range(size)]
        self.run(indices)  # compiles
        times = []
        for _ in range(WARM_CALLS):
            start = time.perf_counter()
            self.run(indices)
            times.append(time.perf_counter() - start)
        return statistics.median(times)

    def serve(self, lg, samples: list, chunk: int) -> None:
        """Run `samples` (LoadGen QuerySamples) in chunks of `chunk`, each padded to a full one
        and completed when done. An error completes the rest empty (LoadGen would wait for them
        forever) and is kept, to be raised once LoadGen has stopped."""
        for start in range(0, len(samples), chunk):
            part = samples[start : start + chunk]
            responses = [lg.QuerySampleResponse(s.id, 0, 0) for s in part]
            if self.error is None:
                try:
                    indices = padded([s.index for s in part], chunk)
                    if self.answering:  # LoadGen copies each answer during the call below
                        answers = self.answers(indices)
                        rows = answers.reshape(len(answers), -1)  # each sample's, as an array
                        responses = [
                            lg.QuerySampleResponse(s.id, row.ctypes.data, row.nbytes)
                            for s, row in zip(part, rows, strict=False)
                        ]
                    else:
                        self.run(indices)
                except BaseException as error:  # noqa: BLE001 - raised after the test
                    self.error = error
            lg.QuerySamplesComplete(responses)


def padded(indices: list[int], size: int) -> list[int]:
    """`indices` filled up to `size` with its first: a full chunk, so no new shape compiles."""
    return indices + indices[:1] * (size - len(indices))


def targets(sut: Sut, scenario: str, target_qps, target_latency_ms) -> dict:
    """The scenario's targets: as given, or (0) derived from warm calls of the shape it runs,
    each with where it came from (None: where one does not apply)."""
    size = sut.batch_size if scenario == "offline" else 1
    seconds = sut.warm(size)
    rate, latency_ms = size / seconds, seconds * 1e3
    if scenario == "offline" and target_qps > OVER_WARM_RATE * rate:
        raise ValueError(
            f"target_qps={target_qps:g} is over {OVER_WARM_RATE} times the rate warm calls "
            f"reached ({rate:.2f} samples/s): LoadGen's one offline query would hold about "
            f"{target_qps / rate:.0f} times min_duration_ms of work; lower it, or give 0"
        )
    share = SERVER_QPS_SHARE if scenario == "server" else 1
    factor = LATENCY_FACTOR.get(scenario, 1)
    derived = {  # name: (as given, derived, how)
        "target_qps": (
            target_qps,
            rate * share,
            f"{share:g} × the rate of warm calls of {size} sample(s) ({rate:.2f}/s)",
        ),
        "target_latency_ms": (
            target_latency_ms,
            latency_ms * factor,
            f"{factor:g} × the median warm call of 1 sample ({latency_ms:.2f} ms)",
        ),
    }
    found = {"warm_latency_ms": latency_ms, "warm_samples": size}
    for name, (given, auto, how) in derived.items():
        if scenario in APPLIES[name]:
            found[name] = given or auto
            found[f"{name}_source"] = "given" if given else f"auto: {how}"
    return found


def settings(
    lg,
    scenario: str,
    found: dict,
    *,
    min_duration_ms: int,
    min_query_count: int | None,
    seed,
    accuracy: bool = False,
):
    """LoadGen's TestSettings for a performance (or the accuracy) run of `scenario` with these
    targets (min_query_count is None where it does not apply: APPLIES)."""
    test = lg.TestSettings()
    test.scenario = getattr(lg.TestScenario, SCENARIOS[scenario])
    test.mode = lg.TestMode.AccuracyOnly if accuracy else lg.TestMode.PerformanceOnly
    test.min_duration_ms = min_duration_ms
    if min_query_count is not None:
        test.min_query_count = min_query_count
    test.qsl_rng_seed = test.sample_index_rng_seed = test.schedule_rng_seed = seed
    if "target_qps" in found:
        test.offline_expected_qps = test.server_target_qps = found["target_qps"]
    if "target_latency_ms" in found:
        nanoseconds = int(found["target_latency_ms"] * 1e6)
        test.single_stream_expected_latency_ns = test.server_target_latency_ns = nanoseconds
    return test


def run(
    fw,
    net,
    samples: np.ndarray,
    labels: np.ndarray,
    *,
    scenario: str,
    compile: str,
    batch_size: int,
    min_duration_ms: int,
    min_query_count: int | None,
    target_qps: float | None = 0.0,
    target_latency_ms: float | None = 0.0,
    seed: int = 0,
) -> dict | None:
    """Run LoadGen's `scenario` over the model and `samples`, then its accuracy run (checked
    against the model's own answers and `labels`); publish LoadGen's logs (its own summary
    shown) and return the parsed summary with the settings used. None for "none"."""
    if scenario == "none":
        return None
    import mlperf_loadgen as lg

    from repro.kernel import report  # here: the driver reads this module's tables

    sut = Sut(fw, net, samples, compile=compile, batch_size=batch_size)
    found = targets(sut, scenario, target_qps, target_latency_ms)
    given = {"min_duration_ms": min_duration_ms, "min_query_count": min_query_count, "seed": seed}
    logs, wall_s = perform(lg, sut, scenario, settings(lg, scenario, found, **given), LOG_FILES)
    sut.answering = True
    answered, _ = perform(
        lg, sut, scenario, settings(lg, scenario, found, **given, accuracy=True), (ACCURACY_LOG,)
    )
    sut.answering = False
    logs |= answered
    parsed = {
        "scenario": scenario,
        "loadgen_version": metadata.version("mlcommons-loadgen"),
        **parse_summary(logs["mlperf_log_summary.txt"]),
        "settings": {
            "min_duration_ms": min_duration_ms,
            "min_query_count": min_query_count,
            "qsl_samples": len(samples),
            "batch_size": batch_size if scenario == "offline" else 1,
            **found,
        },
        "wall_s": wall_s,
        "warning": short_run(min_duration_ms),
        "accuracy": accuracy(sut, scenario, answered[ACCURACY_LOG], labels),
    }
    report.publish("loadgen_logs", logs, own_summary(parsed, logs["mlperf_log_summary.txt"]))
    return parsed


def perform(lg, sut: Sut, scenario: str, test, names: tuple[str, ...]) -> tuple[dict, float]:
    """One LoadGen test: its log files `names` (text) and its wall time in seconds. The first
    error a query met is raised once LoadGen has stopped."""
    scratch = os.environ.get(SCRATCH_VARIABLE)  # None: TMPDIR, outside a run
    with tempfile.TemporaryDirectory(prefix="repro-loadgen-", dir=scratch) as folder:
        log = lg.LogSettings()
        log.log_output.outdir = folder
        log.log_output.copy_summary_to_stdout = False
        log.enable_trace = False
        start = time.perf_counter()
        drive(lg, sut, scenario, test, log)
        wall_s = time.perf_counter() - start
        logs = {name: (Path(folder) / name).read_text() for name in names}
    if sut.error is not None:
        raise sut.error
    return logs, wall_s


def accuracy(sut: Sut, scenario: str, text: str, labels: np.ndarray) -> dict:
    """LoadGen's accuracy log checked: every QSL sample answered once, each answer the model's
    own (computed here directly, in the scenario's query size, so in the same shapes), and the
    logged answers' top-1 against `labels` (the share of predicted classes, or tokens, that
    match)."""
    n, size = len(sut.samples), sut.batch_size if scenario == "offline" else 1
    chunks = [list(range(i, min(i + size, n))) for i in range(0, n, size)]
    own = np.concatenate([sut.answers(padded(c, size))[: len(c)] for c in chunks])
    logged: dict[int, list[bytes]] = {}
    for entry in json.loads(text):
        logged.setdefault(int(entry["qsl_idx"]), []).append(bytes.fromhex(entry["data"]))
    count = sum(map(len, logged.values()))
    agree = [i for i in range(n) if logged.get(i) == [own[i].tobytes()]]
    hits = [  # the first answer LoadGen logged for each sample, where it has the right size
        np.frombuffer(logged[i][0], np.int32) == labels[i].ravel()
        for i in range(n)
        if i in logged and len(logged[i][0]) == own[i].nbytes
    ]
    return {
        "samples": n,
        "logged": count,
        "agree": len(agree),
        "top1": float(np.mean(np.concatenate(hits))) if hits else None,
        "chance": 1 / sut.classes,
        "passed": len(agree) == n == count,
    }


def drive(lg, sut: Sut, scenario: str, test, log) -> None:
    """LoadGen's test from start to end, with the SUT and QSL it needs."""
    work: queue.Queue = queue.Queue()

    def issue(samples: list) -> None:
        if scenario == "server":  # keep LoadGen's schedule: the worker serves them
            for sample in samples:
                work.put(sample)
        else:
            sut.serve(lg, samples, sut.batch_size if scenario == "offline" else 1)

    def worker() -> None:
        while (sample := work.get()) is not None:
            sut.serve(lg, [sample], 1)

    thread = threading.Thread(target=worker, name="loadgen-server", daemon=True)
    thread.start()
    handle = lg.ConstructSUT(issue, lambda: None)
    count = len(sut.samples)
    library = lg.ConstructQSL(count, count, lambda _: None, lambda _: None)  # in memory already
    try:
        lg.StartTestWithLogSettings(handle, library, test, log)
    finally:
        work.put(None)
        thread.join()
        lg.DestroyQSL(library)
        lg.DestroySUT(handle)


def own_summary(parsed: dict, text: str) -> str:
    """LoadGen's own summary, verbatim, headed by what was run and why it is no submission."""
    return (
        f"**MLPerf LoadGen, {parsed['scenario']} scenario: {parsed['result']}**"
        + (f" (not satisfied: {', '.join(parsed['failed'])})" if parsed["failed"] else "")
        + f". LoadGen's own summary (`mlperf_log_summary.txt`; every event in "
        f"`mlperf_log_detail.txt`, both in the run folder), {parsed['wall_s']:.1f} s:\n\n"
        f"> ⚠ {parsed['warning']}\n\n```text\n{text.strip()}\n```\n\n"
        f"**LoadGen's accuracy run** (`{ACCURACY_LOG}`): {accuracy_sentence(parsed['accuracy'])}"
    )


def accuracy_sentence(accuracy: dict) -> str:
    """The accuracy run's check, one sentence."""
    a = accuracy
    top1 = "" if a["top1"] is None else f"; top-1 against the QSL's labels {a['top1']:.1%}"
    return (
        ("✓ passed" if a["passed"] else "⚠ FAILED")
        + f": {a['logged']} answers logged for {a['samples']} samples, {a['agree']} of them "
        f"the model's own{top1} (chance {a['chance']:.1%}: repro's QSL is the run's synthetic "
        "batch, its labels random, so accuracy says nothing of the model here; the check is "
        "that LoadGen saw the model's answers)"
    )


def short_run(min_duration_ms: int) -> str:
    """Why a run shorter than LoadGen's defaults is no MLPerf result."""
    return (
        f"LoadGen ran for at least min_duration_ms={min_duration_ms:,}; its defaults, which an "
        f"MLPerf submission runs, are {SUBMISSION_MS // 60_000} minutes ({SUBMISSION_MS:,} ms) "
        "and far more queries, with the submission rules' checker and audits: this is "
        "LoadGen's measurement of this model, not an MLPerf submission or result."
    )


PERCENTILE = re.compile(r"(\d+(?:\.\d+)?) percentile latency \(ns\)")
NAMED_LATENCY = {"Min latency (ns)": "min", "Max latency (ns)": "max", "Mean latency (ns)": "mean"}
HEADER = re.compile(r"={8,}")
NAMED = {"SUT name": "sut_name", "Scenario": "loadgen_scenario", "Mode": "mode"}


def number(text: str) -> float | int | None:
    """A number as LoadGen prints it, or None."""
    try:
        value = float(text)
    except ValueError:
        return None
    return int(value) if value.is_integer() and "." not in text else value


def sections(text: str) -> dict[str, list[str]]:
    """LoadGen's summary split at its `=====` framed headings: {heading: its lines}."""
    found: dict[str, list[str]] = {"": []}
    lines, name, i = text.splitlines(), "", 0
    while i < len(lines):
        if i + 2 < len(lines) and all(HEADER.fullmatch(lines[j].strip()) for j in (i, i + 2)):
            name, i = lines[i + 1].strip(), i + 3
            found[name] = []
        else:
            found[name].append(lines[i])
            i += 1
    return found


def parse_summary(text: str) -> dict:
    """mlperf_log_summary.txt as data: the result, each constraint, the scenario's metric, the
    latency percentiles (ns), the other stats, LoadGen's notes and messages, and the test
    parameters it used. ValueError for a text that is not LoadGen's summary."""
    parts = sections(text)
    head = parts.get("MLPerf Results Summary")
    if head is None:
        raise ValueError("not a LoadGen summary: no 'MLPerf Results Summary' heading")
    out: dict = {"constraints": {}, "notes": [], "latency_ns": {}, "stats": {}, "parameters": {}}
    for line in head:
        key, sep, value = (part.strip() for part in line.partition(":"))
        if line.startswith("  ") and key.endswith("satisfied") and sep:
            out["constraints"][key] = value.lower() == "yes"
        elif key == "Result is":
            out["result"] = value
        elif key in NAMED and sep:
            out[NAMED[key]] = value
        elif sep and value and number(value) is not None and "result" not in out:
            out["metric"] = {"name": key, "value": number(value)}
        elif line.strip():
            out["notes"].append(line.strip())
    if "result" not in out or "metric" not in out:
        raise ValueError("not a LoadGen summary: no 'Result is' line or no metric")
    for line in parts.get("Additional Stats", []):
        key, _, value = (part.strip() for part in line.partition(":"))
        if number(value) is None:
            continue
        percentile = PERCENTILE.fullmatch(key)
        if percentile:
            out["latency_ns"][f"p{float(percentile.group(1)):g}"] = number(value)
        elif key in NAMED_LATENCY:
            out["latency_ns"][NAMED_LATENCY[key]] = number(value)
        else:
            out["stats"][key] = number(value)
    messages = []
    for line in parts.get("Test Parameters Used", []):
        key, sep, value = (part.strip() for part in line.partition(":"))
        if sep and number(value) is not None:
            out["parameters"][key] = number(value)
        elif line.strip():
            messages.append(line.strip())
    out["messages"] = messages
    out["valid"] = out["result"] == "VALID"
    per_second = "per second" in out["metric"]["name"]  # offline, server: samples per second
    single = out["stats"].get("QPS w/ loadgen overhead")  # single-stream: one sample per query
    out["samples_per_s"] = out["metric"]["value"] if per_second else single
    out["failed"] = [name for name, ok in out["constraints"].items() if not ok]
    return out
