"""The rerun verdict: did this run reproduce the report it reran? (in-kernel side)

`repro rerun` puts the original's metrics.json and environment.json, and the verdict's settings
(verdict.json), in the new run folder's `original/`, and appends a cell calling `show()`.

What decides is one value per process (repro.stats), the median step time unless the mode has
its own headline (`deciding`): an equivalence test at the stated tolerance gives *reproduced
within ±X%*, *changed by Y% [CI]* or *inconclusive* (with the processes that would likely decide).
Before that, the machine: if the rerun's machine reference (repro.kernel.machine) ran faster or
slower than the original's beyond its noise, or the rerun was measured on a busy machine, the
verdict says *machine changed* first, and whether the workload's shift lies within the machine's.
The other rows (step-time statistics of the kernel's process with a bootstrap CI, compile time,
memory, energy, loss, and a mode's own figures) are shown for reading, not deciding.

The modes:
- train-to-accuracy: each process's time to the target decides (`time_to_target`); a process
  that missed it has no time, so the verdict says which did, and one process per run is said
  to decide nothing, as for step times.
- generate: a step is one request, the batch's whole generation (prefill and every decode step),
  so the median step time of each process is the end-to-end time of a typical generation: it
  keeps deciding, and holds TTFT and TPOT. Those, e2e p99 and tokens/s are measured in the
  kernel's process only (one value each), so they are rows for reading.
- a LoadGen scenario runs once, in the kernel's process, after the protocol: the protocol's
  step times decide; LoadGen's result (VALID or INVALID), samples/s and p90/p99 latency are rows,
  and a result that changed is said in the verdict's words.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from repro import records, stats
from repro.kernel import machine
from repro.kernel.report import publish, show_figure
from repro.markdown import escape

TOLERANCE = stats.MARGIN  # default: the equivalence margin of the deciding metric
SCALAR_TOLERANCE = {  # single values: how far a rerun may land and still count as the same
    "first call: compile / cold start (s)": 0.25,
    "peak host RSS (bytes)": 0.10,
    "peak device memory (bytes)": 0.05,
    "energy (kWh per 1,000 samples)": 0.25,
    "final training loss": 1e-3,
    # mode=train-to-accuracy (the time to target of each process decides)
    "time to target, median over processes (s)": TOLERANCE,
    "steps to target, median over processes": 0.0,  # seeded: the same steps, unless it changed
    "best held-out accuracy": 0.01,
    # mode=generate, the kernel's process (percentiles of few requests: wide)
    "time to first token p50 (ms)": 0.25,
    "time per output token p50 (ms)": 0.25,
    "time per output token p99 (ms)": 0.5,
    "end-to-end per request p99 (ms)": 0.5,
    "output tokens/s": 0.25,
    # a LoadGen scenario (one run of LoadGen, in the kernel's process)
    "LoadGen samples/s": 0.25,
    "LoadGen p90 latency (ms)": 0.25,
    "LoadGen p99 latency (ms)": 0.5,
}


def p90(x) -> float:
    return float(np.percentile(x, 90))


CLASSES = ("reproduced", "changed", "inconclusive", "machine changed")


@dataclass(frozen=True)
class Measured:
    """What the verdict reads of one run: its step-time summary and its samples."""

    summary: records.Summary
    samples: Mapping  # batch_size, first_call_s, step_s, processes


def record(metrics: records.Metrics) -> Measured:
    """What the verdict reads of a run's metrics.json."""
    source = f"run {metrics.run_id}'s metrics"
    return Measured(records.Summary.from_json(metrics.summary, source), metrics.samples or {})


def published(metrics: dict) -> Measured:
    """What the verdict reads of this run's own results (repro.kernel.report.results)."""
    return Measured(records.Summary.from_json(metrics, "this run's metrics"), metrics["samples"])


def machine_change(original: Measured, rerun: Measured) -> dict | None:
    """How the rerun's machine differed from the original's: the reference's fastest times
    (before the measured phase) against their noise, and which of the two runs other processes
    kept busy (a busy original, reproduced on a quiet machine, is a machine change as much as a
    busy rerun). None where the original recorded no reference (a report older than it)."""
    before, after = original.summary.reference_before, rerun.summary.reference_before
    if not before or not after or set(before) != set(after):
        return None
    changes = machine.drift(before, after)
    moved = {k: d["change"] for k, d in changes.items() if abs(d["change"]) > d["threshold"]}
    busy = [name for name, run in (("original", original), ("rerun", rerun)) if run.summary.busy]
    return {"reference": changes, "moved": moved, "busy": busy, "changed": bool(moved or busy)}


STEP_TIME = "the median step time of each process"
GENERATION = "the median step time (one request: a whole generation) of each process"
TIME_TO_TARGET = "the time to target of each process that reached it"


