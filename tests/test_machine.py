"""The machine check around a measurement: a fixed reference, and the load other processes put on
the machine, told apart from the run's own work (real processes, no mocked /proc)."""

import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import burner
from test_headline import PARAMS

from repro.driver import headline
from repro.kernel import machine
from repro.records import Metrics

BURN = "import time\nend = time.time() + 30\nwhile time.time() < end: pass"


def measured(seconds: float, spin_children: int = 0) -> tuple[dict, list[int]]:
    """A Check over `seconds` of sleeping, and the pids of the `spin_children` CPU-bound
    processes of our own that it ran beside."""
    with machine.Check() as check:
        ours = [subprocess.Popen([sys.executable, "-c", BURN]) for _ in range(spin_children)]
        time.sleep(seconds)
        for p in ours:
            p.kill()
            p.wait()
    return check.result(), [p.pid for p in ours]


def busiest(load: dict) -> list[int]:
    return [p["pid"] for p in load["busiest_others"]]


# Other agents load this machine too, and their load changes between two windows by more than
# any margin a test could pick: the checks below are on who is named and on the busy threshold,
# never on the difference between a quiet window and a busy one.


def test_the_reference_is_timed_before_and_after():
    result, _ = measured(0.2)
    for side in ("before", "after"):
        for name in ("sort_ms", "copy_ms"):
            timing = result["reference"][side][name]
            assert 0 < timing["min"] <= timing["median"]
    assert set(result["reference"]["drift"]) == {"sort_ms", "copy_ms"}


def test_another_process_burning_a_core_makes_the_run_busy_and_is_named():
    with burner() as pid:
        result, _ = measured(1.5)
    load = result["load"]  # the burner alone is a core, or its share of a saturated machine
    assert load["status"] == "measured" and load["other_cores"] > machine.BUSY_CORES
    assert result["busy"] and "The machine was busy" in result["warnings"][0]
    assert pid in busiest(load)  # a full spinner: among the three busiest
    (spinner,) = [p for p in load["busiest_others"] if p["pid"] == pid]
    assert spinner["command"].startswith(f"{Path(sys.executable).name} -c import")  # not "python"
    assert f"`{spinner['command']}`" in result["warnings"][0]  # named by what it runs


def test_the_runs_own_child_processes_are_not_other_load():
    result, [child] = measured(1.5, spin_children=1)  # a compile worker, say
    load = result["load"]  # another process's spinner is named (the test above); ours is not
    assert load["status"] == "measured" and child not in busiest(load)


def test_a_busy_run_says_so_at_the_top_of_its_report():
    summary = {"latency_ms": {"median": 8.0}, "throughput": {"samples_per_s": 250.0}}
    warning = "The machine was busy while this run was measured: <b>x</b> | y"
    metrics = {
        "schema": "repro.metrics/1",
        "status": "ok",
        "error": None,
        "run_id": "r",
        "workload": "resnet-tiny",
        "framework": "torch",
        "kernel": "torch-cpu",
        "params": {**PARAMS, "batch_size": 2, "steps": 3},
        "samples": {"batch_size": 2, "step_s": [0.008, 0.009, 0.008]},
    }
    for busy, said in [(False, "No warnings."), (True, "&lt;b&gt;x&lt;/b&gt; \\| y")]:
        machine = {"busy": busy, "warnings": [warning] if busy else []}
        record = {
            **metrics,
            "summary": {**summary, "machine": machine, "warnings": machine["warnings"]},
        }
        top = headline.markdown(Metrics.from_json(record, "metrics.json"), None).split("\n\n")
        assert top[0].startswith("# resnet-tiny in torch: ") and "samples/s" in top[0]
        assert said in top[1]  # the warnings block, escaped as markdown, before the figures


def test_drift_counts_only_beyond_the_references_own_noise():
    def side(fastest, median):
        return {"sort_ms": {"min": fastest, "median": median}}

    steady = machine.drift(side(5.0, 5.1), side(5.5, 5.6))["sort_ms"]  # +10%, spread 2% + 2%
    assert abs(steady["change"] - 0.10) < 1e-9 and abs(steady["change"]) < steady["threshold"]
    slower = machine.drift(side(5.0, 5.1), side(6.5, 6.6))["sort_ms"]  # +30%
    assert slower["change"] > slower["threshold"]
    noisy = machine.drift(side(5.0, 6.5), side(6.5, 6.6))["sort_ms"]  # +30%, but 30% spread
    assert noisy["change"] < noisy["threshold"]


BUSY = {  # a busy window as Check.load records it: the busiest named by their command lines
    "status": "measured",
    "cores": 2,
    "other_cores": 1.8,
    "steal_fraction": 0.0,
    "busiest_others": [
        {"name": "python", "command": "python -m pytest -n 2 tests", "pid": 7, "cores": 0.9},
        {"name": "yes", "command": "yes", "pid": 8, "cores": 0.6},
    ],
}


@pytest.mark.parametrize("framework", ["torch", "jax"])
def test_the_busy_warning_names_the_busiest_commands_and_what_to_change(monkeypatch, framework):
    monkeypatch.setenv("OMP_NUM_THREADS", "2")  # what frameworks.load set: a 2-thread run
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)  # spinning OpenMP threads
    for name in ("torch", "mxnet"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    monkeypatch.setitem(sys.modules, framework, sys)  # a module by that name, loaded
    warning = machine.busy_warning(BUSY)
    assert warning.startswith("The machine was busy while this run was measured")
    assert "`python -m pytest -n 2 tests` 0.9, `yes` 0.6" in warning
    assert "quiet machine" in warning and "`steps`" in warning
    spinning = "`omp_wait_policy=passive` or `threads=1` (this run: unset, 2 threads)"
    assert (spinning in warning) == (framework == "torch")  # JAX has no OpenMP pool

    monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")  # the default: nothing about threads
    assert "omp_wait_policy" not in machine.busy_warning(BUSY)


def test_a_busy_further_process_makes_one_busy_warning_for_the_run(monkeypatch):
    from repro.kernel.report import busy_too

    monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")
    quiet = {"busy": False, "warnings": ["The reference sort took 30% longer ..."]}
    busy = {"busy": True, "load": BUSY, "warnings": [machine.busy_warning(BUSY)]}
    repeats = [{"machine": quiet}, {"machine": busy}]  # processes 2 and 3 of 3

    check = {**quiet, "warnings": list(quiet["warnings"])}  # the kernel's: quiet
    busy_too(check, repeats)
    assert check["busy"] and len(check["warnings"]) == 2  # the busy one first, once
    assert check["warnings"][0].startswith("The machine was busy while process 3 of 3 measured")
    assert "`python -m pytest -n 2 tests` 0.9" in check["warnings"][0]

    check = {**busy, "warnings": list(busy["warnings"])}  # the kernel's: busy too
    busy_too(check, repeats)
    assert len(check["warnings"]) == 1
    assert check["warnings"][0].endswith("It was busy too while process 3 of 3 measured.")
