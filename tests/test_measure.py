"""The measurement protocol and its statistics, with a scripted clock (no framework needed)."""

from __future__ import annotations

import io

import numpy as np
import pytest

from repro.kernel import measure


class FakeDevice:
    """A step whose duration follows a script; the clock only advances when the device syncs,
    like an asynchronous runtime: without a sync, a step would look free."""

    def __init__(self, durations: list[float]):
        self.durations = iter(durations)
        self.now = 0.0
        self.pending = 0.0
        self.events: list[str] = []

    def clock(self) -> float:
        return self.now

    def step(self) -> float:
        self.pending = next(self.durations)
        self.events.append("step")
        return self.pending

    def sync(self, _out) -> None:
        self.now += self.pending
        self.pending = 0.0


def run(durations, **kwargs):
    device = FakeDevice(durations)
    m = measure.protocol(device.step, device.sync, clock=device.clock, log=io.StringIO(), **kwargs)
    return m, device


def test_phases_are_kept_apart_and_every_measured_step_is_kept():
    slow_start = [5.0, 0.9, 0.5, 0.3, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1]
    m, _ = run(slow_start + [0.1] * 20 + [0.2] * 4, batch_size=4, warmup=50, steps=4)
    assert m.first_call_s == 5.0
    # steady once the median of the last 3 warm-up steps matches the median of the 3 before
    assert m.steady is True
    assert m.warmup_s == pytest.approx((0.9, 0.5, 0.3, 0.1, 0.1, 0.1, 0.1, 0.1))
    assert m.step_s == pytest.approx((0.1, 0.1, 0.1, 0.1))


def test_warmup_stops_at_its_cap_when_times_never_settle():
    m, _ = run(
        [1.0] + [0.5 / (i + 1) for i in range(10)] + [0.01] * 3, batch_size=1, warmup=10, steps=3
    )
    assert len(m.warmup_s) == 10 and not m.steady
    assert any("Warm-up hit its cap" in w for w in measure.summarize(m)["warnings"])


def test_only_the_measured_steps_are_inside_the_measured_window():
    events: list[str] = []
    device = FakeDevice([1.0] + [0.1] * 10)
    device.events = events

    class Window:
        def __enter__(self):
            events.append("enter")

        def __exit__(self, *exc):
            events.append("exit")

    measure.protocol(
        device.step,
        device.sync,
        batch_size=1,
        warmup=3,
        steps=5,
        clock=device.clock,
        around_measured=Window(),
        log=io.StringIO(),
    )
    assert events == ["step"] * 4 + ["enter"] + ["step"] * 5 + ["exit"]


def test_min_time_adds_measured_steps_until_they_add_up_to_it():
    m, _ = run([1.0] + [0.01] * 200, batch_size=1, warmup=0, steps=5, min_time=0.5)
    assert len(m.step_s) == 50 and sum(m.step_s) >= 0.5  # steps is the floor, not the count
    slow, _ = run([1.0] + [0.3] * 10, batch_size=1, warmup=0, steps=5, min_time=0.5)
    assert len(slow.step_s) == 5  # the floor already measures longer than min_time
    exact, _ = run([1.0] + [0.01] * 10, batch_size=1, warmup=0, steps=5, min_time=0)
    assert len(exact.step_s) == 5


def test_min_time_stops_at_max_steps(monkeypatch):
    monkeypatch.setattr(measure, "MAX_STEPS", 30)
    m, _ = run([1.0] + [0.001] * 100, batch_size=1, warmup=0, steps=5, min_time=10)
    assert len(m.step_s) == 30


def test_progress_says_how_many_steps_and_how_long_each_fifth_of_the_way():
    device, log = FakeDevice([1.0] + [0.01] * 100), io.StringIO()
    measure.protocol(
        device.step,
        device.sync,
        clock=device.clock,
        log=log,
        batch_size=1,
        warmup=0,
        steps=5,
        min_time=0.5,
    )
    lines = [line for line in log.getvalue().splitlines() if line.startswith("measured")]
    assert len(lines) == 5 and lines[-1].startswith("measured 50 steps in 0.50 s, median 10.0 ms")


def test_warmup_time_caps_warmup_in_seconds():
    m, _ = run(
        [1.0] + [2.0 / (i + 1) for i in range(50)],
        batch_size=1,
        warmup=50,
        steps=2,
        warmup_time=3.0,
    )
    assert sum(m.warmup_s[:-1]) < 3.0 <= sum(m.warmup_s) and not m.steady  # 2 + 1 + 0.67 s


