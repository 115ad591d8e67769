"""Process-level statistics: a figure, and a verdict on a change, from the values of processes.

Steps inside one process share its memory layout, thread placement and neighbours; a new process
draws all of those again (repro.kernel.repeat). So the unit of evidence is the process: each
gives one value (its median step time), and a run's centre and CI, and the verdict between two
runs, come from those values, on a log scale (ratios are what people read, and step times are
skewed).

The verdict is an equivalence test (TOST, two one-sided tests at 5%, as in pharmacology's
bioequivalence): *reproduced within ±margin* when the 90% CI of the ratio lies inside the
margin; *changed* when the 95% CI excludes no change and the estimate lies beyond the margin
(asv's rule: a real change, larger than the margin); otherwise *inconclusive*, with the number
of processes per run that would likely decide. Asking instead for the whole 95% CI beyond the
margin caught only 40-56% of 20% slowdowns replayed on this VM's recorded runs of 3 to 5
processes: it wants a precision that the drift between runs minutes apart (about 3% here)
denies. With this rule, benchmarks/rerun_verdicts.py judged no unchanged rerun changed (70
reruns) and caught 19 of 20 planted 20% slowdowns at 8 processes per run (README). One process
per run has no between-process spread at all, so it is always inconclusive.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats

MARGIN = 0.10  # a rerun within ±10% of the original counts as the same (CPU processes: 2-16% CV)
ADVISED = 3  # processes per run to start from when there is no spread to plan with
MOST = 50  # advice beyond this is "more than 50"
# Two runs of one setup on one quiet machine differ by more than their processes' spread says:
# what their processes share (the host's state over minutes) moves every process of a run
# together. RUN_NOISE is that between-run noise (a CV per run, measured by
# benchmarks/rerun_verdicts.py: unchanged reruns' centres scatter beyond what their processes
# predict); every comparison of two runs adds it to the processes' own noise (`shift`).
RUN_NOISE = 0.05  # 2026-12-07, 2-core VM: 20 reruns' centres scattered 6.2%, processes said 3.8%
ALPHA = 0.05  # significance level of a comparison's test (Welch's t, Mann-Whitney U)


FRESH = 2  # fresh processes from which on the notebook kernel's own is left out of the figures


def every_process(samples: dict) -> list[list[float]]:
    """Each process's step times (s): the kernel's own first, then its repeats. A report made
    before repeats existed has one process."""
    return [p["step_s"] for p in samples.get("processes") or [{"step_s": samples["step_s"]}]]


def processes(samples: dict) -> list[list[float]]:
    """The step times of the processes a run's figures rest on: its fresh processes where it
    has FRESH or more, else every process. The kernel's own, process 1, runs inside Jupyter and
    lands systematically apart from fresh processes (torch 0.61 to 0.78 of their step time in
    6 runs of 6, JAX slower in 5 of 6: README), so it is shown beside the figures, not in them."""
    every = every_process(samples)
    return every[1:] if len(every) > FRESH else every


def kernel_apart(samples: dict) -> bool:
    """Whether the kernel's own process is left out of the run's figures (`processes`)."""
    return len(every_process(samples)) > FRESH


def pooled(samples: dict) -> np.ndarray:
    """Every measured step of every process (s): the distribution percentiles describe."""
    return np.concatenate([np.asarray(s, float) for s in processes(samples)])


def medians(samples: dict) -> list[float]:
    """Each process's median step time (s)."""
    return [float(np.median(steps)) for steps in processes(samples)]


def _interval(logs: np.ndarray, confidence: float) -> list[float] | None:
    if len(logs) < 2:
        return None
    half = stats.t.ppf(0.5 + confidence / 2, len(logs) - 1) * logs.std(ddof=1) / len(logs) ** 0.5
    return [float(np.exp(logs.mean() - half)), float(np.exp(logs.mean() + half))]


def bootstrap_ci(samples, statistic, seed: int = 0) -> list[float] | None:
    """The bootstrap 95% percentile CI of `statistic` over `samples`; None with fewer than two
    values or no spread."""
    samples = np.asarray(samples, float)
    if len(samples) < 2 or np.ptp(samples) == 0:
        return None
    result = stats.bootstrap(
        (samples,),
        statistic,
        confidence_level=0.95,
        n_resamples=2000,
        method="percentile",
        rng=np.random.default_rng(seed),
    )
    return [float(result.confidence_interval.low), float(result.confidence_interval.high)]


