"""What a history report shows (in-kernel side, in the analysis kernel).

`templates/history.ipynb` calls these on finished run folders: the runs grouped into series (one
workload, framework and setting group on one machine context: runs whose numbers can be drawn on
one line), each series' points in order of time, git commit or framework version, each point
against the one before with the test `repro compare` uses (repro.stats.versus, flagged by
repro.stats.slower beyond a threshold), a table of the runs and line charts of throughput and p90
latency with their 95% CIs. The grouping and the test need no pandas, so they are tested without
a kernel.

A mode with its own headline (records.Summary.kind) is a series of its own, never a point of the
plain step-time line of its workload (the mode and the scenario are parameters of its setting),
with its own columns and charts:
- time to accuracy: the time to target (median over the processes that reached it, and their
  range); a regression is a time significantly longer (repro.stats.between on each process's
  time, with two processes or more each) or a target the point before reached and this one
  missed in every process;
- generation: output tokens/s and time per output token; a step is one request, so the step-time
  test flags a regression, as for the others;
- LoadGen: its samples/s and p90 latency, INVALID results marked; the protocol's step-time test
  flags a regression, and so does a result that turned from VALID to INVALID.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta

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
    scenario = run.summary.loadgen
    return (
        f"{m.workload} · {m.framework} {p.get('compile', '')} · bs{p['batch_size']} "
        f"{p['precision']} {p['mode']}" + (f" LoadGen {scenario.scenario}" if scenario else "")
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


def headline(run: records.Run) -> dict:
    """The figures of a run's own headline (records.Summary.kind), as a point keeps them."""
    s = run.summary
    if s.time_to_accuracy:
        tta = s.time_to_accuracy
        return {
            "target": tta.target,
            "reached": f"{tta.reached_by}/{tta.processes}",
            "time_to_target_s": tta.median_s if tta.times_s else None,
            "time_to_target_range_s": [tta.min_s, tta.max_s] if tta.times_s else None,
            "steps": tta.median_steps,
            "best_accuracy": tta.best_accuracy,
        }
    if s.generated:
        g = s.generated
        return {
            "tokens_per_s": g.tokens_per_s,
            "tpot_p50_ms": g.tpot_ms["p50"],
            "tpot_p99_ms": g.tpot_ms["p99"],
            "ttft_p50_ms": g.ttft_ms["p50"],
        }
    if s.loadgen:
        p90 = s.loadgen.latency_ns.get("p90")
        return {
            "loadgen_result": s.loadgen.result,
            "loadgen_samples_per_s": s.loadgen.samples_per_s,
            "loadgen_p90_ms": p90 / 1e6 if p90 is not None else None,
        }
    return {}


def time_to_target(before: records.Run, run: records.Run, threshold: float) -> dict:
    """`run`'s time to target against the point before: repro.stats.between on the times of the
    processes that reached it (two or more each), else a ratio that is not tested; a target the
    point before reached and every process of `run` missed is a regression."""
    a, b = before.summary.time_to_accuracy.times_s, run.summary.time_to_accuracy.times_s
    if a and b and min(len(a), len(b)) >= 2:
        against = stats.between(list(a), list(b))
        return {**against, "regression": stats.slower(against, threshold)}
    ratio = float(np.median(b) / np.median(a)) if a and b else None
    verdict = {
        (True, True): f"{ratio or 0:.2f}× the time to target, from one process: not tested",
        (True, False): "missed the target (the point before reached it)",
        (False, True): "reached the target (the point before missed it)",
        (False, False): "neither reached the target",
    }[bool(a), bool(b)]
    return {
        "time_ratio": ratio,
        "ci95": None,
        "p_value": None,
        "basis": "the processes that reached the target",
        "verdict": verdict,
        "regression": bool(a) and not b,
    }


