"""What a history report shows (in-kernel side, in the analysis kernel).

`templates/history.ipynb` calls these on finished run folders: the runs grouped into series (one
workload, framework and setting group on one machine context: runs whose numbers can be drawn on
one line), each series' points in order of time, git commit or framework version, each point
against the one before with the test `repro compare` uses (repro.stats.versus, flagged by
repro.stats.slower beyond a threshold), a table of the runs and line charts of throughput and p90
latency with their 95% CIs. The grouping and the test need no pandas, so they are tested without
a kernel.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

import numpy as np

from repro import records, stats
from repro.kernel.report import publish, show_figure
from repro.markdown import escape

ORDERS = ("time", "commit", "framework_version")
# Parameters that set how long a run measures, not what it measures: no new series.
MEASURING = (*records.UNMEASURED, "steps", "warmup", "repeats")


def load(folders: list[str]) -> list[records.Run]:
    return [records.load(f) for f in folders]


def setting(run: records.Run) -> dict:
    """What must match for two runs to be points of one line: the framework, the context a
    comparison checks (CPU, GPU, driver, precision, mode, batch size, workload, model) and every
    parameter but those of MEASURING. A null parameter (one that does not apply, such as
    new_tokens outside mode=generate) counts as absent, as in a run from before it existed."""
    params = {k: v for k, v in run.metrics.params.items() if k not in MEASURING and v is not None}
    return {"framework": run.metrics.framework, **params, **run.context()}


def series(runs: list[records.Run]) -> dict[str, list[records.Run]]:
    """The runs grouped by `setting`, each group named by its workload, framework and key
    parameters, and where two groups share that name, by the settings that tell them apart."""
    groups: dict[str, list[records.Run]] = {}
    for run in runs:
        groups.setdefault(json.dumps(setting(run), sort_keys=True, default=str), []).append(run)
    names = {key: short(group[0]) for key, group in groups.items()}
    named = {}
    for key, group in groups.items():
        twins = [json.loads(k) for k in groups if names[k] == names[key]]
        own = json.loads(key)
        apart = [f for f in own if len({json.dumps(t.get(f), default=str) for t in twins}) > 1]
        named[names[key] + "".join(f", {f}={str(own[f])[:40]}" for f in apart)] = group
    return named


def short(run: records.Run) -> str:
    m, p = run.metrics, run.metrics.params
    return (
        f"{m.workload} · {m.framework} {p.get('compile', '')} · bs{p['batch_size']} "
        f"{p['precision']} {p['mode']}"
    )


def git(run: records.Run) -> Mapping:
    return records.section(run.environment.run, "git")


def revision(run: records.Run) -> str | None:
    """The git commit the run's code was at, as its folder records it (untrusted text)."""
    value = git(run).get("commit")
    return value if isinstance(value, str) else None


def commit(run: records.Run) -> str:
    return str(revision(run) or "unknown")[:10] + ("+dirty" if git(run).get("dirty") else "")


def time(run: records.Run) -> str:
    return run.metrics.started_at or run.environment.captured_at


def framework_version(run: records.Run) -> str:
    return str(run.environment.framework.get("version") or "unknown")


def ordered(runs: list[records.Run], by: str, commits: Sequence[str] = ()) -> list[records.Run]:
    """`runs` in order of time, of git commit or of framework version; runs of one commit or
    version in order of time. Commits follow `commits` (those the repository holds, oldest first:
    a run folder does not say which commit came first, so the driver asks git), then the others
    in the order they first ran; a commit's runs from a dirty tree follow its clean ones."""
    if by not in ORDERS:
        raise ValueError(f"by must be one of {', '.join(ORDERS)}, got {by!r}")
    runs = sorted(runs, key=time)
    if by == "commit":
        place: dict[str | None, int] = {c: i for i, c in enumerate(commits)}
        for run in runs:
            place.setdefault(revision(run), len(place))
        return sorted(runs, key=lambda r: (place[revision(r)], bool(git(r).get("dirty"))))
    if by == "framework_version":
        return sorted(runs, key=lambda r: version_key(framework_version(r)))
    return runs


def version_key(text: str) -> tuple:
    """A version's sort key; one that is not a version sorts after every version, by its text."""
    from packaging.version import InvalidVersion, Version

    try:
        return (0, Version(text), "")
    except InvalidVersion:
        return (1, Version("0"), text)


