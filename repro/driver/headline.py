"""The cell that heads a report: its result, status, warnings, what was measured and where, one
line each (driver side). `finalize` writes it from the finished metrics.json and
environment.json, after the banner and before the template's cells, so the first figures a
reader sees are this run's, not the template's default parameters."""

from __future__ import annotations

from collections.abc import Mapping

from repro.kernel.capture import gpu_names
from repro.markdown import escape
from repro.records import Environment, Metrics, Summary, TimeToAccuracy, section
from repro.stats import Headline, bounds, figure


def step_time(head: Headline) -> str:
    """The headline's median step time with its CI, and what the CI covers."""
    ci = head.step_ms_ci95
    interval = f"95% CI {bounds(ci)} ms" if ci else "no CI"
    return f"median step time **{figure(head.step_ms, ci)} ms** ({interval}; {head.basis})"


def time_to_accuracy(record: TimeToAccuracy) -> str:
    """mode=train-to-accuracy's result: the time to the target over the processes, or that the
    cap came first."""
    n, target = record.processes, record.target
    if not record.reached_by:
        return (
            f"target {target:.1%} held-out accuracy **NOT reached** within the caps "
            f"({n} process(es)); best {record.best_accuracy:.2%}"
        )
    return (
        f"time to {target:.1%} held-out accuracy **{record.median_s:,.2f} s** (median of "
        f"{record.reached_by} of {n} process{'es' if n > 1 else ''} that reached it; range "
        f"{record.min_s:,.2f}–{record.max_s:,.2f} s), {record.median_steps:,.0f} steps"
    )


def result(metrics: Metrics) -> str:
    """The run's headline (Metrics.headline, the figure every view quotes), then its mode's own
    figures and its MFU."""
    summary, head = metrics.step_summary, metrics.headline
    if not summary or not head:
        return (
            "not measured"
            if not metrics.summary
            else ("this template published no step-time summary (see its own cells)")
        )
    parts = [time_to_accuracy(summary.time_to_accuracy)] if summary.time_to_accuracy else []
    parts += [f"**{head.quote()}**", step_time(head)]
    if head.kernel_samples_per_s is not None:
        parts.append(
            f"the notebook kernel's own process, left out: {figure(head.kernel_samples_per_s)} "
            f"samples/s ({head.kernel_samples_per_s / head.samples_per_s:.2f}x)"
        )
    if summary.throughput.get("tokens_per_s"):
        parts.append(f"{figure(summary.throughput['tokens_per_s'])} tokens/s")
    if summary.generation:
        parts = [generation(summary.generation), *parts]
    peak = escape(summary.compute.get("peak_source"))
    mfu = summary.mfu
    parts.append(f"MFU **{mfu:.1%}** of {peak}" if mfu is not None else f"no MFU: {peak}")
    return " · ".join(parts)


def scenario(summary: Summary) -> str:
    """A LoadGen scenario's verdict and figures, one line."""
    s = summary.loadgen
    failed = f" (not satisfied: {', '.join(s.failed)})" if s.failed else ""
    rate = f", {s.samples_per_s:,.1f} samples/s" if s.samples_per_s else ""
    p90 = s.latency_ns.get("p90")
    latency = f", p90 latency {p90 / 1e6:,.2f} ms" if p90 is not None else ""
    a = s.accuracy
    answers = (
        ""
        if a is None
        else f"; accuracy run: {a['agree']} of {a['samples']} answers match the model"
        + ("" if a["passed"] else " (FAILED)")
    )
    return f"{escape(s.scenario)} **{escape(s.result)}**" + escape(
        f"{failed}{rate}{latency}{answers}; min_duration_ms "
        f"{s.settings.get('min_duration_ms')} (an MLPerf run's: 600000): not an MLPerf submission"
    )


def generation(figures) -> str:
    """mode=generate's figures: a step is one request."""
    ttft, tpot, e2e = (section(figures, k) for k in ("ttft_ms", "tpot_ms", "e2e_ms"))
    return (
        f"time to first token p50 **{ttft.get('p50', 0):,.2f} ms**, per output token p50 "
        f"**{tpot.get('p50', 0):,.2f} ms** (p99 {tpot.get('p99', 0):,.2f}), end-to-end per "
        f"request p99 **{e2e.get('p99', 0):,.1f} ms** (a step below is one request)"
    )