@dataclass(frozen=True)
class Headline:
    """The one figure a run is quoted by, defined here and read by every view (the terminal,
    the report, metrics.json's summary, compare, history, sweeps, lessons).

    Its step time is the centre of the processes' median step times (their geometric mean, as
    `spread`), with the 95% CI between processes; with one process, that process's median with
    a bootstrap CI over its steps. Its throughput is the batch over that step time."""

    step_ms: float
    step_ms_ci95: tuple[float, float] | None
    samples_per_s: float
    samples_per_s_ci95: tuple[float, float] | None
    processes: int
    batch_size: int
    kernel_samples_per_s: float | None = None  # the kernel's own process, where left out

    @property
    def basis(self) -> str:
        """What the CI covers, in words."""
        if self.processes > 1 and self.kernel_samples_per_s is not None:
            return (
                f"centre of {self.processes} fresh processes, CI between them; the notebook "
                "kernel's own process is shown apart"
            )
        if self.processes > 1:
            return f"centre of {self.processes} processes, CI between them"
        return "one process: CI over its steps, noise between processes not measured"

    def quote(self) -> str:
        """The headline as people quote it: `6,460 samples/s (95% CI 6,300–6,620, 3
        processes)`, its digits no finer than the CI allows."""
        count = f"{self.processes} process{'es' if self.processes > 1 else ''}"
        ci = self.samples_per_s_ci95
        interval = f"95% CI {bounds(ci)}, " if ci else "no CI, "
        return f"{figure(self.samples_per_s, ci)} samples/s ({interval}{count})"

    def to_dict(self) -> dict:
        return {**asdict(self), "basis": self.basis}


def headline(samples: dict, seed: int = 0) -> Headline | None:
    """The run's headline from its samples (every process's step times and the batch size), or
    None where nothing was measured."""
    steps = processes(samples) if samples and samples.get("step_s") else []
    if not steps or not all(len(s) for s in steps) or not samples.get("batch_size"):
        return None
    batch, s = samples["batch_size"], spread(samples)
    step, ci = s["centre_ms"], s["centre_ci95_ms"]  # between processes
    if len(steps) == 1:  # one process: its median, the CI over its steps
        ci = bootstrap_ci(1e3 * np.asarray(steps[0], float), np.median, seed)
    per_s = 1e3 * batch  # samples per second at 1 ms per step
    return Headline(
        step_ms=step,
        step_ms_ci95=tuple(ci) if ci else None,
        samples_per_s=per_s / step,
        samples_per_s_ci95=(per_s / ci[1], per_s / ci[0]) if ci else None,
        processes=len(steps),
        batch_size=batch,
        kernel_samples_per_s=per_s / s["kernel_ms"] if "kernel_ms" in s else None,
    )


def figure(value: float, ci=None, digits: int = 4) -> str:
    """`value` with thousands separators, rounded to two significant digits of its CI's
    half-width (6,461.3 with a CI of ±160 reads 6,460) but to no fewer than two of its own, or
    to `digits` significant digits where there is no CI."""
    if value is None or not math.isfinite(value):
        return "—"
    own = math.floor(math.log10(abs(value)) + 1e-9) if value else 0  # the value's leading digit
    scale = own - digits + 1
    if ci and abs(ci[1] - ci[0]) > 0:  # never fewer than two significant digits of the value
        scale = min(math.floor(math.log10(abs(ci[1] - ci[0]) / 2) + 1e-9) - 1, own - 1)
    return f"{round(value, -scale):,.{max(0, -scale)}f}"


def bounds(ci, sep: str = "–") -> str:
    """A CI's two bounds, each to the digits the CI allows (`figure`), or a dash for none."""
    return sep.join(figure(b, ci) for b in ci) if ci else "—"


def spread(samples: dict) -> dict:
    """How many processes, each one's median (ms), their geometric mean and its 95% CI (t on
    logs), and the spread between processes against the spread inside them (CVs). The run's
    figure is its `headline`, read from here."""
    values = np.asarray(medians(samples))
    within = [np.std(s, ddof=1) / np.mean(s) for s in processes(samples) if len(s) > 1]
    logs = np.log(values)
    centre = 1e3 * float(np.exp(logs.mean()))
    ci = [1e3 * b for b in _interval(logs, 0.95) or []]
    kernel = 1e3 * float(np.median(every_process(samples)[0]))
    return {
        "n": len(values),
        "median_ms": [float(1e3 * v) for v in values],
        # process 1, where it is left out: its median and its ratio to the centre
        **({"kernel_ms": kernel, "kernel_ratio": kernel / centre} if kernel_apart(samples) else {}),
        "centre_ms": centre,
        "centre_ci95_ms": ci or None,
        "between_cv": float(values.std(ddof=1) / values.mean()) if len(values) > 1 else None,
        "within_cv": float(np.median(within)) if within else None,
    }


