"""What a comparison shows of the benchmark suites' own figures (in-kernel side, in the analysis
kernel): DAWNBench's time to accuracy (mode=train-to-accuracy, records.TimeToAccuracy) and MLPerf
LoadGen's scenarios (scenario=..., records.Scenario).

`templates/compare.ipynb` calls `time_to_accuracy` and `loadgen` on every comparison; each shows
its section only where some of the runs have its record, and nothing otherwise. The rows, the
ratios and the curves need no pandas or matplotlib, so they are tested without a kernel.
"""

from __future__ import annotations

from collections import Counter

from repro import records, stats
from repro.kernel.loadgen import SUBMISSION_MS
from repro.kernel.report import publish, show_figure
from repro.markdown import escape

Entry = tuple[records.Run, records.TimeToAccuracy]
NOT_REACHED = "not reached"


def with_accuracy(runs: list[records.Run]) -> list[Entry]:
    """The runs that have a time to accuracy, in their order, each with it."""
    return [(r, r.summary.time_to_accuracy) for r in runs if r.summary.time_to_accuracy]


def outcome(t: records.TimeToAccuracy) -> str:
    """Reached or not, by how many processes, and which cap stopped the others."""
    n, caps = t.processes, Counter(t.caps)
    stopped = "stopped by " + (
        ", ".join(f"{cap}" + (f" ×{k}" if k > 1 else "") for cap, k in caps.items())
        if caps
        else "a cap"  # a record from before each process's was kept
    )
    if not t.reached_by:
        return f"**NOT reached**: {stopped} ({n} process(es)), best {t.best_accuracy:.1%}"
    if t.reached_by < n:
        return f"{t.reached_by} of {n} processes reached it; {stopped}"
    return f"reached by {n} of {n} process(es)"


def cost(t: records.TimeToAccuracy) -> str:
    if not t.reached:
        return NOT_REACHED
    if t.cost is None:
        return "no price_per_hour"
    return f"{t.cost:.4g} (at {t.price_per_hour:g}/hour)"


def energy(t: records.TimeToAccuracy) -> str:
    if not t.reached:
        return NOT_REACHED
    parts = [f"{t.energy_kwh:.3g} kWh ({t.energy_status})"] if t.energy_kwh is not None else []
    parts += [f"GPU {t.gpu_joules:,.0f} J"] if t.gpu_joules is not None else []
    return ", ".join(parts) or f"unavailable ({t.energy_status or 'not recorded'})"


def accuracy_row(run: records.Run, t: records.TimeToAccuracy) -> dict[str, str]:
    """One run's time to accuracy as table cells: a run that did not reach the target says so
    where its time would be."""
    reached, p = t.reached_by > 0, run.metrics.params
    return {
        "run": run.label,
        "framework": run.metrics.framework,
        "compile": str(p.get("compile")),
        "workload": run.metrics.workload,
        "target": f"{t.target:.1%}",
        "result": outcome(t),
        "median time to target (s)": f"{t.median_s:.2f}" if reached else NOT_REACHED,
        "range (s)": f"{t.min_s:.2f}–{t.max_s:.2f}" if t.reached_by > 1 else "—",
        "CV": f"{t.cv:.1%}" if t.cv is not None else "—",
        "median steps": f"{t.median_steps:,.0f}" if reached else NOT_REACHED,
        "cost to target (first process)": cost(t),
        "energy to target (first process)": energy(t),
    }


def accuracy_ratios(entries: list[Entry]) -> list[dict]:
    """Each run's median time to target over the baseline's (the first entry; > 1: slower),
    with the 95% CI of the ratio of geometric means (Welch on log times, repro.stats.shift)
    where both have two processes or more that reached it; None where either did not."""
    (base_run, base), *rest = entries
    pairs = []
    for run, t in rest:
        pair = {"base": base_run.name, "new": run.name, "ratio": None, "ci95": None}
        if base.reached_by and t.reached_by:
            pair["ratio"] = t.median_s / base.median_s
            pair["ci95"] = stats.shift(list(base.times_s), list(t.times_s))["ci95"]
        pairs.append(pair)
    return pairs