def p90_ci(steps: np.ndarray) -> list[float] | None:
    """A bootstrap 95% CI of the p90 step time (ms), or None with fewer than 2 steps."""
    from scipy.stats import bootstrap

    if len(steps) < 2:
        return None
    ci = bootstrap(
        (1e3 * steps,),
        lambda x, axis: np.percentile(x, 90, axis=axis),
        n_resamples=2000,
        method="percentile",
        rng=np.random.default_rng(0),
    ).confidence_interval
    return [float(ci.low), float(ci.high)]


def point(run: records.Run, before: records.Run | None, threshold: float) -> dict:
    """One run as a point of its series, against the point `before` it: `compare`'s test, and
    whether it is a regression (significantly slower by more than `threshold`)."""
    s = run.summary
    against = stats.versus(before.samples, run.samples) if before else None
    return {
        "run": run.name,
        "folder": str(run.folder),
        "time": time(run),
        "commit": commit(run),
        "framework_version": framework_version(run),
        "repro_version": str(run.environment.run.get("repro_version") or "unknown"),
        "samples_per_s": s.throughput["samples_per_s"],
        "samples_per_s_ci95": s.throughput.get("ci95"),
        "p90_ms": s.latency_ms.get("p90"),
        "p90_ms_ci95": p90_ci(run.step_s),
        "versus_previous": against and {"previous": before.name, **against},
        "regression": bool(against and stats.slower(against, threshold)),
    }


def history(
    runs: list[records.Run], by: str = "time", threshold: float = 0.05, commits: Sequence[str] = ()
) -> dict:
    """{series name: its points in order (`ordered`)}, each point against the one before it and
    placed at `x`, its time, commit or version's rank among all the runs' (one order for every
    series; the plot puts times to scale)."""
    value = {"time": time, "commit": commit, "framework_version": framework_version}[by]
    ranks = {v: i for i, v in enumerate(dict.fromkeys(map(value, ordered(runs, by, commits))))}
    lines = {}
    for name, group in series(runs).items():
        group = ordered(group, by, commits)
        lines[name] = [
            {**point(run, before, threshold), "x": ranks[value(run)], "at": value(run)}
            for before, run in zip([None, *group[:-1]], group, strict=True)
        ]
    return lines


def regressions(lines: Mapping[str, list[dict]]) -> list[dict]:
    return [
        {"series": name, **p} for name, points in lines.items() for p in points if p["regression"]
    ]


def show_skipped(skipped: list[str]) -> None:
    from repro.kernel.report import show

    if skipped:
        show(
            f"⚠️ **{len(skipped)} folders are not in this history** (not finished runs, or "
            "records this repro cannot read):\n\n"
            + "\n".join(f"- {escape(line)}" for line in skipped)
        )
    else:
        show("Every run folder found was read.")


def ci_text(bounds, digits: int) -> str:
    return f"{bounds[0]:.{digits}f}–{bounds[1]:.{digits}f}" if bounds else "—"


