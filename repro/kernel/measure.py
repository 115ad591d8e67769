"""The measurement protocol, written once for every framework (in-kernel side).

A step is timed from one clock read to the next with the device synchronised before the second
read; since every step ends synchronised, the device is idle at the first read of the next step.
The phases are kept apart: the first call (compilation, cold caches) is its own figure, warm-up
steps are recorded but not summarised, and every measured step's time is kept.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from repro.stats import Headline

HIGH_CV = 0.10  # pyperf warns at the same ratio of std to mean
FEW_SAMPLES = 10
WIDE_CI = 2.0  # a headline whose 95% CI's bounds are this far apart is said to be unusable
STEADY_WINDOW = 3  # warm-up ends when two consecutive windows of this many steps agree...
STEADY_TOLERANCE = 0.05  # ...within 5% of their medians
MAX_STEPS = 100_000  # the most measured steps min_time may add up to (and steps' own maximum)


@dataclass(frozen=True)
class Measurement:
    batch_size: int
    first_call_s: float  # compile or cold start, synchronised
    warmup_s: tuple[float, ...]  # steps run to reach steady state, not summarised
    step_s: tuple[float, ...]  # every measured step, in order
    steady: bool  # whether warm-up ended by detection (False: it hit its cap)
    outputs: tuple = ()  # what every step returned (all phases), when kept: training losses

    def to_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if k != "outputs"}


def timed(step: Callable[[], object], sync: Callable[[object], None], clock=time.perf_counter):
    """One synchronised call of `step`: (seconds, what it returned)."""
    start = clock()
    out = step()
    sync(out)
    return clock() - start, out


def clock(fn: Callable, *args):
    """(fn(*args), seconds): for one-off phases such as building the model."""
    start = time.perf_counter()
    result = fn(*args)
    return result, time.perf_counter() - start


def is_steady(times: list[float], window: int = STEADY_WINDOW) -> bool:
    """True when the last `window` step times have the median of the `window` before them."""
    if len(times) < 2 * window:
        return False
    last, before = np.median(times[-window:]), np.median(times[-2 * window : -window])
    return bool(abs(last / before - 1) <= STEADY_TOLERANCE)


def protocol(
    step: Callable[[], object],
    sync: Callable[[object], None],
    *,
    batch_size: int,
    warmup: int,
    steps: int,
    min_time: float = 0.0,
    warmup_time: float = math.inf,
    keep_outputs: bool = False,
    around_measured: AbstractContextManager | None = None,
    clock: Callable[[], float] = time.perf_counter,
    log=sys.stdout,
) -> Measurement:
    """First call; warm-up until steady (at most `warmup` steps and about `warmup_time`
    seconds); then measured steps until there are `steps` of them and they took `min_time`
    seconds in all (an autorange, as timeit's and pyperf's: a fast step is measured more
    often), at most MAX_STEPS.

    Every step is synchronised before the clock is read. `keep_outputs` keeps every step's
    return value (a training loss) without reading it during the loop, so no extra
    device-to-host copy lands inside the timed window. `around_measured` (an energy meter, say)
    is entered just before the measured steps and left right after them.
    """
    outputs = []  # kept from every phase: a loss curve starts at the first step

    def call() -> float:
        seconds, out = timed(step, sync, clock)
        if keep_outputs:
            outputs.append(out)
        return seconds

    first = call()
    print(f"first call: {first:.3f} s (includes compilation / cold start)", file=log)
    warm: list[float] = []
    while len(warm) < warmup and sum(warm) < warmup_time and not is_steady(warm):
        warm.append(call())
    steady = is_steady(warm) or warmup == 0
    state = "steady" if steady else "NOT steady: cap reached"
    print(f"warm-up: {len(warm)} steps, {sum(warm):.2f} s ({state})", file=log)
    measured: list[float] = []
    total, shown = 0.0, 0

    def progress() -> None:
        ms = np.median(measured) * 1e3
        print(f"measured {len(measured)} steps in {total:.2f} s, median {ms:.1f} ms", file=log)

    with around_measured or nullcontext():
        while len(measured) < MAX_STEPS and (len(measured) < steps or total < min_time):
            measured.append(call())
            total += measured[-1]
            done = min(len(measured) / steps, total / min_time if min_time else 1.0)
            if int(5 * done) > shown:  # a line at each fifth of the way, the last at the end
                shown = int(5 * done)
                progress()
    if shown < 5:  # stopped by MAX_STEPS
        progress()
    return Measurement(batch_size, first, tuple(warm), tuple(measured), steady, tuple(outputs))


def lr_schedule(peak: float, warmup_steps: int, total_steps: int) -> np.ndarray:
    """Learning rate per step: linear warm-up from 0 to `peak`, then cosine decay to 0.

    Computed once here and handed to every framework as a table, so PyTorch, Keras and optax
    follow the very same schedule.
    """
    steps = np.arange(total_steps, dtype=np.float64)
    warm = peak * steps / max(1, warmup_steps)
    progress = (steps - warmup_steps) / max(1, total_steps - warmup_steps)
    cosine = 0.5 * peak * (1 + np.cos(np.pi * np.clip(progress, 0, 1)))
    return np.where(steps < warmup_steps, warm, cosine).astype(np.float32)


def summarize(m: Measurement, seed: int = 0, repeats: Sequence[Sequence[float]] = ()) -> dict:
    """The run's headline (repro.stats.headline over this process's and the `repeats`' step
    times), the distribution of the steps of the processes it rests on (ms, pooled:
    repro.stats.processes), and warnings."""
    # imported here: a fresh process (repro.kernel.repeat) measures without scipy's 1-4 s import
    from repro import stats

    each = [{"step_s": list(s)} for s in (m.step_s, *repeats)]
    samples = {"batch_size": m.batch_size, "step_s": list(m.step_s), "processes": each}
    head = stats.headline(samples, seed)
    ms = 1e3 * stats.pooled(samples)
    mean = float(ms.mean())
    std = float(ms.std(ddof=1)) if len(ms) > 1 else 0.0
    latency = {  # the steps of the headline's processes, pooled: the distribution
        "n": len(ms),
        "median": float(np.median(ms)),
        "mean": mean,
        "std": std,
        "cv": std / mean if mean else None,
        "min": float(ms.min()),
        "max": float(ms.max()),
        **{f"p{q}": float(np.percentile(ms, q)) for q in (50, 90, 95, 99)},
        "median_ci95": stats.bootstrap_ci(ms, np.median, seed),
    }
    return {
        "headline": head.to_dict(),
        "latency_ms": latency,
        "throughput": {"samples_per_s": head.samples_per_s, "ci95": head.samples_per_s_ci95},
        "first_call_s": m.first_call_s,
        "warmup_steps": len(m.warmup_s),
        "warmup_steady": m.steady,
        "warnings": warnings(ms) + warmup_warnings(m, 1e3 * np.asarray(m.step_s)) + disagree(head),
    }


def disagree(head: Headline) -> list[str]:
    """A headline whose processes landed far apart: its CI is honest, and too wide to use."""
    ci = head.samples_per_s_ci95
    if head.processes < 2 or not ci or ci[1] / ci[0] < WIDE_CI:
        return []
    return [
        f"The processes disagree: the headline's 95% CI spans {ci[1] / ci[0]:,.0f}x "
        f"({head.processes} processes). Rerun on a quiet machine, with more processes "
        f"(repeats={max(5, head.processes + 2)}) or a longer measurement."
    ]


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
    return found


def warmup_warnings(m: Measurement, ms: np.ndarray) -> list[str]:
    """A larger `warmup` is advised only where it would help: when warm-up reached its cap
    without the step times settling (a warm-up that settled early stopped by itself)."""
    if not m.steady:
        return [
            f"Warm-up hit its cap ({len(m.warmup_s)} steps, {sum(m.warmup_s):.1f} s) before "
            "step times settled: rerun with a larger warmup or warmup_time."
        ]
    head = ms[: max(1, len(ms) // 10)]
    if not m.warmup_s and len(ms) >= FEW_SAMPLES and head.mean() > 1.10 * np.median(ms):
        return [  # warmup=0: the cap was reached at once
            "The first measured steps are over 10% slower than the median and there was no "
            "warm-up (warmup=0): rerun with a warm-up, warmup > 0."
        ]
    return []
