"""Write a comparison report: templates/compare.ipynb executed over run folders (driver side);
`write_analysis` writes any report over run folders this way (repro.driver.history's too).

The notebook runs with papermill in the pinned `analysis` kernel (statistics and plots, no
framework) into its own folder under runs/: report.ipynb, the offline report.html,
comparison.json (how it ended and what the notebook published: repro.records.Comparison),
plots/ and MANIFEST.sha256, so `repro verify` checks it like any run.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import nbformat

from repro import __version__, records
from repro.driver import kernels, snapshot, templates
from repro.driver.execute import attempt, deferred_signals, run_notebook, signals_interrupt
from repro.driver.finalize import published, stop_banner
from repro.driver.folders import new_folder, seal, write, write_manifest
from repro.driver.run import git_state
from repro.driver.talk import talking
from repro.errors import RunFailed, brief
from repro.markdown import escape
from repro.paths import RUNS, TEMPLATES, check_runs_dir

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
            "> ⚠ **MIXED CONTEXT**, compared with `--allow-mixed`: "
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
    return write_analysis(
        Analysis(
            TEMPLATE,
            f"compare_{len(runs)}-runs",
            f"Comparison of {len(runs)} runs",
            lambda context: banner(runs, records.context_differences(runs), context, note),
            {"allow_mixed": allow_mixed},
            "comparison.json",
            lambda status, error, results: records.Comparison(status, error, results).to_json(),
        ),
        runs,
        runs_dir,
        log,
    )


@dataclass(frozen=True)
class Analysis:
    """A report over run folders, executed in the `analysis` kernel: a comparison or a history."""

    template: Path
    prefix: str  # of its folder's name
    title: str
    banner: Callable[[dict], str]  # the run context -> the markdown cell on top
    parameters: dict  # the template's, beside `runs` and `run_context`
    record: str  # the file that says how it ended: comparison.json, history.json
    to_json: Callable[[str, str | None, dict], dict]  # status, error, results -> its content


def write_analysis(
    analysis: Analysis, runs: list[records.Run], runs_dir: Path = RUNS, log=sys.stderr
) -> Path:
    """Execute `analysis` over `runs` into a new folder under `runs_dir`: report.ipynb, the
    offline report.html, its record, plots/ and MANIFEST.sha256; return the folder, or
    RunFailed (exit 1) with the partial report, finished, in it."""
    check_runs_dir(runs_dir)
    kernel = kernels.ensure("analysis", log)
    lock = kernels.verify(kernel)
    template = templates.from_file(analysis.template)  # read once: the text hashed is the text run
    with signals_interrupt():
        folder = new_folder(runs_dir, analysis.prefix)
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
        notebook.cells.insert(0, nbformat.v4.new_markdown_cell(analysis.banner(run_context)))
        what = analysis.record.split(".")[0]  # comparison, history
        name = analysis.template.name
        print(f"{what} {folder.name}: executing {name} in {kernel.spec_name}", file=log)
        parameters = {"runs": run_context["runs"], **analysis.parameters}
        with attempt() as outcome:
            run_notebook(notebook, kernel, folder, {**parameters, "run_context": run_context}, log)
    error, status = outcome.error, outcome.status
    with deferred_signals(), talking(log, "writing the report"):
        report = folder / "report.ipynb"
        executed = nbformat.read(report, as_version=4) if report.is_file() else None
        if error:
            executed = executed or nbformat.v4.new_notebook()
            stop_banner(executed, status, error)
        results, plots = published(executed)
        for name, png in plots.items():
            write(folder / "plots" / f"{name}.png", png)
        record = analysis.to_json(status, error, results)
        write(folder / analysis.record, json.dumps(record, indent=1) + "\n")
        executed.metadata["title"] = f"{analysis.title}: {folder.name}"
        seal(executed, folder, run=run_context, status=status)
        write_manifest(folder)
    if error:
        raise RunFailed(f"{what} {status}: {brief(error)}; the partial report is in {folder}")
    return folder
