"""Write a comparison report: templates/compare.ipynb executed over run folders (driver side).

The notebook runs with papermill in the pinned `analysis` kernel (statistics and plots, no
framework) into its own folder under runs/: report.ipynb, the offline report.html,
comparison.json (how it ended and what the notebook published: repro.records.Comparison),
plots/ and MANIFEST.sha256, so `repro verify` checks it like any run.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import nbformat

from repro import __version__, records
from repro.driver import kernels, snapshot, templates
from repro.driver.execute import attempt, deferred_signals, run_notebook, signals_interrupt
from repro.driver.finalize import published, stop_banner
from repro.driver.folders import check_runs_dir, new_folder, seal, write, write_manifest
from repro.driver.run import git_state
from repro.errors import RunFailed, brief
from repro.markdown import escape
from repro.paths import RUNS, TEMPLATES

TEMPLATE = TEMPLATES / "compare.ipynb"


def banner(runs: list[records.Run], differences: dict, run_context: dict, note: str = "") -> str:
    lines = [
        f"**repro comparison `{run_context['run_id']}`** of {len(runs)} runs, baseline "
        f"`{runs[0].name}`; kernel `analysis`, git "
        f"`{(run_context['git'].get('commit') or 'unknown')[:10]}`",
        "Runs: " + ", ".join(f"`{r.folder}`" for r in runs),
        *([note] if note else []),
    ]
    if differences:
        lines.append(
            "> ⚠️ **MIXED CONTEXT**, compared with `--allow-mixed`: "
            + "; ".join(
                f"{k} differs ({', '.join(map(escape, v))})" for k, v in differences.items()
            )
        )
    return "\n\n".join(lines)


def write_report(
    runs: list[records.Run],
    runs_dir: Path = RUNS,
    allow_mixed: bool = False,
    log=sys.stderr,
    note: str = "",
) -> Path:
    """Execute the comparison template over `runs` (the first is the baseline), `note` (markdown:
    how they were run) in the banner; return its folder. The caller has already refused mixed
    contexts unless `allow_mixed`. Like a run, the folder is finished (ok, failed or
    interrupted, with the reason on top) however it ends."""
    check_runs_dir(runs_dir)
    kernel = kernels.ensure("analysis", log)
    lock = kernels.verify(kernel)
    template = templates.from_file(TEMPLATE)  # read once: the text hashed is the text run
    with signals_interrupt():
        folder = new_folder(runs_dir, f"compare_{len(runs)}-runs")
        run_context = {
            "run_id": folder.name,
            "repro_version": __version__,
            "kernel": kernel.name,
            "lock": lock,
            **snapshot.hashes(snapshot.take(template)),
            "git": git_state(),
            "runs": [str(r.folder.resolve()) for r in runs],
        }
        notebook = template.notebook()
        first = banner(runs, records.context_differences(runs), run_context, note)
        notebook.cells.insert(0, nbformat.v4.new_markdown_cell(first))
        print(
            f"comparison {folder.name}: executing {TEMPLATE.name} in {kernel.spec_name}", file=log
        )
        parameters = {"runs": run_context["runs"], "allow_mixed": allow_mixed}
        with attempt() as outcome:
            run_notebook(notebook, kernel, folder, {**parameters, "run_context": run_context})
    error, status = outcome.error, outcome.status
    with deferred_signals():
        report = folder / "report.ipynb"
        executed = nbformat.read(report, as_version=4) if report.is_file() else None
        if error:
            executed = executed or nbformat.v4.new_notebook()
            stop_banner(executed, status, error)
        results, plots = published(executed)
        for name, png in plots.items():
            write(folder / "plots" / f"{name}.png", png)
        summary = records.Comparison(status, error, results)
        write(folder / "comparison.json", json.dumps(summary.to_json(), indent=1) + "\n")
        executed.metadata["title"] = f"Comparison of {len(runs)} runs: {folder.name}"
        seal(executed, folder, run=run_context, status=status)
        write_manifest(folder)
    if error:
        raise RunFailed(f"comparison {status}: {brief(error)}; the partial report is in {folder}")
    return folder