def deciding(original: Measured, rerun: Measured) -> str:
    """What decides the verdict between two runs of one mode (see the module's docstring)."""
    if original.summary.time_to_accuracy and rerun.summary.time_to_accuracy:
        return TIME_TO_TARGET
    return GENERATION if original.summary.generated else STEP_TIME


def missed(tta: records.TimeToAccuracy, name: str) -> str:
    """Which processes of a run missed the target, and what stopped them ('' if none did)."""
    if tta.reached_by == tta.processes:
        return ""
    caps = ", ".join(sorted(set(tta.caps))) or "a cap"
    return (
        f"{tta.processes - tta.reached_by} of {tta.processes} processes of the {name} missed "
        f"the {tta.target:.1%} target (stopped by {caps}; the first process's best "
        f"{tta.best_accuracy:.2%})"
    )


def time_to_target(original: Measured, rerun: Measured, tolerance: float) -> dict:
    """The workload's shift in time to target (repro.stats.shift on each process's time), said
    plainly where a run's processes missed the target: only those that reached it are compared,
    and where one run reached it in every process and the other in none, it changed. With one
    process per run stats.shift says inconclusive, and the words give the one ratio seen."""
    a, b = original.summary.time_to_accuracy, rerun.summary.time_to_accuracy
    notes = [n for n in (missed(a, "original"), missed(b, "rerun")) if n]
    if a.times_s and b.times_s:
        shift = stats.shift(list(a.times_s), list(b.times_s), tolerance)
        if min(a.reached_by, b.reached_by) < 2:
            notes.append(
                f"time to target {np.median(a.times_s):.2f} s → {np.median(b.times_s):.2f} s "
                f"(ratio {shift['ratio']:.3f}) from one process: a weak, single observation"
            )
    else:  # one run, or neither, has a time to target
        reached, other = ("original", "rerun") if a.times_s else ("rerun", "original")
        every = {"original": a, "rerun": b}[reached]
        kind, words = "inconclusive", "inconclusive: neither run reached the target"
        if a.times_s or b.times_s:
            kind = "changed" if every.reached_by == every.processes else "inconclusive"
            words = f"{kind}: the {reached} reached the target " + (
                f"and the {other} did not, within the same caps"
                if kind == "changed"
                else f"in some processes only, the {other} in none"
            )
        shift = {"ratio": None, "margin": tolerance, "ci90": None, "ci95": None, "kind": kind}
        shift |= {"words": words, "needed": None, "processes": [a.reached_by, b.reached_by]}
    if notes:
        shift["words"] += "; " + "; ".join(notes)
    return shift


def workload_shift(original: Measured, rerun: Measured, tolerance: float) -> dict:
    """The workload's shift, on what decides (`deciding`), which it names as `quantity`."""
    quantity = deciding(original, rerun)
    if quantity == TIME_TO_TARGET:
        shift = time_to_target(original, rerun, tolerance)
    else:
        shift = stats.shift(
            stats.medians(original.samples), stats.medians(rerun.samples), tolerance
        )
    validity = loadgen_change(original, rerun)
    if validity:
        shift["words"] += f"; {validity}"
    return {**shift, "quantity": quantity, "loadgen_change": validity}


def loadgen_change(original: Measured, rerun: Measured) -> str | None:
    """What changed in LoadGen's result (VALID or INVALID) between the runs, or None."""
    a, b = original.summary.loadgen, rerun.summary.loadgen
    if not a or not b or a.result == b.result:
        return None
    said = [
        s.result + (f" (not satisfied: {', '.join(s.failed)})" if s.failed else "") for s in (a, b)
    ]
    return f"LoadGen's result changed: {said[0]} in the original, {said[1]} in the rerun"


def decide(original: Measured, rerun: Measured, tolerance: float) -> dict:
    """The verdict's class and words: the machine first, then the workload (repro.stats)."""
    shift = workload_shift(original, rerun, tolerance)
    host = machine_change(original, rerun)
    if not host or not host["changed"]:
        return {"class": shift["kind"], "words": shift["words"], "shift": shift, "machine": host}
    said = [
        f"its reference {machine.REFERENCES[k]} ran {abs(c):.0%} {'slower' if c > 0 else 'faster'}"
        for k, c in host["moved"].items()
    ] + (
        [f"other processes kept it busy during the {' and the '.join(host['busy'])}"]
        if host["busy"]
        else []
    )
    words = "machine changed: " + "; ".join(said)
    biggest = max((abs(math.log1p(c)) for c in host["moved"].values()), default=0.0)
    if host["moved"] and shift["ratio"] is not None:
        beyond = abs(math.log(shift["ratio"])) > biggest + math.log1p(tolerance)
        words += f". The workload's shift ({shift['ratio'] - 1:+.1%}) is " + (
            "larger than that: " + shift["words"] if beyond else "within that"
        )
    else:
        words += f". The workload: {shift['words']}"
    return {"class": "machine changed", "words": words, "shift": shift, "machine": host}


