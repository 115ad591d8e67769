"""What a report shows and records (in-kernel side).

Every result is displayed once as a bundle with two faces: readable Markdown (tables) for people,
and JSON under the `application/vnd.repro+json` mimetype for `repro.driver.finalize`, which builds
metrics.json, environment.json and the rest of the run folder from the executed notebook alone.
Plots are PNG outputs tagged with a name, so the run folder's `plots/` comes from the notebook too.
"""

from __future__ import annotations

import dataclasses
import io
import json

import numpy as np

from repro import MIME, stats
from repro.kernel import capture, energy, generation, measure, models
from repro.kernel.frameworks.base import keras_info
from repro.kernel.loadgen import accuracy_sentence
from repro.kernel.machine import busy_warning
from repro.kernel.models.source import is_source
from repro.markdown import escape


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
    """A two-column markdown table; every cell escaped, so a `|` in a value (`|diff|`) stays in
    its cell in JupyterLab and in report.html."""
    lines = [f"| {escape(header[0])} | {escape(header[1])} |", "|---|---|"]
    lines += [f"| {escape(k)} | {'—' if v is None else escape(v)} |" for k, v in rows.items()]
    return "\n".join(lines)


def show(markdown: str) -> None:
    from IPython.display import Markdown, display

    display(Markdown(markdown))


def show_figure(fig, name: str, alt: str) -> None:
    """Display a matplotlib figure as a PNG output named `name` (saved as plots/<name>.png),
    with `alt`, a description of what it shows, as its alt text (report.html's <img alt>)."""
    import matplotlib.pyplot as plt
    from IPython.display import Image, display

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    display(Image(buffer.getvalue(), metadata={"alt": alt}), metadata={"repro": {"plot": name}})


def settings(fw, mode: str) -> None:
    """The process settings made before the framework ran anything, as a table: those that
    apply to `mode` (the optimizer in training only). environment.json records them all."""
    rows = {k: v for k, v in fw.settings().items() if k != "optimizer" or mode == "training"}
    if "optimizer" in rows:
        options = rows["optimizer"]
        rows["optimizer"] = (
            f"{options['name']} ("
            + ", ".join(f"{k} {v}" for k, v in options.items() if k != "name")
            + ")"
        )
    show(table(rows, ("setting", "value")))


def environment(fw, run_context: dict) -> dict:
    """Capture the machine, software and settings; show the essentials; record everything."""
    env = dataclasses.replace(
        capture.capture(),
        framework={"name": fw.name, **keras_info(), **fw.info()},
        settings=fw.settings(),
        run=run_context,
    )
    lock = run_context.get("lock") or {}
    rows = {
        "CPU": env.cpu.get("model"),
        "cores (logical) / affinity": f"{env.cpu.get('logical_cores')} / "
        f"{len(env.settings['affinity'])} used",
        "memory": f"{env.memory.get('total_bytes', 0) / 2**30:.1f} GiB",
        "GPU": capture.gpu_names(env.gpu),
        "OS / kernel": f"{env.system['os_pretty_name']} / {env.system['kernel']}",
        "Python": env.system["python"]["version"],
        f"{fw.name}": env.framework["version"],
        "Keras": f"{env.framework['keras']} on {env.framework.get('keras_backend')}"
        if env.framework.get("keras")
        else "not in this kernel",
        "device used": fw.device,
        "threads": fw.threads,
        "seed": fw.seed,
        "precision": fw.precision,
        "kernel": f"{run_context.get('kernel')} ({run_context.get('kernel_reason', '?')})",
        "lock": (
            f"sha256 {lock['lock_sha256'][:12]}…, verified: {lock['ok']}"
            if lock
            else "unpinned: no lock"
        ),
        "git commit": run_context.get("git", {}).get("commit"),
        "packages": f"{len(env.packages)} installed (full list in environment.json)",
    }
    variables = table(env.env_vars, ("variable", "value")) if env.env_vars else "none set"
    markdown = f"{table(rows, ('what', 'value'))}\n\n**Result-changing environment variables:**"
    return publish("environment", env.to_json(), f"{markdown}\n\n{variables}")


