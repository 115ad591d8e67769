"""Time to accuracy (in-kernel side): DAWNBench's metric. Train from scratch on real data
(repro.kernel.realdata: images, or text for a language model) until the held-out accuracy
reaches a target, or a step or time cap.

The clock starts before the first step and stops after the evaluation that reached the target,
as MLPerf's run_start to run_stop: compilation (the first step), every step's copy of its batch
to the device, and every evaluation are inside it; decoding the data and building the model are
not (they are reported apart). The held-out set is evaluated every `eval_every` steps (0: once
per epoch) with the model in eval mode, in batches of `batch_size` (the last one padded, so no
new shape compiles), and at the cap. Reaching the cap without the target is a result, not an
error: the report and metrics.json say `reached: false` and which cap stopped it.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable

import numpy as np

from repro.kernel import energy, measure, realdata, report


def with_classes(model: dict, dataset: realdata.Dataset) -> dict:
    """The workload's model with one output per class of the data (a language model's outputs
    are its vocabulary: unchanged)."""
    if dataset.classes is None:
        return model
    return {**model, "config": {**model.get("config", {}), "num_classes": len(dataset.classes)}}


def accuracy(predict: Callable, to_native: Callable, x: np.ndarray, y: np.ndarray, batch: int):
    """Share of `y` that `x`'s predictions match, in batches of `batch` (the last padded): of
    the images, or of every position of the sequences (next-token top-1 accuracy)."""
    correct = 0
    for start in range(0, len(y), batch):
        part = x[start : start + batch]
        padded = np.concatenate([part, np.zeros((batch - len(part), *x.shape[1:]), x.dtype)])
        correct += int((predict(to_native(padded))[: len(part)] == y[start : start + batch]).sum())
    return correct / y.size


def train_to_target(
    train: Callable,
    predict: Callable,
    fw,
    dataset: realdata.Dataset,
    *,
    batch_size: int,
    target: float,
    eval_every: int,
    max_steps: int,
    max_seconds: float,
    seed: int,
    clock: Callable[[], float] = time.perf_counter,
    log=sys.stdout,
) -> dict:
    """Train until the held-out accuracy reaches `target`, or `max_steps` or `max_seconds`.
    `train(x, y)` runs one step and returns its loss, `predict(x)` the predicted classes;
    `fw` supplies to_native, sync and to_float."""
    every = eval_every or len(dataset.train_y) // batch_size  # 0: once per epoch
    batches = dataset.batches(batch_size, seed)
    step_s, losses, curve, eval_s = [], [], [], 0.0
    stopped_by = None
    start = clock()
    for step in range(1, max_steps + 1):
        x, y = next(batches)
        began = clock()
        loss = train(fw.to_native(x), fw.to_native(y))
        fw.sync(loss)
        step_s.append(clock() - began)
        losses.append(fw.to_float(loss))
        capped = step == max_steps or clock() - start >= max_seconds
        if step % every and not capped:
            continue
        began = clock()
        held = accuracy(predict, fw.to_native, dataset.held_x, dataset.held_y, batch_size)
        eval_s += clock() - began
        seconds = clock() - start
        curve.append({"step": step, "seconds": seconds, "accuracy": held, "loss": losses[-1]})
        print(f"step {step}: held-out accuracy {held:.2%} at {seconds:.1f} s", file=log, flush=True)
        if held >= target:
            stopped_by = "target"
        elif capped:
            stopped_by = "max_steps" if step == max_steps else "max_seconds"
        if stopped_by:
            break
    reached = stopped_by == "target"
    return {
        "reached": reached,
        "stopped_by": stopped_by,
        "target": target,
        "time_to_target_s": curve[-1]["seconds"] if reached else None,
        "wall_s": curve[-1]["seconds"],
        "train_s": sum(step_s),
        "eval_s": eval_s,
        "steps": len(step_s),
        "samples": len(step_s) * batch_size,
        "epochs": len(step_s) * batch_size / len(dataset.train_y),
        "final_accuracy": curve[-1]["accuracy"],
        "best_accuracy": max(point["accuracy"] for point in curve),
        "eval_every": every,
        "curve": curve,
        "step_s": step_s,
        "losses": losses,
    }


def once(p: dict, log=sys.stderr) -> dict:
    """One fresh process's time to accuracy, as the template measures it in its kernel
    (repro.kernel.repeat runs this for mode=train-to-accuracy)."""
    from repro.kernel import machine, models, repeat

    fw = repeat.framework(p)
    dataset = realdata.load(p["data"], models.config(p["model"]))
    net = fw.build(with_classes(p["model"], dataset), p["attention"])
    train, predict = fw.trainer(net, p["compile"], schedule(p["lr"], p["max_steps"]))
    with machine.Check() as check:
        outcome = train_to_target(train, predict, fw, dataset, **settings(p), log=log)
    steps = phases(outcome["step_s"], p["warmup"], p["batch_size"])
    return {
        "first_call_s": steps.first_call_s,
        "step_s": list(steps.step_s),
        "machine": check.result(),
        "time_to_accuracy": {k: v for k, v in outcome.items() if k not in ("step_s", "losses")},
    }


def schedule(lr: float, max_steps: int) -> np.ndarray:
    """The learning rate per step: the shared warm-up (a tenth) + cosine over the step cap."""
    return measure.lr_schedule(lr, max(1, max_steps // 10), max_steps)


def settings(p: dict) -> dict:
    """train_to_target's settings from the run's parameters."""
    return {
        "batch_size": p["batch_size"],
        "target": p["target_accuracy"],
        "eval_every": p["eval_every"],
        "max_steps": p["max_steps"],
        "max_seconds": p["max_seconds"],
        "seed": p["seed"],
    }


def spread(outcomes: list[dict]) -> dict:
    """Time to target over the processes that reached it: median, range and CV; and what
    stopped each process and its held-out accuracy curve (a comparison shows them)."""
    times = [o["time_to_target_s"] for o in outcomes if o["reached"]]
    steps = [o["steps"] for o in outcomes if o["reached"]]
    summary = {"n": len(outcomes), "reached": len(times), "times_s": times}
    summary["stopped_by"] = [o["stopped_by"] for o in outcomes]
    summary["curves"] = [o["curve"] for o in outcomes]
    if times:
        summary |= {
            "median_s": statistics.median(times),
            "min_s": min(times),
            "max_s": max(times),
            "cv": statistics.stdev(times) / statistics.mean(times) if len(times) > 1 else None,
            "median_steps": statistics.median(steps),
        }
    return summary


def show_data(dataset: realdata.Dataset, path: str, load_s: float) -> dict:
    """What the run trains and evaluates on, as a table; published for metrics.json."""
    info = {**dataset.summary(), "path": path, "load_s": load_s}
    rows = {"data": path, **dataset.rows, "load time (s)": f"{load_s:.2f}"}
    return report.publish("data", info, report.table(rows, ("data", "")))


def cost_and_energy(outcome: dict, window: dict, price_per_hour: float) -> dict:
    """The kernel process's cost (price x wall time) and energy (the meter's `window`, which
    ends at the target) to its target, or to the cap where it did not reach it."""
    return {
        "cost": price_per_hour * outcome["wall_s"] / 3600 if price_per_hour else None,
        "price_per_hour": price_per_hour or None,
        "energy_kwh": window["codecarbon"].get("energy_kwh"),
        "energy_status": window["codecarbon"]["status"],
        "energy_reason": window["codecarbon"].get("reason"),
        "gpu_joules": window["gpu"].get("joules"),
    }


def results(
    outcome: dict,
    others: list[dict],
    fw,
    *,
    meter: energy.EnergyMeter,
    machine,
    flop_count: dict | None,
    price_per_hour: float,
    seed: int,
    batch_size: int,
    warmup: int,
    data: dict,
) -> dict:
    """Show and record the time to accuracy (the kernel's process, then the spread over every
    process), its curve, and the training steps' times through repro.kernel.report.results;
    `data` is what show_data published, recorded with them."""
    step_s, losses = outcome["step_s"], outcome["losses"]
    outcome = {k: v for k, v in outcome.items() if k not in ("step_s", "losses")}
    outcomes = [outcome, *(r["time_to_accuracy"] for r in others)]
    window = meter.result(outcome["samples"])
    spent = cost_and_energy(outcome, window, price_per_hour)
    section = {**outcome, "processes": spread(outcomes), **spent, "data": data}
    show(section, window)
    plot_curves(outcomes, outcome["target"])
    steps = phases(step_s, warmup, batch_size)
    loss = {"first": losses[0], "last": losses[-1], "curve": losses}
    report.show("**Training steps** (the first, with compilation, apart; evaluations excluded)")
    return report.results(
        steps,
        fw,
        flop_count=flop_count,
        machine=machine,
        repeats=others,
        price_per_hour=price_per_hour,
        seed=seed,
        sections={"time_to_accuracy": section, "loss": loss, "energy": window},
    )


def phases(step_s: list[float], warmup: int, batch_size: int) -> measure.Measurement:
    """The training steps' times in the protocol's phases (repro.kernel.measure): the first step
    (compilation), warm-up steps until the times settle (its rule, at most `warmup` and half the
    rest, so a short run keeps steps to measure), the rest measured; a run of one step measures
    it."""
    first, rest = step_s[0], step_s[1:]
    warm: list[float] = []
    while len(warm) < min(warmup, len(rest) // 2) and not measure.is_steady(warm):
        warm.append(rest[len(warm)])
    steady = measure.is_steady(warm) or len(warm) < warmup
    measured = rest[len(warm) :] or [first]
    return measure.Measurement(batch_size, first, tuple(warm), tuple(measured), steady)


def show(section: dict, window: dict) -> None:
    """The time-to-accuracy table; a cap reached without the target is said first."""
    p, target = section["processes"], section["target"]
    goal = "target" if section["reached"] else "the cap"
    if section["reached"]:
        result = f"**{section['time_to_target_s']:.2f} s** to {target:.1%} held-out accuracy"
    else:
        result = (
            f"**target {target:.1%} NOT reached**: stopped by {section['stopped_by']} after "
            f"{section['wall_s']:.2f} s, best held-out accuracy {section['best_accuracy']:.2%}"
        )
    rows = {
        "this process": result,
        "steps / samples / epochs": f"{section['steps']:,} / {section['samples']:,} / "
        f"{section['epochs']:.2f}",
        "training / evaluation time (s)": f"{section['train_s']:.2f} / {section['eval_s']:.2f}",
        "final held-out accuracy": f"{section['final_accuracy']:.2%}",
        "evaluated every": f"{section['eval_every']} steps",
        f"cost to {goal}": f"{section['cost']:.6f} (at {section['price_per_hour']}/hour)"
        if section["cost"] is not None
        else "no price_per_hour given",
        f"energy to {goal}": f"{section['energy_kwh']:.3g} kWh ({section['energy_status']})"
        if section["energy_kwh"] is not None
        else f"unavailable: {section['energy_reason']}",
        "processes": process_row(p),
    }
    report.show(report.table(rows, ("time to accuracy", "")))
    if not section["reached"]:
        report.show(
            "> ⚠ The target was not reached within the caps (max_steps, max_seconds): this "
            "is the result, not a failure. Raise the caps or lr, or lower target_accuracy."
        )
    report.show("**Energy** over the training window\n\n" + energy.markdown(window))


def process_row(p: dict) -> str:
    """Median and spread of time to target over the processes."""
    if not p["reached"]:
        return f"{p['n']}: none reached the target"
    line = (
        f"{p['n']}, {p['reached']} reached the target: median {p['median_s']:.2f} s "
        f"(range {p['min_s']:.2f}–{p['max_s']:.2f} s"
    )
    line += f", CV {p['cv']:.1%})" if p["cv"] is not None else ")"
    return line + ("" if p["n"] > 1 else "; repeats=3 or more measures the spread")


def plot_curves(outcomes: list[dict], target: float) -> None:
    """Held-out accuracy against wall time, one line per process, and the target."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3))
    for i, o in enumerate(outcomes, 1):
        curve = o["curve"]
        ax.plot([c["seconds"] for c in curve], [c["accuracy"] for c in curve], "o-", label=str(i))
    ax.axhline(target, color="k", linestyle="--", label="target")
    ax.set(
        title="Held-out accuracy against wall time, per process",
        xlabel="seconds since the first step",
        ylabel="accuracy",
        ylim=(0, 1.02),
    )
    ax.legend(title="process", fontsize="small")
    reached = [f"{o['time_to_target_s']:.1f} s" for o in outcomes if o["reached"]]
    report.show_figure(
        fig,
        "accuracy_curve",
        f"Held-out accuracy against seconds since the first step for {len(outcomes)} "
        f"process(es), with a dashed line at the {target:.0%} target; reached at "
        f"{', '.join(reached) or 'no point'}.",
    )