def against(before: records.Run, run: records.Run, threshold: float) -> dict:
    """`run` against the point before it, its test by its kind, and whether it regressed."""
    if run.summary.time_to_accuracy and before.summary.time_to_accuracy:
        return time_to_target(before, run, threshold)
    versus = stats.versus(before.samples, run.samples)
    regression = stats.slower(versus, threshold)
    was, now = before.summary.loadgen, run.summary.loadgen
    if was and now and was.valid and not now.valid:
        versus["verdict"] += f"; LoadGen result VALID → {now.result}"
        regression = True
    return {**versus, "regression": regression}


def point(run: records.Run, before: records.Run | None, threshold: float) -> dict:
    """One run as a point of its series, against the point `before` it: `compare`'s test (or
    its kind's, `against`), and whether it is a regression (significantly slower by more than
    `threshold`, or worse in its kind's own terms)."""
    s = run.summary
    tested = against(before, run, threshold) if before else None
    regression = bool(tested and tested.pop("regression"))
    return {
        "run": run.name,
        "folder": str(run.folder),
        "time": time(run),
        "commit": commit(run),
        "framework_version": framework_version(run),
        "repro_version": str(run.environment.run.get("repro_version") or "unknown"),
        "samples_per_s": run.headline.samples_per_s,
        "samples_per_s_ci95": run.headline.samples_per_s_ci95,
        "p90_ms": s.latency_ms.get("p90"),
        "p90_ms_ci95": p90_ci(run.step_s),
        "kind": s.kind,
        **headline(run),
        "versus_previous": tested and {"previous": before.name, **tested},
        "regression": regression,
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
            f"⚠ **{len(skipped)} folders are not in this history** (not finished runs, or "
            "records this repro cannot read):\n\n"
            + "\n".join(f"- {escape(line)}" for line in skipped)
        )
    else:
        show("Every run folder found was read.")


def ci_text(bounds, digits: int) -> str:
    return f"{bounds[0]:.{digits}f}–{bounds[1]:.{digits}f}" if bounds else "—"


def figure(value, digits: int) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


COLUMNS = {  # kind: (what its table says it is, its own columns: header and the cell of a point)
    "step time": (
        "",
        {
            "throughput (samples/s)": lambda p: stats.figure(
                p["samples_per_s"], p["samples_per_s_ci95"]
            ),
            "95% CI": lambda p: stats.bounds(p["samples_per_s_ci95"]),
            "p90 step (ms)": lambda p: figure(p["p90_ms"], 3),
            "95% CI ": lambda p: ci_text(p["p90_ms_ci95"], 3),
        },
    ),
    "time to accuracy": (
        "Time to accuracy: the median time to target over the processes that reached it",
        {
            "target": lambda p: f"{p['target']:.1%}",
            "time to target (s)": lambda p: figure(p["time_to_target_s"], 2),
            "range (s)": lambda p: ci_text(p["time_to_target_range_s"], 2),
            "reached": lambda p: p["reached"],
            "steps": lambda p: figure(p["steps"], 0),
        },
    ),
    "generation": (
        "Generation: output tokens/s and time per output token (a step is one request)",
        {
            "output tokens/s": lambda p: figure(p["tokens_per_s"], 1),
            "TPOT p50 / p99 (ms)": lambda p: f"{p['tpot_p50_ms']:.3f} / {p['tpot_p99_ms']:.3f}",
            "TTFT p50 (ms)": lambda p: figure(p["ttft_p50_ms"], 3),
        },
    ),
    "loadgen": (
        "LoadGen scenarios: LoadGen's own figures (not an MLPerf submission)",
        {
            "LoadGen result": lambda p: (
                escape(p["loadgen_result"])
                if p["loadgen_result"] == "VALID"
                else f"**{escape(p['loadgen_result'])}**"
            ),
            "samples/s": lambda p: figure(p["loadgen_samples_per_s"], 1),
            "p90 latency (ms)": lambda p: figure(p["loadgen_p90_ms"], 3),
        },
    ),
}


