"""The cell that heads a report: its result, status, warnings, what was measured and where, one
line each (driver side). `finalize` writes it from the finished metrics.json and
environment.json, after the banner and before the template's cells, so the first figures a
reader sees are this run's, not the template's default parameters."""

from __future__ import annotations

from repro.kernel.capture import gpu_names
from repro.markdown import escape


def ci(bounds, unit: str = "") -> str:
    """`95% CI low–high` for a pair of bounds, or `no CI` (fewer than two values, or no spread)."""
    if not bounds:
        return "no CI"
    return f"95% CI {bounds[0]:,.2f}–{bounds[1]:,.2f}{unit}"


def step_time(summary: dict) -> str:
    """The median step time with the CI between processes, or between one process's steps."""
    spread = summary.get("processes") or {}
    if spread.get("n", 1) > 1:
        return (
            f"median step time **{spread['centre_ms']:,.2f} ms** across {spread['n']} processes "
            f"({ci(spread['centre_ci95_ms'], ' ms')})"
        )
    latency = summary["latency_ms"]
    return (
        f"median step time **{latency['median']:,.2f} ms** "
        f"({ci(latency['median_ci95'], ' ms')}, from one process's steps)"
    )


def ours(summary) -> dict:
    """The summary repro's templates publish (report.results), or {} for what a template of
    one's own published instead (anything at all)."""
    if not isinstance(summary, dict):
        return {}
    need = {"latency_ms": dict, "throughput": dict, "processes": (dict, type(None))}
    return summary if all(isinstance(summary.get(k), t) for k, t in need.items()) else {}


def result(published) -> str:
    if not published:
        return "not measured"
    summary = ours(published)
    if not summary:
        return "this template published no step-time summary (see its own cells)"
    throughput, compute = summary["throughput"], summary.get("compute") or {}
    spread = summary.get("processes") or {}
    parts = [
        step_time(summary),
        f"throughput **{spread['samples_per_s']:,.1f} samples/s** across the processes "
        f"({ci(spread['samples_per_s_ci95'])})"
        if "samples_per_s" in spread  # a report older than it: the kernel's process only
        else f"throughput **{throughput['samples_per_s']:,.1f} samples/s** "
        f"({ci(throughput['ci95'])}, the kernel's process)",
    ]
    if throughput.get("tokens_per_s"):
        parts.append(f"{throughput['tokens_per_s']:,.0f} tokens/s")
    peak = escape(compute.get("peak_source"))
    mfu = compute.get("mfu")
    parts.append(f"MFU **{mfu:.1%}** of {peak}" if mfu is not None else f"no MFU: {peak}")
    return " · ".join(parts)


def measured(metrics: dict) -> str:
    p, summary = metrics["params"], ours(metrics.get("summary"))
    sequence = f" × {p['sequence_length']} tokens" if p.get("sequence_length") else ""
    processes = (summary.get("processes") or {}).get("n", p.get("repeats"))
    warmup = (
        f"warm-up {summary['warmup_steps']} steps "
        + ("(settled)" if summary.get("warmup_steady") else f"(cap {p['warmup']}, not settled)")
        if "warmup_steps" in summary
        else f"warm-up up to {p['warmup']} steps"
    )
    return escape(
        f"{metrics['workload']} in {metrics['framework']}, {p['mode']}, batch {p['batch_size']}"
        f"{sequence}, {p['precision']}, compile {p['compile']}, {p['threads']} threads; "
        f"{p['steps']} steps × {processes} process{'es' if processes != 1 else ''}, {warmup}"
    )


def machine(environment: dict | None, metrics: dict) -> str:
    if not environment:
        return "not recorded"
    cpu, system = environment.get("cpu", {}), environment.get("system", {})
    framework = environment.get("framework", {})
    lock = "pinned" if metrics["pinned"] else "unpinned"
    return escape(
        f"{cpu.get('model')} ({cpu.get('logical_cores')} logical cores), "
        f"{environment.get('memory', {}).get('total_bytes', 0) / 2**30:.1f} GiB, "
        f"GPU {gpu_names(environment.get('gpu', {}))}; {system.get('os_pretty_name')}, "
        f"Python {system.get('python', {}).get('version')}, "
        f"{framework.get('name')} {framework.get('version')}, kernel {metrics['kernel']} ({lock})"
    )


def markdown(metrics: dict, environment: dict | None) -> str:
    """The summary cell's markdown: one line each, every value from the run's records."""
    status = metrics["status"] + (f": {metrics['error']}" if metrics.get("error") else "")
    warnings = ours(metrics.get("summary")).get("warnings") or []
    lines = {
        "Result": result(metrics.get("summary")),
        "Status": escape(status),
        "Warnings": " · ".join(escape(str(w)) for w in warnings) if warnings else "none",
        "Measured": measured(metrics),
        "Environment": machine(environment, metrics),
    }
    return "\n".join(f"- **{name}**: {text}" for name, text in lines.items())