def test_outputs_of_every_phase_are_kept_in_order_when_asked():
    m, _ = run([3.0, 2.0, 1.0, 1.0, 1.0], batch_size=1, warmup=2, steps=2, keep_outputs=True)
    assert m.outputs == (3.0, 2.0, 1.0, 1.0, 1.0)
    assert "outputs" not in m.to_dict()


def test_summary_statistics_and_intervals():
    rng = np.random.default_rng(1)
    times = tuple(0.1 + rng.exponential(0.01, size=200))
    m = measure.Measurement(8, 1.0, (), times, True)
    s = measure.summarize(m)
    ms = np.asarray(times) * 1e3
    lat = s["latency_ms"]
    assert lat["median"] == pytest.approx(np.median(ms))
    assert lat["p99"] == pytest.approx(np.percentile(ms, 99))
    assert lat["cv"] == pytest.approx(ms.std(ddof=1) / ms.mean())
    low, high = lat["median_ci95"]
    assert low < lat["median"] < high and high - low < 0.1 * lat["median"]
    thr = s["throughput"]  # the headline: the batch at the median step (one process)
    assert thr["samples_per_s"] == pytest.approx(8e3 / np.median(ms))
    assert thr["ci95"][0] < thr["samples_per_s"] < thr["ci95"][1]
    assert s["headline"]["samples_per_s"] == thr["samples_per_s"]
    assert s["warnings"] == []
    more = (
        tuple(0.2 + rng.exponential(0.01, size=50)),
        tuple(0.3 + rng.exponential(0.01, size=50)),
    )
    two = measure.summarize(m, repeats=more[:1])  # the kernel's and one fresh: both count
    centre = np.exp(np.mean(np.log([np.median(times), np.median(more[0])])))
    assert two["throughput"]["samples_per_s"] == pytest.approx(8 / centre)
    assert two["headline"]["processes"] == 2 and two["latency_ms"]["n"] == 250
    three = measure.summarize(m, repeats=more)  # two fresh ones: the kernel's is left out
    centre = np.exp(np.mean(np.log([np.median(r) for r in more])))
    assert three["throughput"]["samples_per_s"] == pytest.approx(8 / centre)
    assert three["headline"]["processes"] == 2 and three["latency_ms"]["n"] == 100
    assert three["headline"]["kernel_samples_per_s"] == pytest.approx(8 / np.median(times))


def test_warnings_name_what_to_do():
    few = measure.summarize(measure.Measurement(1, 1.0, (), (0.1, 0.1, 0.2), True))
    assert any("rerun with steps>=30" in w for w in few["warnings"])
    noisy = measure.summarize(measure.Measurement(1, 1.0, (), (0.1, 0.3) * 10, True))
    assert any("vary a lot" in w for w in noisy["warnings"])


def test_a_larger_warmup_is_advised_only_when_warmup_did_not_settle():
    slow_head = (0.115, 0.115) + (0.1,) * 18  # the first 10% of steps 15% slower
    settled = measure.Measurement(1, 1.0, (0.2,) * 6, slow_head, True)  # after 6 of 50 steps
    assert measure.summarize(settled)["warnings"] == []
    capped = measure.Measurement(1, 1.0, (0.3, 0.2) * 25, slow_head, False)
    assert measure.summarize(capped)["warnings"] == [
        "Warm-up hit its cap (50 steps, 12.5 s) before step times settled: rerun with a larger "
        "warmup or warmup_time."
    ]
    none = measure.summarize(measure.Measurement(1, 1.0, (), slow_head, True))  # warmup=0
    assert any("no warm-up (warmup=0)" in w for w in none["warnings"])
    assert measure.summarize(measure.Measurement(1, 1.0, (), (0.1,) * 20, True))["warnings"] == []


def test_lr_schedule_warms_up_linearly_then_decays_by_cosine():
    table = measure.lr_schedule(1e-3, warmup_steps=10, total_steps=100)
    assert table[0] == 0 and table[5] == pytest.approx(5e-4) and table[10] == pytest.approx(1e-3)
    assert np.all(np.diff(table[10:]) <= 0) and table[-1] < 1e-6
    assert table[55] == pytest.approx(5e-4, rel=1e-3)  # halfway through the cosine


def test_processes_that_disagree_are_said_to():
    m = measure.Measurement(4, 1.0, (0.01,) * 6, (0.010, 0.011) * 10, True)
    agree = measure.summarize(m, repeats=[(0.0105, 0.0110) * 10])
    assert not any("processes disagree" in w for w in agree["warnings"])
    apart = measure.summarize(m, repeats=[(0.050, 0.052) * 10])  # 5x slower: a loaded machine
    [said] = [w for w in apart["warnings"] if "processes disagree" in w]
    assert "(2 processes)" in said and "repeats=5" in said