def rows_of(lines: Mapping[str, list[dict]], kind: str) -> list[str]:
    """The table of the series of one kind (COLUMNS), its title first for a mode's own."""
    title, columns = COLUMNS[kind]
    head = ["series", "time", "run", *columns, "repro", "git commit", "framework", "vs previous"]
    rows = [f"**{title}**", ""] if title else []
    rows += ["| " + " | ".join(h.strip() for h in head) + " |", "|---" * len(head) + "|"]
    for name, points in lines.items():
        for p in (p for p in points if p["kind"] == kind):
            versus = p["versus_previous"]
            verdict = "first point" if not versus else versus["verdict"]
            if p["regression"]:
                verdict = f"**⚠ REGRESSION: {verdict}**"
            cells = [escape(name), escape(p["time"][:19]), escape(p["run"])]
            cells += [cell(p) for cell in columns.values()]
            cells += [escape(p[k]) for k in ("repro_version", "commit", "framework_version")]
            rows.append("| " + " | ".join([*cells, verdict]) + " |")
    return rows


def table(lines: Mapping[str, list[dict]], by: str, threshold: float, order: str = "") -> dict:
    """Every run, series by series in order: when, the code, its kind's headline (throughput
    with its CI and p90 latency; a mode's own: COLUMNS), and the verdict against the point
    before; regressions in bold. One table per kind. `order`: how commits were ordered (the
    driver's repro.driver.history.commit_order), said when `by` is commit."""
    kinds = {p["kind"] for points in lines.values() for p in points}
    rows = [r for kind in COLUMNS if kind in kinds for r in [*rows_of(lines, kind), ""]]
    found = regressions(lines)
    head = (
        f"{sum(map(len, lines.values()))} runs in {len(lines)} series, in order of "
        f"{by.replace('_', ' ')}"
        + (f" ({escape(order)})" if order and by == "commit" else "")
        + "; "
        + (
            f"**{len(found)} regressions** (significantly slower than the point before by more "
            f"than {threshold:.0%}"
            + (
                ", or a mode's own: a target missed, a VALID LoadGen result turned INVALID)"
                if kinds - {"step time", "generation"}
                else ")"
            )
            if found
            else f"no regression beyond {threshold:.0%}"
        )
        + "."
    )
    data = {"by": by, "order": order, "threshold": threshold, "series": lines, "regressions": found}
    return publish("history", data, head + "\n\n" + "\n".join(rows).strip())


PLOTTED = {  # kind: its two charts, each (its key in a point, its band's, the axis label, unit)
    "step time": (
        ("samples_per_s", "samples_per_s_ci95", "throughput (samples/s)", "samples/s"),
        ("p90_ms", "p90_ms_ci95", "p90 step time (ms)", "ms"),
    ),
    "time to accuracy": (
        ("time_to_target_s", "time_to_target_range_s", "time to target (s)", "s"),
        ("steps", None, "steps to target (median)", "steps"),
    ),
    "generation": (
        ("tokens_per_s", None, "output tokens/s", "tokens/s"),
        ("tpot_p50_ms", None, "time per output token p50 (ms)", "ms"),
    ),
    "loadgen": (
        ("loadgen_samples_per_s", None, "LoadGen samples/s", "samples/s"),
        ("loadgen_p90_ms", None, "LoadGen p90 latency (ms)", "ms"),
    ),
}
BANDS = {  # kind: what its band is
    "step time": "each point's 95% CI as a band",
    "time to accuracy": "the range over the processes that reached the target as a band",
    "generation": "no band (the kernel's process only)",
    "loadgen": "INVALID LoadGen results marked with a black cross",
}


