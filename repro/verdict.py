"""The rerun verdict: did this run reproduce the report it reran? (in-kernel side)

`repro rerun` puts the original's metrics.json and environment.json, and the verdict's settings
(verdict.json), in the new run folder's `original/`, and appends a cell calling `show()`.
Metrics measured on every step get the ratio rerun / original with a bootstrap 95% CI; single
values (compile time, memory, energy) get their ratio against a stated tolerance, since one value
has no CI.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from repro import compare
from repro.markdown import escape
from repro.report import publish, show_figure

TOLERANCE = 0.05  # default: a significant shift smaller than this still counts as reproduced
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


def judge(ratio: float, low: float, high: float, tolerance: float = TOLERANCE) -> str:
    if low <= 1 <= high:
        return "reproduced within noise"
    if abs(ratio - 1) <= tolerance:
        return f"reproduced within {tolerance:.0%} (a small but significant shift)"
    return f"NOT reproduced ({ratio - 1:+.2%})"


def scalars(metrics: dict) -> dict:
    energy = metrics.get("energy") or {}
    kwh = (energy.get("codecarbon") or {}).get("kwh_per_1000_samples")
    loss = metrics.get("loss") or {}
    return {
        "first call: compile / cold start (s)": metrics["samples"]["first_call_s"],
        "peak host RSS (bytes)": (metrics.get("memory") or {}).get("host_peak_rss_bytes"),
        "peak device memory (bytes)": (metrics.get("memory") or {}).get("device_peak_bytes"),
        "energy (kWh per 1,000 samples)": kwh,
        "final training loss": loss.get("last"),
    }


def metric_ratios(
    original: dict, rerun: dict, tolerance: float = TOLERANCE, seed: int = 0
) -> list[dict]:
    """Per metric: original, rerun, ratio rerun/original, its CI (sampled metrics) and a verdict.

    Step-time statistics are resampled per step, so the ratio's CI reflects both runs' noise."""
    before, after = original["samples"]["step_s"], rerun["samples"]["step_s"]
    batch = rerun["samples"]["batch_size"]  # a rerun keeps the original's parameters
    rows = []
    for name, of in SAMPLED.items():
        statistic = lambda x, of=of: of(x, batch)  # noqa: E731 (binds this metric's function)
        ratio, low, high = compare.ratio_ci(after, before, statistic, seed=seed)
        rows.append(
            {
                "metric": name,
                "original": float(statistic(np.asarray(before))),
                "rerun": float(statistic(np.asarray(after))),
                "ratio": ratio,
                "ci95": [low, high],
                "verdict": judge(ratio, low, high, tolerance),
                "decides": True,
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
                "verdict": f"{'within' if within else 'OUTSIDE'} ±{tolerance:.1%} "
                "(one value, no CI)",
                "decides": False,
            }
        )
    return rows


def overall(rows: list[dict]) -> str:
    failed = [r["metric"] for r in rows if r["decides"] and r["verdict"].startswith("NOT")]
    return "NOT reproduced: " + ", ".join(failed) if failed else "reproduced within noise"


def _md_value(value) -> str:
    """A value for the verdict's markdown; text from the original report is escaped."""
    if isinstance(value, float):
        return f"{value:.4g}"
    return "—" if value is None else escape(value)


def markdown(result: dict) -> str:
    lines = [
        f"**Verdict: {result['verdict']}** (rerun of `{result['original_run']}`; "
        f"step-time metrics decide, with a bootstrap 95% CI and a {result['tolerance']:.0%} "
        "tolerance for "
        "significant but small shifts)",
        "",
        "| metric | original | rerun | ratio | 95% CI | verdict |",
        "|---|---|---|---|---|---|",
    ]
    for r in result["metrics"]:
        ci = f"{r['ci95'][0]:.3f}–{r['ci95'][1]:.3f}" if r["ci95"] else "—"
        lines.append(
            f"| {r['metric']} | {_md_value(r['original'])} | {_md_value(r['rerun'])} | "
            f"{r['ratio']:.3f} | {ci} | {r['verdict']} |"
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


def plot(original: dict, rerun: dict) -> None:
    import matplotlib.pyplot as plt
    import seaborn as sns

    fig, ax = plt.subplots(figsize=(7, 3.2))
    for label, m in (("original", original), ("rerun", rerun)):
        sns.ecdfplot(x=np.asarray(m["samples"]["step_s"]) * 1e3, ax=ax, label=label)
    ax.set(xlabel="time per measured step (ms)", ylabel="fraction of steps")
    ax.set_title("Step times, original vs rerun")
    ax.legend()
    show_figure(fig, "rerun_step_times")


def show(metrics: dict, environment: dict, original_dir: str | Path = "original") -> dict:
    """Compare this run with the original in `original_dir`; show and record the verdict."""
    folder = Path(original_dir)
    original_metrics = json.loads((folder / "metrics.json").read_text())
    original = {**original_metrics["summary"], "samples": original_metrics["samples"]}
    settings = json.loads((folder / "verdict.json").read_text())
    rows = metric_ratios(original, metrics, settings["tolerance"])
    result = {
        "original_run": original_metrics["run_id"],
        "tolerance": settings["tolerance"],
        "verdict": overall(rows),
        "metrics": rows,
        "environment": compare.environment_differences(
            json.loads((folder / "environment.json").read_text()), environment
        ),
        "original_integrity": json.loads((folder / "integrity.json").read_text()),
    }
    published = publish("rerun", result, markdown(result))
    plot(original, metrics)
    return published