def model_summary(
    fw, net, model: dict, build_s: float, run_context: dict | None = None, attention: str = "fused"
) -> dict:
    """Parameter count as the framework counts it, checked against the analytic count; for the
    families with attention, which attention ran and what the framework computed it with."""
    cfg = models.config(model)
    counted, source = fw.count_params(net), is_source(model["arch"])
    resolved = cfg.num_params()  # None: a saved model's, which only the framework counts
    info = {
        "arch": model["arch"],
        "config": model.get("config", {}),
        "params": counted,
        "params_analytic": None if source else resolved,
        "build_s": build_s,
    }
    rows = {"architecture": model["arch"], "parameters (framework count)": f"{counted:,}"}
    # a source has no analytic count: the probe counted the model it resolved before the run
    named = f"parameters ({'as resolved' if source else 'analytic'})"
    match = " ✓" if counted == resolved else " ✗ MISMATCH"
    rows[named] = f"{resolved:,}{match}" if resolved is not None else NO_ANALYTIC_PARAMS
    rows["build time (s)"] = f"{build_s:.2f}"
    if source:  # what pins the user's model: where it came from, the versions, the hashes
        info["source"] = {**model["config"], **models.native(model["arch"], fw.name).describe(cfg)}
        for key, value in info["source"].items():  # a dict: the files' sha256s, by name
            if isinstance(value, dict):
                value = ", ".join(f"{name} {sha}" for name, sha in value.items())
            if value is not None:
                rows[f"source: {key}"] = value
    if model["arch"] in models.SAVED:
        info["saved"] = saved = saved_model(fw, net, model)
        rows["runs as"] = saved["runs_as"]
        rows["file"] = f"{saved['file']} (sha256 {saved['sha256'][:12]}…)"
        rows["outputs on one seeded input"] = (
            f"{len(saved['values']):,} of {saved['count']:,} values recorded "
            f"({saved['precision']}): `repro compare` checks them against this file's runs on "
            "other backends"
        )
    if hasattr(cfg, "activation"):  # a config default the spec may leave out
        info["activation"] = rows["activation"] = cfg.activation
    if models.has_attention(model["arch"]):
        kernel = "written out (matmul, softmax)"
        if attention == "fused":
            kernel = fw.attention_kernel(net, model)
        info["attention"] = {"kind": attention, "kernel": kernel}
        rows["attention"] = f"{attention}: {kernel}"
    proof = (run_context or {}).get("equivalence")
    if proof:
        info["equivalence"] = proof
        same = ", ".join(proof.get("frameworks", ("torch", "tensorflow", "jax")))
        rows[f"same model in {same}"] = (
            f"proven on preset `{proof['preset']}` by `{proof['test']}`: {proof['claim']}"
            if proof["preset"]
            else f"checked by `{proof['test']}`: {proof['claim']}"
            if model["arch"] in models.SAVED
            else "not proven: this architecture has no small preset in the equivalence test"
        )
    return publish("model", info, table(rows, ("model", "")))


OUTPUT_VALUES = 1000  # the most output values a saved model's run records (its fingerprint)


def saved_model(fw, net, model: dict) -> dict:
    """What ran a saved model (its Keras version and backend), its file's sha256, and its first
    OUTPUT_VALUES outputs on one seeded input (fw.probe), in the run's precision: the values that
    `repro compare` checks between runs of one file on other backends (models.same_outputs)."""
    cfg = models.config(model)
    outputs = fw.to_numpy(fw.inference_function(net, "eager")(fw.probe(model)))
    values = np.asarray(outputs, dtype=np.float64).ravel()
    return {
        **models.native(model["arch"], fw.name).describe(cfg),
        "seed": fw.seed,
        "precision": fw.precision,
        "shape": list(np.shape(outputs)),
        "count": int(values.size),
        "values": values[:OUTPUT_VALUES].tolist(),
    }


# How far below the analytic forward count a counter may fall and still be taken as counting all
# the work: XLA counts a convolution over the unpadded input (ResNet-50: 0.972 of the analytic).
COUNTER_TOLERANCE = 0.05