def ratio_cells(pair: dict, base: records.TimeToAccuracy) -> list[str]:
    if pair["ratio"] is None:
        return ["baseline not reached" if not base.reached_by else NOT_REACHED, "—", "—"]
    ci = pair["ci95"]
    if ci is None:
        return [f"{pair['ratio']:.3f}", "— (needs 2+ processes that reached it, each)", "—"]
    reads = "slower" if ci[0] > 1 else "faster" if ci[1] < 1 else "no clear difference"
    return [f"{pair['ratio']:.3f}", f"{ci[0]:.3f}–{ci[1]:.3f}", reads]


def markdown_table(header: list[str], rows: list[list[str]]) -> list[str]:
    """Markdown table lines, every cell escaped."""
    lines = ["| " + " | ".join(map(escape, header)) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(map(escape, r)) + " |" for r in rows]


def accuracy_curves(entries: list[Entry]) -> list[dict]:
    """What the plot draws per run: its colour (C0, C1, ...), target and every process's
    held-out accuracy against seconds since its first step."""
    return [
        {
            "label": run.label,
            "colour": f"C{i % 10}",
            "target": t.target,
            "median_s": t.median_s if t.reached_by else None,
            "curves": [([p["seconds"] for p in c], [p["accuracy"] for p in c]) for c in t.curves],
        }
        for i, (run, t) in enumerate(entries)
    ]


def time_to_accuracy(runs: list[records.Run]) -> dict | None:
    """The time-to-accuracy section, where some runs have one: a row per run, each against the
    first of them, and their accuracy curves; None (nothing shown) where none has."""
    entries = with_accuracy(runs)
    if not entries:
        return None
    rows = [accuracy_row(r, t) for r, t in entries]
    base_run, base = entries[0]
    pairs = accuracy_ratios(entries)
    lines = [
        "## Time to accuracy",
        "",
        "DAWNBench's metric (`mode=train-to-accuracy`): the wall time from the first training "
        "step to the evaluation that reached the target held-out accuracy, compilation and "
        "evaluations included. Median, range and CV over the processes (`repeats`) that "
        "reached it; cost and energy are the first process's, to its target. A run whose "
        "processes all stopped at a cap (`max_steps`, `max_seconds`) has no time to target.",
        "",
        *markdown_table(list(rows[0]), [list(r.values()) for r in rows]),
    ]
    if pairs:
        lines += [
            "",
            f"Against the baseline **{escape(base_run.label)}**: ratio = median time to target "
            "of the run / of the baseline (> 1 is slower); its 95% CI is that of the ratio of "
            "geometric means (Welch's t on log times) over the processes that reached it.",
            "",
            *markdown_table(
                ["run", "time-to-target ratio", "95% CI", "reads"],
                [
                    [run.label, *ratio_cells(pair, base)]
                    for (run, _), pair in zip(entries[1:], pairs, strict=True)
                ],
            ),
        ]
    data = {"baseline": base_run.name, "runs": [r.name for r, _ in entries], "rows": rows}
    published = publish("time_to_accuracy", {**data, "pairs": pairs}, "\n".join(lines))
    plot_accuracy(accuracy_curves(entries))
    return published


