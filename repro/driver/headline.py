"""The cell that heads a report: its result, status, warnings, what was measured and where, one
line each (driver side). `finalize` writes it from the finished metrics.json and
environment.json, after the banner and before the template's cells, so the first figures a
reader sees are this run's, not the template's default parameters."""

from __future__ import annotations

from collections.abc import Mapping

from repro.kernel.capture import gpu_names
from repro.markdown import escape
from repro.records import Environment, Metrics, Summary, TimeToAccuracy, section


def ci(bounds, unit: str = "") -> str:
    """`95% CI low–high` for a pair of bounds, or `no CI` (fewer than two values, or no spread)."""
    if not bounds:
        return "no CI"
    return f"95% CI {bounds[0]:,.2f}–{bounds[1]:,.2f}{unit}"


def step_time(summary: Summary) -> str:
    """The median step time with the CI between processes, or between one process's steps."""
    spread = summary.processes
    if summary.process_count > 1:
        return (
            f"median step time **{spread['centre_ms']:,.2f} ms** across {spread['n']} processes "
            f"({ci(spread['centre_ci95_ms'], ' ms')})"
        )
    latency = summary.latency_ms
    return (
        f"median step time **{latency['median']:,.2f} ms** "
        f"({ci(latency.get('median_ci95'), ' ms')}, from one process's steps)"
    )


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
    if not metrics.summary:
        return "not measured"
    summary = metrics.step_summary
    if not summary:
        return "this template published no step-time summary (see its own cells)"
    throughput, spread = summary.throughput, summary.processes
    parts = [time_to_accuracy(summary.time_to_accuracy)] if summary.time_to_accuracy else []
    parts += [
        step_time(summary),
        f"throughput **{spread['samples_per_s']:,.1f} samples/s** across the processes "
        f"({ci(spread['samples_per_s_ci95'])})"
        if "samples_per_s" in spread  # a report older than it: the kernel's process only
        else f"throughput **{throughput['samples_per_s']:,.1f} samples/s** "
        f"({ci(throughput.get('ci95'))}, the kernel's process)",
    ]
    if throughput.get("tokens_per_s"):
        parts.append(f"{throughput['tokens_per_s']:,.0f} tokens/s")
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
        + ("(settled)" if summary.warmup_steady else f"(cap {p['warmup']}, not settled)")
        if summary and summary.warmup_steps is not None
        else f"warm-up up to {p['warmup']} steps"
    )
    plural = "es" if processes != 1 else ""
    how_long = f"{p['steps']} steps × {processes} process{plural}, {warmup}"
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
        f"{sequence}, {p['precision']}, {served}, {p['threads']} threads; {how_long}"
    )


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


def markdown(metrics: Metrics, environment: Environment | None) -> str:
    """The summary cell's markdown: one line each, every value from the run's records."""
    status = metrics.status + (f": {metrics.error}" if metrics.error else "")
    summary = metrics.step_summary
    warnings = summary.warnings if summary else ()
    lines = {
        "Result": result(metrics),
        **({"LoadGen": scenario(summary)} if summary and summary.loadgen else {}),
        "Status": escape(status),
        "Warnings": " · ".join(escape(w) for w in warnings) if warnings else "none",
        "Measured": measured(metrics),
        "Environment": machine(environment, metrics),
    }
    return "\n".join(f"- **{name}**: {text}" for name, text in lines.items())