def flops(
    fw, net, inputs, labels, model: dict, batch_size: int, mode: str, new_tokens=None
) -> dict:
    """FLOPs per step from the framework's counter, cross-checked with the analytic formula; a
    generation request (mode=generate) is counted analytically only."""
    cfg = models.config(model)
    if mode == "generate":
        analytic = cfg.generation_flops(cfg.sequence_length, new_tokens) * batch_size
        counted = {
            "flops": None,
            "method": "analytic",
            "reason": "a request is a prefill and a loop of decode steps, which no framework "
            "counter takes as one computation",
        }
    else:  # a source's or saved model has no analytic count (None): its counter's alone
        forward = cfg.flops_per_sample() and cfg.flops_per_sample() * batch_size
        analytic = forward and forward * (3 if mode == "training" else 1)
        counted = judge_counter(fw.count_flops(net, inputs, labels, mode), forward)
    figure = counted["flops"] or counted.get("counted")
    ratio = figure / analytic if figure and analytic else None
    info = {**counted, "analytic": analytic, "ratio_to_analytic": ratio}
    rows = {
        f"counter ({counted['method']})": f"{figure / 1e9:,.3f}"
        if figure
        else f"unavailable: {counted.get('reason')}",
        "analytic (2×MACs of convs and fc"
        + {
            "training": "; training = 3× forward)",
            "generate": "; prefill + decode steps over the fixed-size cache)",
        }.get(mode, ")"): f"{analytic / 1e9:,.3f}" if analytic else NO_ANALYTIC,
        "counter / analytic": f"{ratio:.3f}" if ratio else "—",
    }
    if figure and not counted["flops"]:
        rows["used"] = f"analytic: {counted['reason']}"
    if counted.get("note"):
        rows["note"] = counted["note"]
    return publish("flops", info, table(rows, ("GFLOPs per step", "")))


NO_ANALYTIC = (
    "none: a model you bring (hf:, module:, a saved Keras file) has no analytic count; the "
    "counter's is used"
)
NO_ANALYTIC_PARAMS = "no analytic count (a model you bring: the framework counts it)"


def judge_counter(counted: dict, analytic_forward: int | None) -> dict:
    """`counted` (an adapter's count_flops) as is if its counter counted all the work; else with
    "flops" None, the figure kept as "counted" and the reason, so the analytic count is used:
    ops that ran without a formula in the counter, or a forward count short of the analytic one
    beyond COUNTER_TOLERANCE. Where no analytic count exists (None: a model you bring) the
    counter's figure stands unchecked, and is said to, noted as a lower bound where the counter
    missed ops."""
    if not counted["flops"]:
        return counted
    missed = counted.get("uncounted") or []
    if analytic_forward is None:
        if missed:
            note = f"a lower bound: the counter has no formula for {', '.join(missed)}"
            return {**counted, "checked": NO_ANALYTIC, "note": note}
        return {**counted, "checked": NO_ANALYTIC}
    share = counted.get("forward", counted["flops"]) / analytic_forward
    if missed:
        reason = f"the counter missed work: no formula for {', '.join(missed)}"
    elif share < 1 - COUNTER_TOLERANCE:
        reason = f"the counter missed work: its forward is {share:.3f} of the analytic count"
    else:
        return counted
    return {**counted, "flops": None, "counted": counted["flops"], "reason": reason}


