"""Write a history report: templates/history.ipynb executed over every finished run found
(driver side). It is written like a comparison (repro.driver.compare.write_analysis) into its own
folder: report.ipynb, report.html, history.json (how it ended and what it published), plots/ and
MANIFEST.sha256."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

from repro import records
from repro.driver.compare import Analysis, write_analysis
from repro.errors import UserError
from repro.kernel.history import ORDERS
from repro.paths import RUNS, TEMPLATES

TEMPLATE = TEMPLATES / "history.ipynb"
SCHEMA = "repro.history/1"
DEPTH = 4  # runs/sweep_<name>/cells/<cell>/<run>


def found(paths: list[str], log=sys.stderr) -> tuple[list[records.Run], list[str]]:
    """The finished runs under `paths` that load, and a line for every folder passed over (not a
    finished run, or records this repro cannot read); UserError if no run loads."""
    skipped = io.StringIO()
    runs, passed = [], []
    for folder in records.expand(paths, log=skipped, depth=DEPTH):
        try:
            runs.append(records.load(folder))
        except UserError as error:
            passed.append(f"{folder}: {error}")
    passed = [line.strip() for line in skipped.getvalue().splitlines()[1:]] + passed
    if not runs:
        more = f", and {len(passed) - 1} more" if len(passed) > 1 else ""
        why = f" (passed over: {passed[0]}{more})" if passed else ""
        raise UserError(
            f"history found no finished run in {', '.join(map(str, paths))}{why}; "
            "make one with `make run`"
        )
    for line in passed:
        print(f"passed over: {line}", file=log)
    return runs, passed


def banner(runs: list[records.Run], paths: list[str], by: str, threshold: float, context) -> str:
    return (
        f"**repro history `{context['run_id']}`** of {len(runs)} runs found in "
        + ", ".join(f"`{p}`" for p in paths)
        + f", in order of {by.replace('_', ' ')}; regressions: significantly slower than the "
        f"point before by more than {threshold:.0%}; kernel `analysis`, git "
        f"`{(context['git'].get('commit') or 'unknown')[:10]}`"
    )


def write_history(
    paths: list[str],
    by: str = "time",
    threshold: float = 0.05,
    runs_dir: Path = RUNS,
    log=sys.stderr,
) -> Path:
    """Execute the history template over the finished runs under `paths`; return its folder."""
    if by not in ORDERS:
        raise UserError(f"--by takes one of {', '.join(ORDERS)}, got {by!r}")
    runs, passed = found(paths, log)
    analysis = Analysis(
        TEMPLATE,
        f"history_{len(runs)}-runs",
        f"History of {len(runs)} runs",
        lambda context: banner(runs, paths, by, threshold, context),
        {"by": by, "threshold": threshold, "skipped": passed},
        "history.json",
        lambda status, error, results: {
            "schema": SCHEMA,
            "status": status,
            "error": error,
            **results,
        },
    )
    return write_analysis(analysis, runs, runs_dir, log)


def regressions(folder: Path) -> list[dict]:
    """The regressions a history just written found (its own history.json)."""
    return (
        json.loads((folder / "history.json").read_text()).get("history", {}).get("regressions", [])
    )
