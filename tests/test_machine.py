"""The machine check around a measurement: a fixed reference, and the load other processes put on
the machine, told apart from the run's own work (real processes, no mocked /proc)."""

import subprocess
import sys
import time

import nbformat
from conftest import burner

from repro import machine
from repro.finalize import BUSY_TAG, busy_banner

BURN = "import time\nend = time.time() + 30\nwhile time.time() < end: pass"


def measured(seconds: float, spin_children: int = 0) -> dict:
    """A Check over `seconds` of sleeping; `spin_children` CPU-bound processes of our own."""
    with machine.Check() as check:
        ours = [subprocess.Popen([sys.executable, "-c", BURN]) for _ in range(spin_children)]
        time.sleep(seconds)
        for p in ours:
            p.kill()
            p.wait()
    return check.result()


def test_the_reference_is_timed_before_and_after():
    result = measured(0.2)
    for side in ("before", "after"):
        for name in ("sort_ms", "copy_ms"):
            timing = result["reference"][side][name]
            assert 0 < timing["min"] <= timing["median"]
    assert set(result["reference"]["drift"]) == {"sort_ms", "copy_ms"}


def test_another_process_burning_a_core_makes_the_run_busy_and_is_named():
    quiet = measured(1.5)["load"]["other_cores"]
    with burner() as pid:
        result = measured(1.5)
    load = result["load"]
    assert load["status"] == "measured" and load["other_cores"] > quiet + 0.5
    assert result["busy"] and "The machine was busy" in result["warnings"][0]
    assert pid in [p["pid"] for p in load["busiest_others"]]


def test_the_runs_own_child_processes_are_not_other_load():
    quiet = measured(1.5)["load"]["other_cores"]
    ours = measured(1.5, spin_children=1)["load"]  # a compile worker, say
    assert ours["other_cores"] < quiet + 0.5


def test_a_busy_run_says_so_at_the_top_of_its_report():
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# report")])
    busy_banner(notebook, {"busy": False, "warnings": []})
    assert len(notebook.cells) == 1
    warning = "The machine was busy while this run was measured: <b>x</b> | y"
    busy_banner(notebook, {"busy": True, "warnings": [warning]})
    top = notebook.cells[0]
    assert top.metadata["tags"] == [BUSY_TAG] and "busy machine" in top.source
    assert "&lt;b&gt;" in top.source and "\\|" in top.source  # escaped as markdown


def test_drift_counts_only_beyond_the_references_own_noise():
    def side(fastest, median):
        return {"sort_ms": {"min": fastest, "median": median}}

    steady = machine.drift(side(5.0, 5.1), side(5.5, 5.6))["sort_ms"]  # +10%, spread 2% + 2%
    assert abs(steady["change"] - 0.10) < 1e-9 and abs(steady["change"]) < steady["threshold"]
    slower = machine.drift(side(5.0, 5.1), side(6.5, 6.6))["sort_ms"]  # +30%
    assert slower["change"] > slower["threshold"]
    noisy = machine.drift(side(5.0, 6.5), side(6.5, 6.6))["sort_ms"]  # +30%, but 30% spread
    assert noisy["change"] < noisy["threshold"]