def results(
    m: measure.Measurement,
    fw,
    *,
    flop_count: dict | None = None,
    meter: energy.EnergyMeter | None = None,
    machine=None,
    repeats: list[dict] | None = None,
    price_per_hour: float = 0.0,
    tokens_per_sample: int | None = None,
    seed: int = 0,
    devices: int = 1,
    scaling: str | None = "weak",
    loadgen: dict | None = None,
    sections: dict | None = None,
    generated: dict | None = None,
) -> dict:
    """Summarise a measurement, show its table, warnings and plots, and record it. `repeats` are
    the measurements of the run's further processes (repro.kernel.repeat), this kernel's being the
    first; `devices` > 1: a data-parallel step over that many devices with `scaling` weak or
    strong (`m` counts every device's samples; the FLOPs are one device's); `loadgen`: a LoadGen
    scenario's parsed summary (repro.kernel.loadgen.run), recorded and shown beside repro's
    figures; `sections`: a template's own, recorded in the summary over repro's
    (repro.kernel.accuracy's time to accuracy); `generated`: mode=generate's record of every
    request, a step being one request (repro.kernel.generation.step)."""
    repeats = repeats or []
    summary = measure.summarize(m, seed, [r["step_s"] for r in repeats])
    processes = [
        {"first_call_s": m.first_call_s, "warmup_s": list(m.warmup_s), "step_s": list(m.step_s)}
    ]
    processes += [
        {
            "first_call_s": r["first_call_s"],
            "warmup_s": r.get("warmup_s"),  # a time-to-accuracy process has none
            "step_s": r["step_s"],
            "load": r["machine"]["load"],
        }
        for r in repeats
    ]
    summary["processes"] = spread = stats.spread({"processes": processes})
    memory = fw.memory()
    lat, thr, head = summary["latency_ms"], summary["throughput"], summary["headline"]
    if tokens_per_sample:  # sequence workloads: the same figure in tokens
        thr["tokens_per_s"] = thr["samples_per_s"] * tokens_per_sample
        thr["tokens_ci95"] = [b * tokens_per_sample for b in thr["ci95"]] if thr["ci95"] else None
    samples = m.batch_size * len(m.step_s)  # the kernel's process: what the energy meter saw
    summary["compute"] = compute = efficiency(fw, flop_count, head["step_ms"] / 1e3)
    summary["cost"] = cost = (
        {
            "price_per_hour": price_per_hour,
            "per_1000_samples": price_per_hour / 3600 * 1000 / thr["samples_per_s"],
        }
        if price_per_hour
        else None
    )
    summary["energy"] = meter.result(samples) if meter else None
    summary["machine"] = machine.result() if machine else None  # a repro.kernel.machine.Check
    if machine:
        busy_too(summary["machine"], repeats or [])
        summary["warnings"] = summary["machine"]["warnings"] + summary["warnings"]
    losses = [fw.to_float(out) for out in m.outputs]
    summary["loss"] = {"first": losses[0], "last": losses[-1], "curve": losses} if losses else None

    rows = {
        "throughput (samples/s)": quoted(thr["samples_per_s"], thr["ci95"]),
        "median time per step (ms)": quoted(head["step_ms"], head["step_ms_ci95"]),
        "processes measured": process_row(spread),
        "p90 / p95 / p99 (ms), every step": " / ".join(
            stats.figure(lat[q]) for q in ("p90", "p95", "p99")
        ),
        "mean ± std (ms), CV, every step": f"{stats.figure(lat['mean'])} ± "
        f"{stats.figure(lat['std'])}, {lat['cv']:.1%}"
        if lat["cv"] is not None
        else "—",
        "min / max (ms)": f"{stats.figure(lat['min'])} / {stats.figure(lat['max'])}",
        "measured steps × batch": f"{lat['n']} × {m.batch_size}"
        + (f" over {len(processes)} processes" if len(processes) > 1 else ""),
        "first call: compile / cold start (s)": f"{m.first_call_s:.3f}",
        "warm-up steps": f"{summary['warmup_steps']} ("
        + ("steady" if m.steady else "cap reached, not steady")
        + ")",
        "achieved TFLOP/s": f"{compute['achieved_tflops']:.4f} ({compute['flops_source']})"
        if compute["achieved_tflops"] is not None
        else "—",
        "MFU": f"{compute['mfu']:.1%} of {compute['peak_source']}"
        if compute["mfu"] is not None
        else compute["peak_source"],
        "peak host RSS (MiB)": f"{memory['host_peak_rss_bytes'] / 2**20:.0f}",
        "peak device memory (MiB)": f"{memory['device_peak_bytes'] / 2**20:.0f}"
        if memory["device_peak_bytes"]
        else "not applicable (CPU run)"
        if fw.device == "cpu"
        else "unavailable",
        "cost per 1,000 samples": f"{cost['per_1000_samples']:.6f} (at {price_per_hour}/hour)"
        if cost
        else "no price_per_hour given",
    }
    if tokens_per_sample:
        rows = {"throughput (tokens/s)": quoted(thr["tokens_per_s"], thr["tokens_ci95"]), **rows}
    if devices > 1:
        summary["data_parallel"] = dp = parallel(
            fw, devices, scaling, m.batch_size, thr["samples_per_s"], summary["warnings"]
        )
        rows.update(
            {
                "devices (data parallel)": f"{devices} × {dp['per_device_batch']} samples = a "
                f"global batch of {m.batch_size} ({SCALING[scaling]})",
                "throughput per device (samples/s)": f"{dp['samples_per_s_per_device']:.2f}",
            }
        )
    if losses:
        rows["training loss, first → last step"] = f"{losses[0]:.4f} → {losses[-1]:.4f}"
    scenario_md = ""
    if loadgen:
        summary["loadgen"] = loadgen
        summary["warnings"].append(loadgen["warning"])
        if not loadgen["accuracy"]["passed"]:
            summary["warnings"].append(
                "LoadGen's accuracy run: " + accuracy_sentence(loadgen["accuracy"])
            )
        scenario_md = "\n\n" + beside(loadgen, lat, thr, m.batch_size)
    summary["generation"] = None
    if generated:  # the measured requests are the last ones
        measured = generated["requests"][-len(m.step_s) :]
        summary["generation"] = figures = generation.summarize(
            measured, m.step_s, m.batch_size, generated["prompt_length"], thr["tokens_per_s"]
        )
        rows = {**generation.rows(figures), **rows}
    notes = "".join(f"\n\n> ⚠ {w}" for w in summary["warnings"])
    energy_md = "\n\n**Energy**\n\n" + energy.markdown(summary["energy"]) if meter else ""
    data = {**summary, **(sections or {}), "memory": memory}
    data["samples"] = {**m.to_dict(), "processes": processes}
    markdown = table(rows, ("metric", "value")) + scenario_md + notes + energy_md
    published = publish("metrics", data, markdown)
    plot_steps(m)
    if len(processes) > 1:
        plot_processes(processes)
    if losses:
        plot_loss(losses, m)
    if generated:
        plot_tokens(generated["requests"][-len(m.step_s) :])
    return published


