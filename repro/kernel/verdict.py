"""The rerun verdict: did this run reproduce the report it reran? (in-kernel side)

`repro rerun` puts the original's metrics.json and environment.json, and the verdict's settings
(verdict.json), in the new run folder's `original/`, and appends a cell calling `show()`.

What decides is the median step time per process (repro.stats): an equivalence test at the
stated tolerance gives *reproduced within ±X%*, *changed by Y% [CI]* or *inconclusive* (with the
processes that would likely decide). Before that, the machine: if the rerun's machine reference
(repro.kernel.machine) ran faster or slower than the original's beyond its noise, or the rerun was
measured on a busy machine, the verdict says *machine changed* first, and whether the workload's
shift lies within the machine's. The other rows (step-time statistics of the kernel's process
with a bootstrap CI, compile time, memory, energy, loss) are shown for reading, not deciding.
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
}
SAMPLED = {  # name: the statistic of a run's step times (seconds) and batch size
    "median step time (ms)": lambda x, batch: 1e3 * np.median(x),
    "p90 step time (ms)": lambda x, batch: 1e3 * np.percentile(x, 90),
    "throughput (samples/s)": lambda x, batch: batch * len(x) / np.sum(x),
}
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


def decide(original: Measured, rerun: Measured, tolerance: float) -> dict:
    """The verdict's class and words: the machine first, then the workload (repro.stats)."""
    shift = stats.shift(stats.medians(original.samples), stats.medians(rerun.samples), tolerance)
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
    beyond = abs(math.log(shift["ratio"])) > biggest + math.log1p(tolerance)
    words += (
        f". The workload's shift ({shift['ratio'] - 1:+.1%}) is "
        + ("larger than that: " + shift["words"] if beyond else "within that")
        if host["moved"]
        else f". The workload: {shift['words']}"
    )
    return {"class": "machine changed", "words": words, "shift": shift, "machine": host}


def scalars(run: Measured) -> dict:
    summary = run.summary
    return {
        "first call: compile / cold start (s)": run.samples["first_call_s"],
        "peak host RSS (bytes)": summary.memory.get("host_peak_rss_bytes"),
        "peak device memory (bytes)": summary.memory.get("device_peak_bytes"),
        "energy (kWh per 1,000 samples)": summary.kwh_per_1000_samples,
        "final training loss": summary.loss.get("last"),
    }


def metric_ratios(original: Measured, rerun: Measured, seed: int = 0) -> list[dict]:
    """Per metric, for reading: original, rerun, ratio rerun/original, and for step-time
    statistics a bootstrap 95% CI over the steps of the kernel's process (within-process noise
    only: a new process shifts more, which is why these rows do not decide)."""
    before, after = original.samples["step_s"], rerun.samples["step_s"]
    batch = rerun.samples["batch_size"]  # a rerun keeps the original's parameters
    rows = []
    for name, of in SAMPLED.items():
        statistic = lambda x, of=of: of(x, batch)  # noqa: E731 (binds this metric's function)
        ratio, low, high = stats.ratio_ci(after, before, statistic, seed=seed)
        rows.append(
            {
                "metric": name,
                "original": float(statistic(np.asarray(before))),
                "rerun": float(statistic(np.asarray(after))),
                "ratio": ratio,
                "ci95": [low, high],
                "note": "steps of one process",
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
        f"the median step time of each process ({processes[0]} original, {processes[1]} rerun) "
        f"decides: ratio of geometric means {shift['ratio']:.3f}"
    )
    if shift["ci90"]:
        how += (
            f", 90% CI {shift['ci90'][0]:.3f}–{shift['ci90'][1]:.3f} (the equivalence test at "
            f"±{result['tolerance']:.0%}), 95% CI {shift['ci95'][0]:.3f}–{shift['ci95'][1]:.3f}"
        )
    lines = [
        f"**Verdict: {_md_value(result['verdict'])}**",
        "",
        f"Rerun of `{result['original_run']}`. How: {how}.",
        "",
        *machine_lines(result["machine"]),
        "",
        "For reading (not deciding):",
        "",
        "| metric | original | rerun | ratio | 95% CI | note |",
        "|---|---|---|---|---|---|",
    ]
    for r in result["metrics"]:
        ci = f"{r['ci95'][0]:.3f}–{r['ci95'][1]:.3f}" if r["ci95"] else "—"
        lines.append(
            f"| {r['metric']} | {_md_value(r['original'])} | {_md_value(r['rerun'])} | "
            f"{r['ratio']:.3f} | {ci} | {r['note']} |"
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
        lines.append(f"\n> ⚠️ the original report fails verification: {_md_value(problem)}")
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