def table(lines: Mapping[str, list[dict]], by: str, threshold: float, order: str = "") -> dict:
    """Every run, series by series in order: when, the code, throughput with its CI, p90 latency,
    and the verdict against the point before; regressions in bold. `order`: how commits were
    ordered (the driver's repro.driver.history.commit_order), said when `by` is commit."""
    rows = [
        "| series | time | run | throughput (samples/s) | 95% CI | p90 step (ms) | 95% CI | "
        "repro | git commit | framework | vs previous |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, points in lines.items():
        for p in points:
            versus = p["versus_previous"]
            verdict = "first point" if not versus else versus["verdict"]
            if p["regression"]:
                verdict = f"**⚠️ REGRESSION: {verdict}**"
            rows.append(
                f"| {escape(name)} | {escape(p['time'][:19])} | {escape(p['run'])} | "
                f"{p['samples_per_s']:.1f} | {ci_text(p['samples_per_s_ci95'], 1)} | "
                + (f"{p['p90_ms']:.3f}" if p["p90_ms"] is not None else "—")
                + f" | {ci_text(p['p90_ms_ci95'], 3)} | {escape(p['repro_version'])} | "
                f"{escape(p['commit'])} | {escape(p['framework_version'])} | {verdict} |"
            )
    found = regressions(lines)
    head = (
        f"{sum(map(len, lines.values()))} runs in {len(lines)} series, in order of "
        f"{by.replace('_', ' ')}"
        + (f" ({escape(order)})" if order and by == "commit" else "")
        + "; "
        + (
            f"**{len(found)} regressions** (significantly slower than the point before by more "
            f"than {threshold:.0%})"
            if found
            else f"no regression beyond {threshold:.0%}"
        )
        + "."
    )
    data = {"by": by, "order": order, "threshold": threshold, "series": lines, "regressions": found}
    return publish("history", data, head + "\n\n" + "\n".join(rows))


PLOTTED = {  # metric: (its key in a point, its CI's, the axis label)
    "throughput": ("samples_per_s", "samples_per_s_ci95", "throughput (samples/s)"),
    "p90": ("p90_ms", "p90_ms_ci95", "p90 step time (ms)"),
}


def plot(lines: Mapping[str, list[dict]], by: str) -> None:
    """For each workload, throughput and p90 latency of each of its series along `by` (a time
    axis to scale; commits and versions in order, one tick each), each point's 95% CI as a band
    and an error bar, regressions marked with a red triangle."""
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    workloads: dict[str, dict[str, list[dict]]] = {}
    for name, points in lines.items():
        workloads.setdefault(name.split(" · ")[0], {})[name] = points
    for workload, group in workloads.items():
        fig, axes = plt.subplots(1, 2, figsize=(12, 4))
        on_time = by == "time" and all(moments(points) for points in group.values())
        ticks = dict(sorted({p["x"]: p["at"] for ps in group.values() for p in ps}.items()))
        every = max(1, len(ticks) // 12)  # at most about 12 labels
        names = [str(t)[:16] for t in ticks.values()]
        for ax, (key, ci, label) in zip(axes, PLOTTED.values(), strict=True):
            for name, points in group.items():
                x = moments(points) if on_time else [p["x"] for p in points]
                draw(ax, points, x, key, ci, name.split(" · ", 1)[1])
            ax.set(xlabel=AXES[by], ylabel=label, title=f"{workload}: {label}")
            if on_time:
                locator = mdates.AutoDateLocator()
                ax.xaxis.set(
                    major_locator=locator, major_formatter=mdates.ConciseDateFormatter(locator)
                )
            else:
                ax.set_xticks(list(ticks)[::every], names[::every])
                ax.tick_params(axis="x", labelrotation=20)
        axes[0].legend(fontsize=7)
        flagged = sum(p["regression"] for points in group.values() for p in points)
        show_figure(
            fig,
            f"history_{workload}",
            f"Line charts of {workload}'s throughput (samples/s, left) and p90 step time (ms, "
            f"right) by {AXES[by] if on_time or by != 'time' else 'order of time'}, "
            f"{len(group)} series ("
            + "; ".join(
                f"{name.split(' · ', 1)[1]}: {len(points)} points, from "
                f"{points[0]['samples_per_s']:.1f} to {points[-1]['samples_per_s']:.1f} samples/s"
                for name, points in group.items()
            )
            + f"), each point's 95% CI as a band; {flagged} regressions marked in red.",
        )


AXES = {  # by: the x axis's label
    "time": "start time (UTC, to scale)",
    "commit": "git commit (in order)",
    "framework_version": "framework version (in order)",
}


def moments(points: list[dict]) -> list[datetime] | None:
    """Each point's start time in UTC (a time without a zone taken as UTC), or None when one is
    not an ISO 8601 time (the plot then falls back to the order of time)."""
    try:
        parsed = [datetime.fromisoformat(p["time"]) for p in points]
    except (TypeError, ValueError):
        return None
    return [t.astimezone(UTC) if t.tzinfo else t.replace(tzinfo=UTC) for t in parsed]


def draw(ax, points: list[dict], x: list, key: str, ci: str, label: str) -> None:
    """One series on `ax`, each point at its `x` (a time, or its rank)."""
    x = np.array(x)
    y = np.array([p[key] if p[key] is not None else np.nan for p in points], float)
    low = np.array([(p[ci] or [np.nan])[0] for p in points], float)
    high = np.array([(p[ci] or [np.nan, np.nan])[1] for p in points], float)
    (line,) = ax.plot(x, y, marker="o", label=label)
    ax.fill_between(x, low, high, alpha=0.2, color=line.get_color())
    ax.errorbar(x, y, yerr=[y - low, high - y], fmt="none", ecolor=line.get_color(), capsize=3)
    bad = [i for i, p in enumerate(points) if p["regression"]]
    if bad:
        ax.scatter(x[bad], y[bad], marker="v", s=90, color="red", zorder=3)
