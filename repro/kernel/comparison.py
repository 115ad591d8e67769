"""What a comparison report shows (in-kernel side, in the analysis kernel).

`templates/compare.ipynb` calls these on run folders: the context check, the side-by-side table,
each run against the baseline (repro.stats.versus: from process-level values where both runs
measured several processes, else from one process's steps), data-parallel scaling efficiency
where a run's one-device twin is among the runs (repro.stats.efficiency), and seaborn
plots. Each result is displayed once, readable and machine-readable (`repro.kernel.report.publish`);
plots are tagged PNGs, so `repro.driver.compare` finds them in the executed notebook.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from repro import records, stats
from repro.kernel import models
from repro.kernel.report import publish, show_figure
from repro.markdown import escape

pd.set_option("display.max_colwidth", None)  # a run's headline, whole, in the side-by-side table


def load(folders: list[str]) -> list[records.Run]:
    return [records.load(f) for f in folders]


def context(runs: list[records.Run], allow_mixed: bool) -> dict:
    """Flag every checked context field that differs; say plainly when nothing does."""
    differences = records.context_differences(runs)
    if differences:
        lines = [
            "> ⚠ **These runs' context differs**: their numbers are not like for like."
            + (" They are compared because `--allow-mixed` was given." if allow_mixed else ""),
            "",
            "| context | " + " | ".join(escape(r.label) for r in runs) + " |",
            "|---|" + "---|" * len(runs),
        ]
        lines += [
            f"| {field} | " + " | ".join(escape(v) for v in values) + " |"
            for field, values in differences.items()
        ]
    else:
        c = runs[0].context()
        lines = [
            f"✓ All {len(runs)} runs share their checked context: CPU {escape(c['cpu'])}, GPU "
            f"{escape(', '.join(c['gpu'] or ['none']))}, driver {escape(c['driver'])}, precision "
            f"{escape(c['precision'])}, mode {escape(c['mode'])}, batch size "
            f"{escape(c['batch_size'])}, workload {escape(c['workload'])} and its "
            "model config, and the lock within each kernel."
        ]
    busy = [r.label for r in runs if r.summary.busy]
    if busy:
        lines = [
            f"> ⚠ **{len(busy)} of these {len(runs)} runs were measured on a busy machine** "
            f"({escape(', '.join(busy))}): their figures are likely below the machine's normal, "
            "so no verdict involving them is judged. Rerun them on a quiet machine ("
            "their busy warnings say what to change).",
            "",
            *lines,
        ]
    same = models.same_outputs([(r.metrics.model or {}).get("saved") for r in runs])
    if same:
        lines += ["", models.said(same)]
    data = {"differences": differences, "busy": busy, "same_model": same}
    return publish("context", data, "\n".join(lines))


def metric_rows(run: records.Run) -> dict:
    """The headline figures of one run, as numbers (None where not measured)."""
    s, head = run.summary, run.headline
    lat, thr, mem = s.latency_ms, s.throughput, s.memory
    return {
        "headline": head.quote(),
        "throughput (samples/s)": head.samples_per_s,
        "throughput 95% CI": head.samples_per_s_ci95,
        "processes": head.processes,
        "tokens/s": thr.get("tokens_per_s"),
        "median step (ms)": head.step_ms,
        "median 95% CI (ms)": head.step_ms_ci95,
        "p90 / p99 step (ms)": f"{stats.figure(lat['p90'])} / {stats.figure(lat['p99'])}"
        if "p90" in lat and "p99" in lat
        else None,
        "CV of step time": lat.get("cv"),
        **generation_rows(s.generation),
        "measured steps": lat.get("n"),
        "first call (s)": s.first_call_s,
        "achieved TFLOP/s": s.compute.get("achieved_tflops"),
        "MFU": s.mfu,
        "peak host RSS (MiB)": (mem.get("host_peak_rss_bytes") or 0) / 2**20 or None,
        "peak device memory (MiB)": (mem.get("device_peak_bytes") or 0) / 2**20 or None,
        "GPU energy (J / 1,000 samples)": s.gpu_joules_per_1000_samples,
        "energy estimate (kWh / 1,000 samples)": s.kwh_per_1000_samples,
        "energy method": s.energy_method,
    }


def generation_rows(figures) -> dict:
    """mode=generate's latencies (None for the other modes): a step is one request."""

    def p50_p99(key: str) -> str | None:
        d = records.section(figures, key)
        return f"{d['p50']:.3f} / {d['p99']:.3f}" if "p50" in d and "p99" in d else None

    return {
        "time to first token p50 / p99 (ms)": p50_p99("ttft_ms"),
        "time per output token p50 / p99 (ms)": p50_p99("tpot_ms"),
    }