def beside(loadgen: dict, latency: dict, throughput: dict, batch_size: int) -> str:
    """LoadGen's figures for its scenario beside repro's protocol's, as a three-column table."""
    ns, s = loadgen["latency_ns"], loadgen["settings"]
    queries = (
        f"1 query of {loadgen['parameters'].get('samples_per_query')} samples, served in "
        f"batches of {s['batch_size']}; latency: from its issue to each sample's completion"
        if loadgen["scenario"] == "offline"
        else "queries of 1 sample, each from its issue to its completion"
    )
    result = loadgen["result"] + (
        f" (not satisfied: {', '.join(loadgen['failed'])})" if loadgen["failed"] else ""
    )
    rate = f"{loadgen['samples_per_s']:.2f}" if loadgen["samples_per_s"] else "—"
    a = loadgen["accuracy"]
    rows = [
        (
            "accuracy run: the model's own answers",
            f"{a['agree']} of {a['samples']} samples" + ("" if a["passed"] else " (FAILED)"),
            "—",
        ),
        ("what is timed", queries, f"steps of {batch_size} samples"),
        ("result", result, "—"),
        ("samples/s", rate, f"{throughput['samples_per_s']:.2f}"),
        *[
            (f"{q} latency (ms)", f"{ns[q] / 1e6:.2f}" if q in ns else "—", f"{latency[q]:.2f}")
            for q in ("p50", "p90", "p99")
        ],
        (
            "min / max latency (ms)",
            f"{ns['min'] / 1e6:.2f} / {ns['max'] / 1e6:.2f}",
            f"{latency['min']:.2f} / {latency['max']:.2f}",
        ),
    ]
    targets = ", ".join(
        f"{name} {s[name]:.4g} ({s[f'{name}_source']})"
        for name in ("target_qps", "target_latency_ms")
        if name in s
    )
    lines = [
        f"**MLPerf LoadGen, {loadgen['scenario']} scenario** (LoadGen "
        f"{loadgen['loadgen_version']}; min_duration_ms {s['min_duration_ms']:,}"
        + (f", min_query_count {s['min_query_count']:,}" if s["min_query_count"] else "")
        + (f"; {targets}" if targets else "")
        + ")",
        "",
        "| | LoadGen | repro's protocol |",
        "|---|---|---|",
        *[f"| {escape(a)} | {escape(b)} | {escape(c)} |" for a, b, c in rows],
    ]
    return "\n".join(lines)


