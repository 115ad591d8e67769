"""Write a history report: templates/history.ipynb executed over every finished run found
(driver side). It is written like a comparison (repro.driver.compare.write_analysis) into its own
folder: report.ipynb, report.html, history.json (how it ended and what it published), plots/ and
MANIFEST.sha256."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from repro import records
from repro.driver.compare import Analysis, write_analysis
from repro.errors import UserError, brief, option
from repro.kernel.history import ORDERS, revision
from repro.paths import ROOT, RUNS, TEMPLATES

TEMPLATE = TEMPLATES / "history.ipynb"
SCHEMA = "repro.history/1"
DEPTH = 4  # runs/sweep_<name>/cells/<cell>/<run>
OBJECT_NAME = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")  # SHA-1 or SHA-256: what a run records


def found(paths: list[str], log=sys.stderr) -> tuple[list[records.Run], list[str]]:
    """The finished runs under `paths` that load, each once, and a line for every folder passed
    over (records.gather); UserError if no run loads."""
    runs, passed = records.gather(paths, depth=DEPTH)
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


def commit_order(runs: list[records.Run], repository: Path = ROOT) -> tuple[list[str], str]:
    """The runs' commits that `repository` holds, in its history's order (oldest first), and a
    sentence saying how the history orders commits. A commit comes from a run folder, so only a
    full hex object name reaches git, as an argument; the others, and every commit when git
    cannot answer, follow in the order they first ran."""
    recorded = {revision(run) for run in runs}
    valid = sorted(c for c in recorded if c and OBJECT_NAME.fullmatch(c))
    first_ran = "in the order they first ran"
    if not valid:
        return [], f"commits {first_ran}: no run records a full git commit"
    try:
        listed = subprocess.run(
            ["git", "-C", str(repository), "rev-list", "--topo-order", "--reverse"]
            + ["--ignore-missing", *valid, "--"],
            capture_output=True,
            text=True,
            timeout=120,
        )
    except (OSError, subprocess.SubprocessError) as error:
        return [], f"commits {first_ran}: git could not be run ({brief(error)})"
    if listed.returncode != 0:
        why = (listed.stderr.strip().splitlines() or ["no reason given"])[-1][:200]
        return [], f"commits {first_ran}: git cannot read the history of {repository} ({why})"
    wanted = set(valid)
    order = [c for c in listed.stdout.split() if c in wanted]
    others = len(recorded) - len(order)
    return order, (
        f"commits in the order of the history of {repository} (git rev-list --topo-order), "
        "oldest first"
        + (f"; the {others} commit(s) it does not hold follow, {first_ran}" if others else "")
    )


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
    repository: Path = ROOT,
) -> Path:
    """Execute the history template over the finished runs under `paths`; return its folder.
    `--by commit` orders commits by `repository`'s history where it holds them (commit_order)."""
    if by not in ORDERS:
        raise UserError(f"{option('--by')} takes one of {', '.join(ORDERS)}, got {by!r}")
    runs, passed = found(paths, log)
    commits, order = commit_order(runs, repository) if by == "commit" else ([], "")
    analysis = Analysis(
        TEMPLATE,
        f"history_{len(runs)}-runs",
        f"History of {len(runs)} runs",
        lambda context: banner(runs, paths, by, threshold, context),
        {"by": by, "threshold": threshold, "skipped": passed, "commits": commits, "order": order},
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
