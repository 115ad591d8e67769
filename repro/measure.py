"""The measurement protocol, written once for every framework (in-kernel side).

A step is timed from one clock read to the next with the device synchronised before the second
read; since every step ends synchronised, the device is idle at the first read of the next step.
The phases are kept apart: the first call (compilation, cold caches) is its own figure, warm-up
steps are recorded but not summarised, and every measured step's time is kept.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats

HIGH_CV = 0.10  # pyperf warns at the same ratio of std to mean
FEW_SAMPLES = 10


@dataclass(frozen=True)
class Measurement:
    batch_size: int
    first_call_s: float  # compile or cold start, synchronised
    warmup_s: tuple[float, ...]  # steps run to reach steady state, not summarised
    step_s: tuple[float, ...]  # every measured step, in order

    def to_dict(self) -> dict:
        return asdict(self)


def timed(step: Callable[[], object], sync: Callable[[object], None], clock=time.perf_counter):
    """Seconds for one synchronised call of `step`."""
    start = clock()
    sync(step())
    return clock() - start


def run(
    step: Callable[[], object],
    sync: Callable[[object], None],
    *,
    batch_size: int,
    warmup: int,
    steps: int,
    clock: Callable[[], float] = time.perf_counter,
    log=sys.stdout,
) -> Measurement:
    """First call, `warmup` steps, then `steps` measured steps, each synchronised."""
    first = timed(step, sync, clock)
    print(f"first call: {first:.3f} s (includes compilation / cold start)", file=log)
    warm = tuple(timed(step, sync, clock) for _ in range(warmup))
    print(f"warm-up: {warmup} steps, {sum(warm):.2f} s", file=log)
    measured = []
    report_every = max(1, steps // 5)
    for i in range(1, steps + 1):
        measured.append(timed(step, sync, clock))
        if i % report_every == 0 or i == steps:
            print(
                f"measured {i}/{steps} steps, median {np.median(measured) * 1e3:.1f} ms", file=log
            )
    return Measurement(batch_size, first, warm, tuple(measured))


def _bootstrap_ci(samples: np.ndarray, statistic, seed: int) -> list[float] | None:
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


def summarize(m: Measurement, seed: int = 0) -> dict:
    """Latency statistics (ms) and throughput (samples/s) with bootstrap 95% CIs, plus warnings."""
    ms = np.asarray(m.step_s) * 1e3
    mean = float(ms.mean())
    std = float(ms.std(ddof=1)) if len(ms) > 1 else 0.0
    latency = {
        "n": len(ms),
        "median": float(np.median(ms)),
        "mean": mean,
        "std": std,
        "cv": std / mean if mean else None,
        "min": float(ms.min()),
        "max": float(ms.max()),
        **{f"p{q}": float(np.percentile(ms, q)) for q in (50, 90, 95, 99)},
        "median_ci95": _bootstrap_ci(ms, np.median, seed),
    }
    # Throughput from the total measured time, as a hand-written loop would compute it; its CI
    # comes from the bootstrap of the mean step time.
    mean_ci = _bootstrap_ci(ms, np.mean, seed)
    throughput = {
        "samples_per_s": m.batch_size * 1e3 / mean,
        "ci95": [m.batch_size * 1e3 / mean_ci[1], m.batch_size * 1e3 / mean_ci[0]]
        if mean_ci
        else None,
    }
    return {
        "latency_ms": latency,
        "throughput": throughput,
        "first_call_s": m.first_call_s,
        "warmup_steps": len(m.warmup_s),
        "warnings": warnings(ms),
    }


def warnings(ms: np.ndarray) -> list[str]:
    """Plain-language warnings a user can act on."""
    found = []
    if len(ms) < FEW_SAMPLES:
        found.append(
            f"Only {len(ms)} measured steps: percentiles and CIs are rough; rerun with "
            f"steps>={FEW_SAMPLES * 3}."
        )
    cv = ms.std(ddof=1) / ms.mean() if len(ms) > 1 else 0.0
    if cv > HIGH_CV:
        found.append(
            f"Step times vary a lot (CV {cv:.0%} > {HIGH_CV:.0%}): close other programs, pin "
            "threads, or rerun with more steps."
        )
    head = ms[: max(1, len(ms) // 10)]
    if len(ms) >= FEW_SAMPLES and head.mean() > 1.10 * np.median(ms):
        found.append(
            "The first measured steps are over 10% slower than the median: warm-up was too "
            "short; rerun with a larger warmup."
        )
    return found