def plot(lines: Mapping[str, list[dict]], by: str) -> None:
    """For each workload and kind (records.Summary.kind), its two charts (PLOTTED: throughput
    and p90 latency for step times) of each of its series along `by` (a time axis to scale;
    commits and versions in order, one tick each), each point's band, regressions marked with a
    red triangle."""
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    charts: dict[tuple[str, str], dict[str, list[dict]]] = {}
    for name, points in lines.items():
        charts.setdefault((name.split(" · ")[0], points[0]["kind"]), {})[name] = points
    for (workload, kind), group in charts.items():
        fig, axes = plt.subplots(1, 2, figsize=(12, 4))
        on_time = by == "time" and all(moments(points) for points in group.values())
        ticks = dict(sorted({p["x"]: p["at"] for ps in group.values() for p in ps}.items()))
        every = max(1, len(ticks) // 12)  # at most about 12 labels
        names = [str(t)[:16] for t in ticks.values()]
        for ax, (key, band, label, _) in zip(axes, PLOTTED[kind], strict=True):
            for name, points in group.items():
                x = moments(points) if on_time else [p["x"] for p in points]
                draw(ax, points, x, key, band, name.split(" · ", 1)[1])
            ax.set(xlabel=AXES[by], ylabel=label, title=f"{workload}: {label}")
            if on_time:
                locator = mdates.AutoDateLocator(maxticks=6)  # labels that do not overlap
                ax.xaxis.set(
                    major_locator=locator, major_formatter=mdates.ConciseDateFormatter(locator)
                )
                ax.set_xlim(*padded([t for points in group.values() for t in moments(points)]))
            else:
                ax.set_xticks(list(ticks)[::every], names[::every])
                ax.tick_params(axis="x", labelrotation=20)
        axes[0].legend(fontsize=7)
        flagged = sum(p["regression"] for points in group.values() for p in points)
        (key, _, left, unit), (_, _, right, _) = PLOTTED[kind]
        show_figure(
            fig,
            f"history_{workload}" + ("" if kind == "step time" else f"_{kind.replace(' ', '-')}"),
            f"Line charts of {workload}'s {left} (left) and {right} (right) by "
            f"{AXES[by] if on_time or by != 'time' else 'order of time'}, {len(group)} series ("
            + "; ".join(
                f"{name.split(' · ', 1)[1]}: {len(points)} points, from "
                f"{figure(points[0][key], 1)} to {figure(points[-1][key], 1)} {unit}"
                for name, points in group.items()
            )
            + f"), {BANDS[kind]}; {flagged} regressions marked in red.",
        )


AXES = {  # by: the x axis's label
    "time": "start time (UTC, to scale)",
    "commit": "git commit (in order)",
    "framework_version": "framework version (in order)",
}


def padded(times: list[datetime]) -> tuple[datetime, datetime]:
    """A time axis's limits around its points: their span and a tenth of it each side, at least
    half an hour, so one point or a few minutes' runs are not drawn on a scale of years."""
    pad = max((max(times) - min(times)) / 10, timedelta(minutes=30))
    return min(times) - pad, max(times) + pad


def moments(points: list[dict]) -> list[datetime] | None:
    """Each point's start time in UTC (a time without a zone taken as UTC), or None when one is
    not an ISO 8601 time (the plot then falls back to the order of time)."""
    try:
        parsed = [datetime.fromisoformat(p["time"]) for p in points]
    except (TypeError, ValueError):
        return None
    return [t.astimezone(UTC) if t.tzinfo else t.replace(tzinfo=UTC) for t in parsed]


def draw(ax, points: list[dict], x: list, key: str, ci: str | None, label: str) -> None:
    """One series on `ax`, each point at its `x` (a time, or its rank), its band `ci` (none:
    no band), INVALID LoadGen results crossed."""
    x = np.array(x)
    y = np.array([p[key] if p[key] is not None else np.nan for p in points], float)
    low = np.array([((ci and p[ci]) or [np.nan])[0] for p in points], float)
    high = np.array([((ci and p[ci]) or [np.nan, np.nan])[1] for p in points], float)
    (line,) = ax.plot(x, y, marker="o", label=label)
    ax.fill_between(x, low, high, alpha=0.2, color=line.get_color())
    ax.errorbar(x, y, yerr=[y - low, high - y], fmt="none", ecolor=line.get_color(), capsize=3)
    invalid = [i for i, p in enumerate(points) if p.get("loadgen_result", "VALID") != "VALID"]
    if invalid:
        ax.scatter(x[invalid], y[invalid], marker="x", s=120, color="black", zorder=4)
    bad = [i for i, p in enumerate(points) if p["regression"]]
    if bad:
        ax.scatter(x[bad], y[bad], marker="v", s=90, color="red", zorder=3)