def plot_tokens(requests: list[dict]) -> None:
    """mode=generate: the time of each output token by its place in the request (the first is
    the prefill), median and p10-p90 band over the measured requests."""
    import matplotlib.pyplot as plt

    ms = 1e3 * np.asarray([[r["ttft_s"], *r["tpot_s"]] for r in requests])  # (requests, tokens)
    place = np.arange(1, ms.shape[1] + 1)
    low, median, high = np.percentile(ms, [10, 50, 90], axis=0)
    fig, ax = plt.subplots(figsize=(7, 3))
    ax.fill_between(place, low, high, alpha=0.3, label="p10–p90")
    ax.plot(place, median, marker=".", label="median")
    ax.set(
        title="Time of each output token (1: the prefill, then one decode step each)",
        xlabel="output token",
        ylabel="ms",
        yscale="log" if median[0] > 10 * np.median(median[1:]) else "linear",
    )
    ax.legend()
    show_figure(
        fig,
        "token_times",
        f"Line plot of the time of each of the {ms.shape[1]} output tokens over "
        f"{ms.shape[0]} measured requests: the first (prefill) {median[0]:.2f} ms median, the "
        f"decode steps {np.median(median[1:]):.2f} ms median, with a p10 to p90 band.",
    )


SCALING = {
    "weak": "weak scaling: batch_size samples on each device",
    "strong": "strong scaling: batch_size is the global batch",
}


def parallel(
    fw, devices: int, scaling: str, global_batch: int, samples_per_s: float, warnings: list[str]
) -> dict:
    """A data-parallel run's own figures; on a CPU, a warning that they test correctness only."""
    if fw.device == "cpu":
        warnings.append(
            f"The {devices} devices are CPU devices sharing this machine's cores: this run tests "
            "data-parallel correctness, not scaling; its throughput is no multi-device figure."
        )
    return {
        "devices": devices,
        "scaling": scaling,
        "per_device_batch": global_batch // devices,
        "global_batch": global_batch,
        "samples_per_s_per_device": samples_per_s / devices,
        "cpu_devices_share_cores": fw.device == "cpu",
    }


def busy_too(check: dict, repeats: list[dict]) -> None:
    """Mark the kernel's machine check busy when the machine was busy while a further process
    measured: the verdict's machine check reads one flag for the whole run, and the report says
    it in one warning (the kernel's own, or the first busy process's, naming what to change)."""
    busy = [i for i, r in enumerate(repeats, 2) if r["machine"]["busy"]]
    if not busy:
        return
    which = f"process{'es' if len(busy) > 1 else ''} {', '.join(map(str, busy))}"
    which += f" of {len(repeats) + 1} measured"
    if check["busy"]:  # warnings[0] is the kernel's busy warning
        check["warnings"][0] += f" It was busy too while {which}."
    else:
        check["busy"] = True
        load = repeats[busy[0] - 2]["machine"]["load"]
        when = f"{which} (its figures: metrics.json samples.processes)"
        check["warnings"].insert(0, busy_warning(load, when))


def quoted(value: float, ci) -> str:
    """A figure and its 95% CI, its digits no finer than the CI allows (repro.stats.figure)."""
    return stats.figure(value, ci) + (f" (95% CI {stats.bounds(ci)})" if ci else "")


def process_row(spread: dict) -> str:
    """How many processes the figures rest on, and how far apart they landed."""
    if spread["n"] == 1:
        return (
            "1 (the noise between processes is not measured: a rerun verdict needs repeats=3 "
            "or more, and 8 to catch a 20% change)"
        )
    within = spread["within_cv"]
    apart = (
        f"{spread['n']} fresh processes: the figures above are their centre; the notebook "
        f"kernel's own process (1), which runs inside Jupyter and lands apart, measured "
        f"{stats.figure(spread['kernel_ms'])} ms a step ({spread['kernel_ratio']:.2f}x the "
        "centre)"
        if "kernel_ms" in spread
        else f"{spread['n']}: the figures above are their centre"
    )
    return (
        f"{apart}; CV between processes {spread['between_cv']:.1%}, within one "
        + (f"{within:.1%}" if within is not None else "n/a (one step each)")
        + ". The rows below pool their steps."
    )


def plot_processes(processes: list[dict]) -> None:
    """Step times per process: the spread inside each box against the shift between them."""
    import matplotlib.pyplot as plt
    import pandas as pd
    import seaborn as sns

    frame = pd.DataFrame(
        [
            {"process": str(i), "ms": 1e3 * t}
            for i, p in enumerate(processes, 1)
            for t in p["step_s"]
        ]
    )
    fig, ax = plt.subplots(figsize=(7, 3))
    sns.boxplot(data=frame, x="process", y="ms", color="0.85", showfliers=False, ax=ax)
    sns.stripplot(data=frame, x="process", y="ms", size=3, ax=ax)
    ax.set(
        title="Measured step times per process (1: the kernel's own)",
        ylabel="ms per batch",
    )
    medians = ", ".join(f"{1e3 * float(np.median(p['step_s'])):.2f}" for p in processes)
    show_figure(
        fig,
        "process_step_times",
        f"Box and strip plot of the measured step times (ms) of each of the {len(processes)} "
        f"processes; their medians: {medians} ms.",
    )