def scalars(run: Measured) -> dict:
    """One value per metric of SCALAR_TOLERANCE; None where the run's mode has none."""
    summary, tta, g = run.summary, run.summary.time_to_accuracy, run.summary.generated
    scenario = summary.loadgen
    ms = scenario.latency_ns if scenario else {}
    return {
        "first call: compile / cold start (s)": run.samples["first_call_s"],
        "peak host RSS (bytes)": summary.memory.get("host_peak_rss_bytes"),
        "peak device memory (bytes)": summary.memory.get("device_peak_bytes"),
        "energy (kWh per 1,000 samples)": summary.kwh_per_1000_samples,
        "final training loss": summary.loss.get("last"),
        "time to target, median over processes (s)": tta and tta.median_s,
        "steps to target, median over processes": tta and tta.median_steps,
        "best held-out accuracy": tta and tta.best_accuracy,
        "time to first token p50 (ms)": g and g.ttft_ms["p50"],
        "time per output token p50 (ms)": g and g.tpot_ms["p50"],
        "time per output token p99 (ms)": g and g.tpot_ms["p99"],
        "end-to-end per request p99 (ms)": g and g.e2e_ms["p99"],
        "output tokens/s": g and g.tokens_per_s,
        "LoadGen samples/s": scenario and scenario.samples_per_s,
        **{f"LoadGen {q} latency (ms)": ms[q] / 1e6 if q in ms else None for q in ("p90", "p99")},
    }


def metric_ratios(original: Measured, rerun: Measured, seed: int = 0) -> list[dict]:
    """Per metric, for reading: original, rerun, ratio rerun/original and its 95% CI. The
    headline's step time and throughput (repro.stats.headline) with the CI of `stats.versus`
    (between processes where both runs measured several); the p90 over every step, with a
    bootstrap CI (within-process noise only, which is why it does not decide)."""
    a, b = stats.headline(original.samples), stats.headline(rerun.samples)
    moved = stats.versus(original.samples, rerun.samples, seed)
    low, high = moved["ci95"]
    rows = [
        {
            "metric": "median step time (ms)",
            "original": a.step_ms,
            "rerun": b.step_ms,
            "ratio": b.step_ms / a.step_ms,
            "ci95": [low, high],
            "note": moved["basis"],
        },
        {
            "metric": "throughput (samples/s)",
            "original": a.samples_per_s,
            "rerun": b.samples_per_s,
            "ratio": b.samples_per_s / a.samples_per_s,
            "ci95": [1 / high, 1 / low],
            "note": moved["basis"],
        },
    ]
    before, after = stats.pooled(original.samples), stats.pooled(rerun.samples)
    ratio, low, high = stats.ratio_ci(after, before, p90, seed=seed)
    rows.append(
        {
            "metric": "p90 step time (ms)",
            "original": float(1e3 * p90(before)),
            "rerun": float(1e3 * p90(after)),
            "ratio": ratio,
            "ci95": [low, high],
            "note": "every step of every process",
        }
    )
    before, after = original.summary.loadgen, rerun.summary.loadgen
    if before and after:  # LoadGen's verdict: text, not a ratio
        same = before.result == after.result
        rows.append(
            {
                "metric": f"LoadGen result ({after.scenario})",
                "original": before.result,
                "rerun": after.result,
                "ratio": None,
                "ci95": None,
                "note": "the same" if same else "**CHANGED**",
            }
        )
    a, b = scalars(original), scalars(rerun)
    for name, tolerance in SCALAR_TOLERANCE.items():
        if a[name] is None or b[name] is None or a[name] == 0:
            continue
        ratio = b[name] / a[name]
        within = abs(ratio - 1) <= tolerance
        rows.append(
            {
                "metric": name,
                "original": a[name],
                "rerun": b[name],
                "ratio": ratio,
                "ci95": None,
                "note": f"{'within' if within else 'OUTSIDE'} ±{tolerance:.1%} (one value)",
            }
        )
    return rows


def _md_value(value) -> str:
    """A value for the verdict's markdown; text from the original report is escaped."""
    if isinstance(value, float):
        return f"{value:.4g}"
    return "—" if value is None else escape(value)


def machine_lines(host: dict | None) -> list[str]:
    if host is None:
        return ["- machine: the original recorded no machine reference (a report older than it)"]
    lines = [
        f"- machine reference, {machine.REFERENCES[k]}: fastest time "
        f"{d['change']:+.1%} in the rerun (beyond ±{d['threshold']:.0%} counts as a change)"
        for k, d in host["reference"].items()
    ]
    return lines + [f"- machine busy during the rerun: {'yes' if host['busy'] else 'no'}"]