def side_by_side(runs: list[records.Run]) -> pd.DataFrame:
    """Every headline metric per run, then the settings and environment facts that differ."""
    table = pd.DataFrame({r.label: metric_rows(r) for r in runs})
    settings = {r.label: {**r.metrics.params, "kernel": r.metrics.kernel} for r in runs}
    for r in runs:
        for group, facts in r.environment.facts().items():
            if group != "packages":
                settings[r.label].update({f"{group}: {k}": v for k, v in facts.items()})
        settings[r.label]["framework version"] = r.environment.framework.get("version")
    frame = pd.DataFrame(settings).astype(str)
    differing = frame[frame.nunique(axis=1) > 1]
    if differing.empty:
        differing = pd.DataFrame(
            {r.label: ["(none)"] for r in runs}, index=["settings that differ"]
        )
    return pd.concat([table.map(readable), differing], keys=["metric", "setting"])


def readable(value) -> str:
    """Four significant digits for numbers, a dash for what was not measured."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "—"
    if isinstance(value, tuple):
        return stats.bounds(value)
    return stats.figure(value) if isinstance(value, float) else str(value)


def against_baseline(runs: list[records.Run]) -> dict:
    """Each run against the first: step-time ratio, 95% CI, p-value, verdict, and its basis."""
    base = runs[0]
    pairs = [records.judge(base, r) for r in runs[1:]]
    lines = [
        f"Baseline: **{escape(base.label)}**. Ratio = median step time of the run / of the "
        f"baseline (> 1 is slower), at α = {stats.ALPHA}. Where both runs measured several "
        "processes (`repeats`), from each process's median step time (ratio of geometric means, "
        "Welch's t on logs): the noise a new process brings is in the CI. Otherwise from the "
        "steps of one process each (bootstrap CI resampling both runs' steps, two-sided "
        "Mann-Whitney U), which leaves that noise out: read small differences with care.",
        "",
        "| run | step-time ratio | 95% CI | p-value | verdict | from |",
        "|---|---|---|---|---|---|",
    ]
    for run, p in zip(runs[1:], pairs, strict=True):
        ci = p["ci95"]
        ratio, bounds = (
            (stats.figure(p["time_ratio"], ci), stats.bounds(ci)) if p["judged"] else ("—", "—")
        )
        lines.append(
            f"| {escape(run.label)} | {ratio} | {bounds} | {p['p_value']:.3g} | "
            f"**{escape(p['verdict'])}** | {p['basis']} |"
        )
    data = {
        "baseline": base.name,
        "runs": [{"name": r.name, "label": r.label, "folder": str(r.folder)} for r in runs],
        "pairs": pairs,
        "summaries": {r.name: metric_rows(r) for r in runs},
    }
    return publish("comparison", data, "\n".join(lines))


def scaling(runs: list[records.Run]) -> dict:
    """Scaling efficiency E(N) of each data-parallel run whose one-device twin (the same settings
    with devices=1: its per-device batch under weak scaling, its global batch under strong) is
    among the runs (records.twins, repro.stats.efficiency)."""
    pairs = records.twins(runs)
    if not pairs:
        return publish(
            "scaling",
            {"pairs": []},
            "No data-parallel run here has its one-device twin (the same settings with "
            "`devices=1`) among the runs: no scaling efficiency to give.",
        )
    lines = [
        "E(N) = throughput_N / (N × throughput_1), 1 is perfect, for the statistic each "
        "throughput comes from, with its 95% CI. Weak scaling: each device takes the one-device "
        "run's batch, so E(N) = step time_1 / step time_N. Strong scaling: the N devices split "
        "the one-device run's batch, so E(N) = step time_1 / (N × step time_N).",
        "",
        "| run | devices | scaling | batch per device / global | one-device twin | E(N) | "
        "95% CI | from |",
        "|---|---|---|---|---|---|---|---|",
    ]
    data = []
    for one, many in pairs:
        shared = many.devices if many.scaling == "strong" else 1  # devices sharing one batch
        e = stats.efficiency(one.samples, many.samples, shared=shared)
        total = one.metrics.params["batch_size"] * many.devices // shared
        per_device = total // many.devices
        data.append(
            {
                "run": many.name,
                "twin": one.name,
                "devices": many.devices,
                "scaling": many.scaling,
                "per_device_batch": per_device,
                "global_batch": total,
                **e,
            }
        )
        lines.append(
            f"| {escape(many.label)} | {many.devices} | {many.scaling} | {per_device} / {total} | "
            f"{escape(one.label)} | {e['efficiency']:.3f} | "
            f"{e['ci95'][0]:.3f}–{e['ci95'][1]:.3f} | {e['basis']} |"
        )
    if any(not many.environment.gpu_names for _, many in pairs):
        lines += [
            "",
            "CPU devices share this machine's cores: their E(N) tests correctness, "
            "not how a framework scales.",
        ]
    return publish("scaling", {"pairs": data}, "\n".join(lines))


def plot_throughput(runs: list[records.Run]) -> None:
    import matplotlib.pyplot as plt
    import seaborn as sns

    frame = pd.DataFrame(
        {
            "run": r.label,
            "framework": r.metrics.framework,
            "samples/s": r.headline.samples_per_s,
            "ci": r.headline.samples_per_s_ci95 or [np.nan, np.nan],
        }
        for r in runs
    )
    fig, ax = plt.subplots(figsize=(max(5, 1.4 * len(runs)), 3.6))
    sns.barplot(data=frame, x="run", y="samples/s", hue="framework", ax=ax, dodge=False)
    low = frame["samples/s"] - frame["ci"].str[0]
    high = frame["ci"].str[1] - frame["samples/s"]
    ax.errorbar(
        range(len(frame)), frame["samples/s"], yerr=[low, high], fmt="none", ecolor="k", capsize=4
    )
    wide = spans(frame["samples/s"])
    if wide:  # a run 100x smaller stays visible
        ax.set_yscale("log")
    ax.set(xlabel="", ylabel="throughput (samples/s)", title="Throughput with its 95% CI")
    slant(ax)
    show_figure(
        fig,
        "throughput",
        f"Bar chart of the throughput (samples/s) of each of the {len(runs)} runs, coloured by "
        "framework, with 95% CI error bars"
        + (", on a log scale: " if wide else ": ")
        + ", ".join(
            f"{run} {value:.1f}"
            for run, value in zip(frame["run"], frame["samples/s"], strict=True)
        ),
    )


def plot_latency(runs: list[records.Run]) -> None:
    import matplotlib.pyplot as plt
    import seaborn as sns

    frame = pd.DataFrame(
        [{"run": r.label, "ms": 1e3 * s} for r in runs for s in r.step_s],
    )
    wide = spans(frame["ms"])  # log axis: every run readable
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.8))
    sns.ecdfplot(data=frame, x="ms", hue="run", ax=left, log_scale=wide)
    left.set(xlabel="time per measured step (ms)", title="Latency ECDF")
    sns.violinplot(
        data=frame, x="run", y="ms", hue="run", ax=right, cut=0, inner="quart", log_scale=wide
    )
    right.set(xlabel="", ylabel="time per measured step (ms)", title="Latency distribution")
    slant(right)
    show_figure(
        fig,
        "latency",
        f"Empirical CDF (left) and violin plot (right) of the measured step times (ms) of each "
        f"of the {len(runs)} runs" + (", on a log scale." if wide else "."),
    )


def spans(values) -> bool:
    """Whether values span more than 10x: then a log scale, so the smallest stays readable."""
    values = np.asarray(values, float)
    return bool(len(values) and values.min() > 0 and values.max() / values.min() > 10)


def slant(ax) -> None:
    """Long run labels, readable: slanted and anchored at their tick."""
    for label in ax.get_xticklabels():
        label.set(rotation=20, horizontalalignment="right")


def heatmap_columns(frame: pd.DataFrame) -> list[str]:
    """The settings that vary within a framework (a sweep's axes other than framework), in
    frame order; none: workload. A setting tied to the framework (compile: eager vs jit) is
    not a column of its own."""
    within = frame.drop(columns=["samples/s"]).groupby("framework").nunique().max()
    return [c for c in within.index if within[c] > 1] or ["workload"]


def plot_heatmap(runs: list[records.Run]) -> str:
    """Median throughput, framework × the settings that vary (workload, batch size, precision,
    compile mode, ...: a sweep's axes)."""
    import matplotlib.pyplot as plt
    import seaborn as sns
    from IPython.display import Markdown, display

    frame = pd.DataFrame(
        {
            "framework": r.metrics.framework,
            "workload": r.metrics.workload,
            **{
                name.replace("_", " "): str(value)
                for name, value in r.metrics.params.items()
                if name not in records.UNMEASURED
            },
            "samples/s": r.headline.samples_per_s,
        }
        for r in runs
    ).fillna("not recorded")  # a parameter newer than some of the runs
    varying = heatmap_columns(frame)
    columns = ", ".join(varying)
    frame[columns] = frame[varying].apply(lambda row: ", ".join(row), axis=1)
    grid = frame.pivot_table(
        index="framework", columns=columns, values="samples/s", aggfunc="median", sort=False
    )
    fig, ax = plt.subplots(figsize=(max(4, 1.6 * grid.shape[1] + 2), 0.8 * grid.shape[0] + 1.8))
    from matplotlib.colors import LogNorm

    norm = LogNorm() if spans(grid.stack()) else None  # colours that tell 10 from 1,000
    labels = grid.map(lambda v: stats.figure(v, digits=3) if v == v else "")
    sns.heatmap(
        grid,
        annot=labels,
        fmt="",
        cmap="viridis",
        norm=norm,
        ax=ax,
        cbar_kws={"label": "samples/s"},
    )
    ax.set_title(f"Median throughput (samples/s): framework × {columns}")
    slant(ax)
    display(Markdown(f"Columns: **{escape(columns)}** ({grid.shape[1]} values, {len(runs)} runs)."))
    show_figure(
        fig,
        "heatmap",
        f"Heatmap of the median throughput (samples/s), framework by {columns}, each cell "
        "annotated with its value.",
    )
    return columns


RADAR = {  # axis: (value of a run's metric_rows, True when larger is better)
    "throughput": ("throughput (samples/s)", True),
    "latency": ("median step (ms)", False),
    "memory": ("peak host RSS (MiB)", False),
    "energy": ("energy estimate (kWh / 1,000 samples)", False),
    "MFU": ("MFU", True),
}


def radar_scores(runs: list[records.Run]) -> dict[str, dict[str, float | None]]:
    """Each run's score per axis, 1 = best of these runs; None where a run has no value."""
    rows = {r.label: metric_rows(r) for r in runs}
    scores: dict[str, dict[str, float | None]] = {label: {} for label in rows}
    for axis, (key, larger_is_better) in RADAR.items():
        values = {label: row[key] for label, row in rows.items() if row[key]}
        best = (max if larger_is_better else min)(values.values()) if values else None
        for label in rows:
            value = values.get(label)
            scores[label][axis] = (
                None if value is None else value / best if larger_is_better else best / value
            )
    return scores


def plot_radar(runs: list[records.Run]) -> dict:
    """Throughput, latency, memory, energy and MFU on one chart, each scaled so the best run is
    1; an axis no run measured (MFU on a CPU) is marked n/a and drawn at 0."""
    import matplotlib.pyplot as plt

    scores = radar_scores(runs)
    axes = list(RADAR)
    measured = {a: any(s[a] is not None for s in scores.values()) for a in axes}
    angles = np.linspace(0, 2 * np.pi, len(axes), endpoint=False).tolist()
    fig, ax = plt.subplots(figsize=(5.5, 5.5), subplot_kw={"polar": True})
    for label, score in scores.items():
        values = [score[a] or 0.0 for a in axes]
        ax.plot(angles + angles[:1], values + values[:1], label=label)
        ax.fill(angles + angles[:1], values + values[:1], alpha=0.1)
    ax.set_xticks(angles)
    ax.set_xticklabels([a if measured[a] else f"{a}\n(n/a)" for a in axes])
    ax.set_ylim(0, 1.05)
    ax.set_title("Relative to the best run (1 = best; lower latency, memory, energy score higher)")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.08), fontsize=8)
    show_figure(
        fig,
        "radar",
        f"Radar chart of the {len(runs)} runs on {', '.join(axes)}, each axis scaled so the best "
        "run scores 1" + "".join(f"; {a}: n/a" for a in axes if not measured[a]) + ".",
    )
    return scores