def measured(metrics: Metrics) -> str:
    p, summary = metrics.params, metrics.step_summary
    sequence = f" × {p['sequence_length']} tokens" if p.get("sequence_length") else ""
    if p.get("new_tokens"):
        sequence = f" × ({p['prompt_length']}-token prompt → {p['new_tokens']} new tokens)"
    processes = summary.process_count if summary else p.get("repeats")
    warmup = (
        f"warm-up {summary.warmup_steps} steps "
        + ("(settled)" if summary.warmup_steady else f"(not settled: {warmup_cap(p)})")
        if summary and summary.warmup_steps is not None
        else f"warm-up up to {p['warmup']} steps"
    )
    plural = "es" if processes != 1 else ""
    how_long = f"{measured_steps(metrics, processes)}, {warmup}"
    if p["mode"] == "train-to-accuracy":
        how_long = (
            f"to {p['target_accuracy']:.1%} on {p['data']}, caps {p['max_steps']} steps and "
            f"{p['max_seconds']:g} s, × {processes} process{plural}"
        )
    served = (  # an exported runtime serves the model (repro.kernel.runtimes)
        f"exported to {p['runtime']}"
        if p.get("runtime") not in (None, "native")
        else f"compile {p['compile']}"
    )
    return escape(
        f"{metrics.workload} in {metrics.framework}, {p['mode']}, {batch(p)}"
        f"{sequence}, {p['precision']}, {served}, {p['threads']} "
        f"thread{'s' * (p['threads'] != 1)}; {how_long}"
    )


def measured_steps(metrics: Metrics, processes: int | None) -> str:
    """The steps each process measured and how long they took in all (min_time's window), from
    the samples; where they do not hold every process's steps, the steps asked for."""
    p, samples = metrics.params, metrics.samples or {}
    runs = [q.get("step_s") or [] for q in samples.get("processes") or []]
    if not runs and processes == 1:
        runs = [samples.get("step_s") or []]
    plural = "es" if (len(runs) or processes) != 1 else ""
    if not runs or not all(runs):
        return f"{p['steps']} steps × {processes} process{plural}"
    counts, windows = [len(r) for r in runs], [sum(r) for r in runs]
    steps = f"{min(counts):,}" + (f"–{max(counts):,}" if max(counts) > min(counts) else "")
    window = f"{min(windows):.2f}" + (
        f"–{max(windows):.2f}" if f"{max(windows):.2f}" != f"{min(windows):.2f}" else ""
    )
    each = " each" if len(runs) > 1 else ""
    asked = f" (min_time {p['min_time']:g} s)" if p.get("min_time") else ""
    return f"{steps} steps × {len(runs)} process{plural} in {window} s{each}{asked}"


def warmup_cap(p: Mapping) -> str:
    """What bounds warm-up: `warmup` steps, and `warmup_time` seconds where it is set."""
    seconds = p.get("warmup_time")
    return f"cap {p['warmup']} steps" + (f" or {seconds:g} s" if seconds else "")


def batch(p: Mapping) -> str:
    """The batch a run measured: on one device, or spread over several (weak or strong)."""
    devices = p.get("devices") or 1
    if devices == 1:
        return f"batch {p['batch_size']}"
    if p.get("scaling") == "strong":
        return f"a global batch of {p['batch_size']} over {devices} devices (strong scaling)"
    return f"batch {p['batch_size']} on each of {devices} devices (weak scaling)"


def machine(environment: Environment | None, metrics: Metrics) -> str:
    if not environment:
        return "not recorded"
    cpu, system, framework = environment.cpu, environment.system, environment.framework
    lock = "pinned" if metrics.pinned else "unpinned"
    return escape(
        f"{cpu.get('model')} ({cpu.get('logical_cores')} logical cores), "
        f"{environment.memory.get('total_bytes', 0) / 2**30:.1f} GiB, "
        f"GPU {gpu_names(environment.gpu)}; {system.get('os_pretty_name')}, "
        f"Python {section(system, 'python').get('version')}, "
        f"{framework.get('name')} {framework.get('version')}, kernel {metrics.kernel} ({lock})"
    )


def title(metrics: Metrics) -> str:
    """The report's first line: what ran, and its headline or how it ended."""
    what = f"{metrics.workload} in {metrics.framework}"
    head = metrics.headline
    if metrics.status != "ok" or not head:
        return escape(f"{what}: run {metrics.status}" if metrics.status != "ok" else what)
    return escape(f"{what}: {head.quote()}")


def warnings(metrics: Metrics) -> list[str]:
    """Every warning of the run once, in order: why it stopped, then the machine's, then the
    measurement's."""
    summary = metrics.step_summary
    said = [f"Run {metrics.status}: {metrics.error}"] if metrics.error else []
    said += summary.warnings if summary else ()
    return list(dict.fromkeys(said))


def markdown(metrics: Metrics, environment: Environment | None) -> str:
    """The summary cell's markdown: the headline as its title, the warnings in one block, then
    one line each, every value from the run's records."""
    status = metrics.status + (f": {metrics.error}" if metrics.error else "")
    summary = metrics.step_summary
    said = warnings(metrics)
    block = (
        "> **⚠ "
        + (f"{len(said)} warnings" if len(said) > 1 else "Warning")
        + "**\n>\n"
        + "\n".join(f"> - {escape(w)}" for w in said)
        if said
        else "No warnings."
    )
    lines = {
        "Result": result(metrics),
        **({"LoadGen": scenario(summary)} if summary and summary.loadgen else {}),
        "Status": escape(status),
        "Measured": measured(metrics),
        "Environment": machine(environment, metrics),
    }
    table = "\n".join(f"- **{name}**: {text}" for name, text in lines.items())
    return f"# {title(metrics)}\n\n{block}\n\n{table}"