def markdown(result: dict) -> str:
    shift = result["shift"]
    processes = shift["processes"]
    how = (
        f"{shift.get('quantity', STEP_TIME)} ({processes[0]} original, {processes[1]} rerun) "
        "decides: "
        + (
            f"ratio of geometric means {shift['ratio']:.3f}"
            if shift["ratio"] is not None
            else "no ratio, as one run has no time to target"
        )
    )
    if shift["ci90"]:
        how += (
            f", 90% CI {shift['ci90'][0]:.3f}–{shift['ci90'][1]:.3f} (the equivalence test at "
            f"±{result['tolerance']:.0%}), 95% CI {shift['ci95'][0]:.3f}–{shift['ci95'][1]:.3f}, "
            f"each run's centre taken to move ±{shift['run_noise']:.0%} between runs beyond its "
            'processes\' spread (README, "How a rerun is judged")'
        )
    lines = [
        f"**Verdict: {_md_value(result['verdict'])}**",
        "",
        f"Rerun of `{result['original_run']}`. How: {how}.",
        "",
        *machine_lines(result["machine"]),
        *([f"- **{escape(shift['loadgen_change'])}**"] if shift.get("loadgen_change") else []),
        "",
        "For reading (not deciding):",
        "",
        "| metric | original | rerun | ratio | 95% CI | note |",
        "|---|---|---|---|---|---|",
    ]
    for r in result["metrics"]:
        ci = f"{r['ci95'][0]:.3f}–{r['ci95'][1]:.3f}" if r["ci95"] else "—"
        lines.append(
            f"| {escape(r['metric'])} | {_md_value(r['original'])} | {_md_value(r['rerun'])} | "
            + (f"{r['ratio']:.3f}" if r["ratio"] is not None else "—")
            + f" | {ci} | {r['note']} |"
        )
    lines += ["", "**Environment differences** (original → rerun)", ""]
    for group, diffs in result["environment"].items():
        if not diffs:
            lines.append(f"- {group}: identical")
        elif group == "packages":
            shown = [
                f"{_md_value(k)} {_md_value(a)} → {_md_value(b)}" for k, (a, b) in diffs.items()
            ]
            lines.append(f"- {group}: {len(diffs)} differ: " + ", ".join(shown[:20]))
        else:
            shown = [
                f"{_md_value(k)}: {_md_value(a)} → {_md_value(b)}" for k, (a, b) in diffs.items()
            ]
            lines.append(f"- {group}: " + "; ".join(shown))
    for problem in result["original_integrity"]:
        lines.append(f"\n> ⚠ the original report fails verification: {_md_value(problem)}")
    return "\n".join(lines)


def plot(original: Measured, rerun: Measured) -> None:
    import matplotlib.pyplot as plt
    import seaborn as sns

    fig, ax = plt.subplots(figsize=(7, 3.2))
    for label, m in (("original", original), ("rerun", rerun)):
        sns.ecdfplot(x=np.asarray(m.samples["step_s"]) * 1e3, ax=ax, label=label)
    ax.set(xlabel="time per measured step (ms)", ylabel="fraction of steps")
    ax.set_title("Step times, original vs rerun")
    ax.legend()
    show_figure(
        fig,
        "rerun_step_times",
        "Empirical CDF of the measured step times (ms) of the original run and of the rerun "
        f"({len(original.samples['step_s'])} and {len(rerun.samples['step_s'])} steps).",
    )


def show(metrics: dict, environment: dict, original_dir: str | Path = "original") -> dict:
    """Compare this run (its published metrics and environment) with the original in
    `original_dir`, whose records `repro rerun` put there; show and record the verdict."""
    folder = Path(original_dir)
    original_metrics = records.Metrics.from_json(
        records.read(folder / "metrics.json"), f"{folder}/metrics.json"
    )
    original, rerun = record(original_metrics), published(metrics)
    before = records.Environment.from_json(
        records.read(folder / "environment.json"), f"{folder}/environment.json"
    )
    after = records.Environment.from_json(environment, "this run's environment")
    settings = json.loads((folder / "verdict.json").read_text())
    decided = decide(original, rerun, settings["tolerance"])
    result = {
        "original_run": original_metrics.run_id,
        "tolerance": settings["tolerance"],
        "verdict": decided["words"],
        "class": decided["class"],
        "shift": decided["shift"],
        "machine": decided["machine"],
        "metrics": metric_ratios(original, rerun),
        "environment": records.environment_differences(before, after),
        "original_integrity": json.loads((folder / "integrity.json").read_text()),
    }
    shown = publish("rerun", result, markdown(result))
    plot(original, rerun)
    return shown
