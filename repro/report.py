"""What a report shows and records (in-kernel side).

Every result is displayed once as a bundle with two faces: readable Markdown (tables) for people,
and JSON under the `application/vnd.repro+json` mimetype for `repro.finalize`, which builds
metrics.json, environment.json and the rest of the run folder from the executed notebook alone.
Plots are PNG outputs tagged with a name, so the run folder's `plots/` comes from the notebook too.
"""

from __future__ import annotations

import io
import json

import numpy as np

from repro import MIME, capture, measure, models


def _plain(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON-serialisable: {type(value).__name__}")


def publish(kind: str, data: dict, markdown: str) -> dict:
    """Display `markdown` and attach `data` as machine-readable JSON of this `kind`."""
    from IPython.display import display

    data = json.loads(json.dumps(data, default=_plain))
    display({MIME: {"kind": kind, "data": data}, "text/markdown": markdown}, raw=True)
    return data


def table(rows: dict, header: tuple[str, str] = ("", "")) -> str:
    lines = [f"| {header[0]} | {header[1]} |", "|---|---|"]
    lines += [f"| {k} | {'—' if v is None else v} |" for k, v in rows.items()]
    return "\n".join(lines)


def show_figure(fig, name: str) -> None:
    """Display a matplotlib figure as a PNG output named `name` (saved as plots/<name>.png)."""
    import matplotlib.pyplot as plt
    from IPython.display import Image, display

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    display(Image(buffer.getvalue()), metadata={"repro": {"plot": name}})


def environment(fw, run_context: dict) -> dict:
    """Capture the machine, software and settings; show the essentials; record everything."""
    env = capture.capture()
    env["framework"] = {"name": fw.name, **fw.info()}
    env["settings"] = fw.settings()
    env["run"] = run_context
    gpu = env["gpu"]
    gpus = (
        ", ".join(g.get("name", "?") for g in gpu["nvidia_smi"]["query"])
        if gpu["present"]
        else (f"none ({gpu['reason']})")
    )
    lock = run_context.get("lock") or {}
    rows = {
        "CPU": env["cpu"].get("model"),
        "cores (logical) / affinity": f"{env['cpu'].get('logical_cores')} / "
        f"{len(env['settings']['affinity'])} used",
        "memory": f"{env['memory'].get('total_bytes', 0) / 2**30:.1f} GiB",
        "GPU": gpus,
        "OS / kernel": f"{env['system']['os_pretty_name']} / {env['system']['kernel']}",
        "Python": env["system"]["python"]["version"],
        f"{fw.name}": env["framework"]["version"],
        "device used": fw.device,
        "threads": fw.threads,
        "seed": fw.seed,
        "precision": fw.precision,
        "kernel": run_context.get("kernel"),
        "lock": (
            f"sha256 {lock['lock_sha256'][:12]}…, verified: {lock['ok']}"
            if lock
            else "unpinned: no lock"
        ),
        "git commit": run_context.get("git", {}).get("commit"),
        "packages": f"{len(env['packages'])} installed (full list in environment.json)",
    }
    variables = table(env["env_vars"], ("variable", "value")) if env["env_vars"] else "none set"
    markdown = f"{table(rows, ('what', 'value'))}\n\n**Result-changing environment variables:**"
    return publish("environment", env, f"{markdown}\n\n{variables}")


def model_summary(fw, net, model: dict) -> dict:
    """Parameter count as the framework counts it, checked against the analytic count."""
    cfg = models.config(model)
    counted = fw.count_params(net)
    info = {
        "arch": model["arch"],
        "config": model.get("config", {}),
        "params": counted,
        "params_analytic": cfg.num_params(),
        "flops_per_sample_analytic": cfg.flops_per_sample(),
    }
    rows = {
        "architecture": model["arch"],
        "parameters (framework count)": f"{counted:,}",
        "parameters (analytic)": f"{info['params_analytic']:,}"
        + (" ✓" if counted == info["params_analytic"] else " ✗ MISMATCH"),
        "forward GFLOPs per sample (analytic, 2×MACs)": (
            f"{info['flops_per_sample_analytic'] / 1e9:.3f}"
        ),
    }
    return publish("model", info, table(rows, ("model", "")))


def results(m: measure.Measurement, fw, seed: int = 0) -> dict:
    """Summarise a measurement, show its table, warnings and plots, and record it."""
    summary = measure.summarize(m, seed=seed)
    memory = fw.memory()
    lat, thr = summary["latency_ms"], summary["throughput"]

    def ci(bounds, fmt):
        return f" (95% CI {fmt.format(bounds[0])}–{fmt.format(bounds[1])})" if bounds else ""

    rows = {
        "throughput (samples/s)": f"{thr['samples_per_s']:.2f}{ci(thr['ci95'], '{:.2f}')}",
        "median latency per batch (ms)": f"{lat['median']:.2f}{ci(lat['median_ci95'], '{:.2f}')}",
        "p90 / p95 / p99 (ms)": f"{lat['p90']:.2f} / {lat['p95']:.2f} / {lat['p99']:.2f}",
        "mean ± std (ms), CV": f"{lat['mean']:.2f} ± {lat['std']:.2f}, {lat['cv']:.1%}"
        if lat["cv"] is not None
        else "—",
        "min / max (ms)": f"{lat['min']:.2f} / {lat['max']:.2f}",
        "measured steps × batch": f"{lat['n']} × {m.batch_size}",
        "first call (s)": f"{m.first_call_s:.3f}",
        "warm-up steps": summary["warmup_steps"],
        "peak host RSS (MiB)": f"{memory['host_peak_rss_bytes'] / 2**20:.0f}",
        "peak device memory (MiB)": f"{memory['device_peak_bytes'] / 2**20:.0f}"
        if memory["device_peak_bytes"]
        else "not applicable (CPU run)"
        if fw.device == "cpu"
        else "unavailable",
    }
    notes = "".join(f"\n\n> ⚠️ {w}" for w in summary["warnings"])
    data = {**summary, "memory": memory, "samples": m.to_dict()}
    published = publish("metrics", data, table(rows, ("metric", "value")) + notes)
    plot_steps(m)
    return published


def plot_steps(m: measure.Measurement) -> None:
    """The per-step time trace (warm-up visible) and the distribution of measured step times."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd
    import seaborn as sns

    sns.set_theme(style="whitegrid")
    phases = ["first call"] + ["warm-up"] * len(m.warmup_s) + ["measured"] * len(m.step_s)
    times = [m.first_call_s, *m.warmup_s, *m.step_s]
    frame = pd.DataFrame(
        {"step": range(len(times)), "ms": np.asarray(times) * 1e3, "phase": phases}
    )
    fig, ax = plt.subplots(figsize=(7, 3))
    sns.scatterplot(data=frame, x="step", y="ms", hue="phase", ax=ax)
    ax.set(
        title="Time per step (first call and warm-up excluded from statistics)",
        ylabel="ms per batch",
        yscale="log" if m.first_call_s > 10 * max(times[1:]) else "linear",
    )
    show_figure(fig, "step_times")

    fig, ax = plt.subplots(figsize=(7, 3))
    measured = frame[frame.phase == "measured"]
    sns.histplot(data=measured, x="ms", kde=len(measured) > 3, ax=ax)
    ax.axvline(float(np.median(measured.ms)), color="k", linestyle="--", label="median")
    ax.set(title="Distribution of measured step times", xlabel="ms per batch")
    ax.legend()
    show_figure(fig, "latency_distribution")