def plot_accuracy(series: list[dict]) -> None:
    """Held-out accuracy against wall time: one colour per run, one line per process (the
    first solid, the others fainter, an x where a cap stopped one), a dashed line at each
    target."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.2))
    for s in series:
        when = f"median {s['median_s']:.1f} s" if s["median_s"] is not None else NOT_REACHED
        for i, (seconds, accuracy) in enumerate(s["curves"]):
            ax.plot(
                seconds,
                accuracy,
                marker=".",
                color=s["colour"],
                alpha=1.0 if i == 0 else 0.45,
                label=f"{s['label']} ({when})" if i == 0 else None,
            )
            if accuracy[-1] < s["target"]:  # stopped at a cap
                ax.plot(seconds[-1], accuracy[-1], marker="x", markersize=9, color=s["colour"])
    for target in sorted({s["target"] for s in series}):
        ax.axhline(target, color="k", linestyle="--", linewidth=1)
        ax.annotate(f"target {target:.0%}", (0, target), xytext=(2, 3), textcoords="offset points")
    ax.set(
        title="Held-out accuracy against wall time (one colour per run, a line per process)",
        xlabel="seconds since the first training step",
        ylabel="held-out accuracy",
        ylim=(0, 1.02),
    )
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), fontsize=8)
    show_figure(
        fig,
        "accuracy",
        f"Held-out accuracy against seconds since the first training step for {len(series)} "
        "runs, one colour each, with dashed target lines: "
        + "; ".join(
            f"{s['label']} "
            + (f"median {s['median_s']:.1f} s" if s["median_s"] is not None else NOT_REACHED)
            for s in series
        ),
    )


def loadgen_row(run: records.Run, s: records.Scenario) -> dict[str, str]:
    """One run's LoadGen result: its verdict and its headline figure (a latency percentile for
    single-stream, samples/s otherwise) beside repro's own of the same kind."""
    latency, batch = run.summary.latency_ms, run.metrics.params["batch_size"]
    q = s.percentile
    if q:
        figure = f"{q} latency {s.metric['value'] / 1e6:.3f} ms"
        own = f"{q} step {latency[q]:.3f} ms" if q in latency else f"no {q} kept"
    else:
        figure = f"{s.metric['value']:,.2f} samples/s"
        own = run.headline.quote()
    p99 = s.latency_ns.get("p99")
    timed = (
        f"one query of {s.samples_per_query or 'many'} samples, in batches of "
        f"{s.settings.get('batch_size')}"
        if s.scenario == "offline"
        else "queries of 1 sample"
    )
    return {
        "run": run.label,
        "scenario": s.scenario,
        "LoadGen result": f"**{s.result}**"
        + (f" (not satisfied: {', '.join(s.failed)})" if s.failed else ""),
        "LoadGen figure": figure,
        "repro figure": own,
        "p99 latency LoadGen / repro (ms)": (f"{p99 / 1e6:.3f}" if p99 is not None else "—")
        + f" / {latency['p99']:.3f}",
        "what is timed (LoadGen; repro)": f"{timed}; steps of {batch} samples",
        "min_duration_ms": f"{s.settings.get('min_duration_ms'):,}",
    }


def loadgen(runs: list[records.Run]) -> dict | None:
    """The LoadGen section, where some runs ran a scenario: a row per run; None (nothing
    shown) where none did."""
    entries = [(r, r.summary.loadgen) for r in runs if r.summary.loadgen]
    if not entries:
        return None
    rows = [loadgen_row(r, s) for r, s in entries]
    short = sum(s.settings.get("min_duration_ms", 0) < SUBMISSION_MS for _, s in entries)
    lines = [
        "## MLPerf LoadGen scenarios",
        "",
        "LoadGen's own verdict (VALID or INVALID, by its scenario's rules) and headline figure, "
        "beside repro's figure of the same kind from its protocol's steps: they time different "
        "work (the last column), so read them side by side, not as one number.",
        "",
        *markdown_table(list(rows[0]), [list(r.values()) for r in rows]),
    ]
    if short:
        lines += [
            "",
            f"> ⚠ {short} of these {len(rows)} ran for less than an MLPerf submission's "
            f"min_duration_ms ({SUBMISSION_MS:,}), without its checker and audits: LoadGen's "
            "measurement of the model, not MLPerf results.",
        ]
    data = {"runs": [r.name for r, _ in entries], "rows": rows}
    return publish("loadgen", data, "\n".join(lines))