def efficiency(fw, flop_count: dict | None, step_s: float) -> dict:
    """Achieved FLOP/s from the median step time, and MFU against the device's peak."""
    from repro.kernel.peaks import peak_flops

    flop_count = flop_count or {}
    per_step = flop_count.get("flops") or flop_count.get("analytic")
    source = "framework counter" if flop_count.get("flops") else "analytic FLOPs"
    if flop_count.get("counted"):  # a counter that missed work (judge_counter): why not it
        source += f" ({flop_count['reason']})"
    achieved = per_step / step_s if per_step else None
    peak, peak_source = peak_flops(fw.device_name(), fw.precision)
    return {
        "flops_per_step": per_step,
        "flops_source": source,
        "achieved_tflops": achieved / 1e12 if achieved else None,
        "peak_tflops": peak / 1e12 if peak else None,
        "peak_source": peak_source,
        "mfu": achieved / peak if achieved and peak else None,
    }


def plot_loss(losses: list[float], m: measure.Measurement) -> None:
    """Training loss at every step: it must fall on the memorisable synthetic batch."""
    import matplotlib.pyplot as plt
    import pandas as pd
    import seaborn as sns

    frame = pd.DataFrame({"step": range(len(losses)), "loss": losses, "phase": phases(m)})
    fig, ax = plt.subplots(figsize=(7, 3))
    sns.lineplot(data=frame, x="step", y="loss", color="0.6", ax=ax)
    sns.scatterplot(data=frame, x="step", y="loss", hue="phase", ax=ax)
    ax.set(title="Training loss per step (AdamW, warm-up + cosine schedule)", yscale="log")
    show_figure(
        fig,
        "loss_curve",
        f"Training loss at each of the {len(losses)} steps on a log scale, coloured by phase: "
        f"from {losses[0]:.4g} at the first step to {losses[-1]:.4g} at the last.",
    )


def phases(m: measure.Measurement) -> list[str]:
    return ["first call"] + ["warm-up"] * len(m.warmup_s) + ["measured"] * len(m.step_s)


def plot_steps(m: measure.Measurement) -> None:
    """The per-step time trace (warm-up visible) and the distribution of measured step times."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd
    import seaborn as sns

    sns.set_theme(style="whitegrid")
    times = [m.first_call_s, *m.warmup_s, *m.step_s]
    frame = pd.DataFrame(
        {"step": range(len(times)), "ms": np.asarray(times) * 1e3, "phase": phases(m)}
    )
    fig, ax = plt.subplots(figsize=(7, 3))
    sns.scatterplot(data=frame, x="step", y="ms", hue="phase", ax=ax)
    ax.set(
        title="Time per step (first call and warm-up excluded from statistics)",
        ylabel="ms per batch",
        yscale="log" if m.first_call_s > 10 * max(times[1:]) else "linear",
    )
    median = float(np.median(m.step_s)) * 1e3
    show_figure(
        fig,
        "step_times",
        f"Scatter plot of the time per step (ms) at each of the {len(times)} steps, coloured by "
        f"phase: the first call ({m.first_call_s * 1e3:.2f} ms), {len(m.warmup_s)} warm-up steps "
        f"and {len(m.step_s)} measured steps (median {median:.2f} ms).",
    )

    fig, ax = plt.subplots(figsize=(7, 3))
    measured = frame[frame.phase == "measured"]
    sns.histplot(data=measured, x="ms", kde=len(measured) > 3, ax=ax)
    ax.axvline(float(np.median(measured.ms)), color="k", linestyle="--", label="median")
    ax.set(title="Distribution of measured step times", xlabel="ms per batch")
    ax.legend()
    show_figure(
        fig,
        "latency_distribution",
        f"Histogram of the {len(measured)} measured step times, from {measured.ms.min():.2f} to "
        f"{measured.ms.max():.2f} ms, with a dashed line at the median, {median:.2f} ms.",
    )