def needed(sd: float, room: float, confidence: float, have: int, tau: float = 0.0) -> int:
    """The fewest processes per run, more than `have`, for which a two-sample t interval at
    `confidence` with log-scale spread `sd` between processes and `tau` between runs is narrower
    than `room` on each side; MOST + 1 if none up to MOST is (or, with `tau`, none can be)."""
    for n in range(max(have + 1, ADVISED), MOST + 1):
        t = stats.t.ppf(0.5 + confidence / 2, 2 * n - 2)
        if room > 0 and t * math.sqrt(2 * sd**2 / n + 2 * tau**2) < room:
            return n
    return MOST + 1


def shift(
    base: list[float], new: list[float], margin: float = MARGIN, run_noise: float = RUN_NOISE
) -> dict:
    """`new` against `base` (per-process values of two runs, e.g. median step times): ratio of
    geometric means, its 90% and 95% CIs (Welch on logs, widened by `run_noise` per run: the
    noise between runs that no run's processes see), and the verdict class with its words. Only
    a shift beyond the margin, and beyond what both noises explain, is "changed"."""
    a, b = np.log(base), np.log(new)
    d = float(b.mean() - a.mean())
    out = {"ratio": math.exp(d), "margin": margin, "processes": [len(a), len(b)]}
    out["run_noise"] = run_noise
    if min(len(a), len(b)) < 2:
        return {
            **out,
            "ci90": None,
            "ci95": None,
            "kind": "inconclusive",
            "needed": ADVISED,
            "words": f"inconclusive: {min(len(a), len(b))} process per run cannot tell machine "
            f"noise from a change; measure with repeats={ADVISED} or more",
        }
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    tau = math.log1p(run_noise)
    se = math.sqrt(va + vb + 2 * tau**2)  # each run's centre also moves by tau
    within = va**2 / (len(a) - 1) + vb**2 / (len(b) - 1)  # Welch-Satterthwaite; tau is known
    df = (va + vb + 2 * tau**2) ** 2 / within if within > 0 else 1e9
    ci90 = [math.exp(d + s * stats.t.ppf(0.95, df) * se) for s in (-1, 1)]
    ci95 = [math.exp(d + s * stats.t.ppf(0.975, df) * se) for s in (-1, 1)]
    low, high = math.log1p(-margin) if margin < 1 else -math.inf, math.log1p(margin)
    sd = math.sqrt((a.var(ddof=1) + b.var(ddof=1)) / 2)
    p = float(2 * stats.t.sf(abs(d) / se, df)) if se > 0 else (1.0 if d == 0 else 0.0)
    out = {**out, "ci90": ci90, "ci95": ci95, "p_value": p}
    if low < math.log(ci90[0]) and math.log(ci90[1]) < high:
        words = f"reproduced within ±{margin:.0%} (ratio {out['ratio']:.3f}, 90% CI "
        words += f"{ci90[0]:.3f}–{ci90[1]:.3f})"
        return {**out, "kind": "reproduced", "needed": None, "words": words}
    if (ci95[0] > 1 or ci95[1] < 1) and not low <= d <= high:  # real, and beyond the margin
        words = f"changed by {out['ratio'] - 1:+.1%} (95% CI {ci95[0] - 1:+.1%} to "
        words += f"{ci95[1] - 1:+.1%})"
        return {**out, "kind": "changed", "needed": None, "words": words}
    inside = abs(d) < high  # then more processes could show equivalence; else a change
    have = min(len(a), len(b))
    room, confidence = (high - abs(d), 0.90) if inside else (abs(d), 0.95)
    n = needed(sd, room, confidence, have, tau)
    if n <= MOST:
        advice = f"measure with about {n} processes per run"
    elif needed(0.0, room, confidence, MOST - 1, tau) > MOST:  # runs' own noise: no n decides
        floor = math.expm1(stats.norm.ppf(0.95) * math.sqrt(2) * tau)  # d = 0, endless processes
        advice = (
            f"two runs on one machine differ by about ±{run_noise:.0%} beyond their processes' "
            f"spread, which more processes do not narrow: between two runs no margin under "
            f"±{math.ceil(100 * floor)}% can be shown"
        )
    else:
        advice = f"measure with more than {MOST} processes per run"
    words = f"inconclusive: ratio {out['ratio']:.3f} (95% CI {ci95[0]:.3f}–{ci95[1]:.3f}) "
    words += f"cannot be placed inside or outside ±{margin:.0%}; {advice}"
    return {**out, "kind": "inconclusive", "needed": n, "words": words}


def ratio_ci(new, base, statistic=np.median, seed: int = 0) -> tuple[float, float, float]:
    """statistic(new) / statistic(base) and its bootstrap 95% percentile CI, resampling both."""
    new, base = np.asarray(new, float), np.asarray(base, float)
    ci = stats.bootstrap(
        (new, base),
        lambda x, y: statistic(x) / statistic(y),
        vectorized=False,
        n_resamples=2000,
        method="percentile",
        rng=np.random.default_rng(seed),
    ).confidence_interval
    return float(statistic(new) / statistic(base)), float(ci.low), float(ci.high)


def versus(base: dict, new: dict, seed: int = 0) -> dict:
    """How `new`'s step time compares with `base`'s (each a run's metrics' samples; > 1: slower),
    with a 95% CI, a p-value and a verdict in words. Where both runs measured two processes or
    more, from their process-level values (Welch's t on log median step times); otherwise from
    the steps of one process each (bootstrap CI of the ratio of medians, Mann-Whitney U), which
    leaves out the noise between processes and says so."""
    a, b = medians(base), medians(new)
    if min(len(a), len(b)) >= 2:
        return between(a, b)
    after, before = np.asarray(new["step_s"], float), np.asarray(base["step_s"], float)
    ratio, low, high = ratio_ci(after, before, seed=seed)
    p = float(stats.mannwhitneyu(after, before, alternative="two-sided").pvalue)
    return tested(
        ratio, low, high, p, "steps of one process each: noise between processes not measured"
    )


def between(base: list[float], new: list[float]) -> dict:
    """`versus` on per-process values (two or more each; > 1: `new` took longer): Welch's t on
    their logs (`shift`)."""
    moved = shift(base, new)
    basis = f"{len(base)} and {len(new)} processes"
    return tested(moved["ratio"], *moved["ci95"], moved["p_value"], basis)


def tested(ratio: float, low: float, high: float, p: float, basis: str) -> dict:
    """A time ratio's test as `versus` says it: slower, faster or no significant difference."""
    if p < ALPHA and low > 1:
        verdict = f"slower by {ratio - 1:.1%}"
    elif p < ALPHA and high < 1:
        verdict = f"faster by {1 - ratio:.1%}"
    else:
        verdict = "no significant difference"
    return {
        "time_ratio": ratio,
        "ci95": [low, high],
        "p_value": p,
        "basis": basis,
        "verdict": verdict,
    }


def slower(result: dict, threshold: float) -> bool:
    """The `--fail-if-slower` gate on a `versus` result: significantly slower by more than
    `threshold` (0.05 for 5%), i.e. the whole CI lies above 1 and the slowdown exceeds it."""
    if result["ci95"] is None:  # not tested (one process each)
        return False
    return (
        result["p_value"] < ALPHA and result["ci95"][0] > 1 and result["time_ratio"] > 1 + threshold
    )


def efficiency(one: dict, many: dict, seed: int = 0, shared: int = 1) -> dict:
    """Scaling efficiency E(N) = throughput_N / (N x throughput_1) of a data-parallel run
    (`many`: its samples) against its one-device twin (`one`). Weak scaling (`shared` = 1): each
    device takes the twin's batch, so E(N) = step time_1 / step time_N; strong scaling (`shared`
    = N): the N devices share the twin's batch, so E(N) = step time_1 / (N x step time_N). The
    step times are the statistic each throughput comes from: the processes' centre where both
    measured several (the inverse of `versus`'s ratio and CI), else the mean step of one process
    each (a run's throughput is its samples over its time), with a bootstrap CI."""
    if min(len(medians(one)), len(medians(many))) >= 2:
        moved = versus(one, many, seed)
        low, high = moved["ci95"]
        value, ci, basis = 1 / moved["time_ratio"], [1 / high, 1 / low], moved["basis"]
    else:
        value, *ci = ratio_ci(one["step_s"], many["step_s"], statistic=np.mean, seed=seed)
        basis = "mean steps of one process each: noise between processes not measured"
    return {"efficiency": value / shared, "ci95": [c / shared for c in ci], "basis": basis}
